"""One training run's state: the device set-up, the seeded holdout split, the model, the optimiser and the RNGs.

Everything here happens in a fixed order (the seeds and the order of RNG use make a run, and its resumption,
reproducible); the loop, the checkpoints and the time-budget plan all read and update one ``TrainRun``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.models.evaluate import resolve_device
from workers.models.train.config import TrainConfig
from workers.models.train.data import load_train_data


@dataclass
class TrainRun:
    cfg: TrainConfig
    out: Path
    device: torch.device
    use_amp: bool
    mem_format: torch.memory_format
    source: str
    data_seconds: float
    n_hold: int
    n_train: int
    steps_per_epoch: int
    x_hold: torch.Tensor
    y_hold: torch.Tensor
    x_train: torch.Tensor
    y_train: torch.Tensor
    net: nn.Module
    model: nn.Module
    opt: torch.optim.Optimizer
    gen: torch.Generator  # on the device: attacks and augmentation
    cpu_gen: torch.Generator  # the batch order
    planned_epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "holdout_robust": -1.0})
    best_state: dict[str, torch.Tensor] | None = None
    calibration: dict[str, Any] | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def batch_size(self) -> int:
        assert self.cfg.batch_size is not None
        return self.cfg.batch_size


def configure_device(cfg: TrainConfig) -> tuple[torch.device, bool, torch.memory_format]:
    """The device, whether to autocast to bf16 and the memory format (CUDA: TF32, cuDNN benchmark, both on)."""
    device = resolve_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    use_amp = cuda if cfg.amp is None else cfg.amp
    use_cl = cuda if cfg.channels_last is None else cfg.channels_last
    return device, use_amp, torch.channels_last if use_cl else torch.contiguous_format


def start_run(
    cfg: TrainConfig, out: Path, device: torch.device, use_amp: bool, mem_format: torch.memory_format
) -> TrainRun:
    """Load and split the data (everything on the device as uint8), build the model, the optimiser and the RNGs."""
    from workers.models import NormalizedModel, get_arch

    # ---- data: seeded holdout split, everything on the device as uint8
    t_data = time.perf_counter()
    x_all, y_all, source = load_train_data(cfg)
    split_gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(y_all), generator=split_gen)
    n_hold = min(cfg.holdout, len(y_all) // 5)
    hold_idx, train_idx = perm[:n_hold], perm[n_hold:]
    if cfg.train_subset:
        train_idx = train_idx[: cfg.train_subset]
    x_hold, y_hold = x_all[hold_idx], y_all[hold_idx]
    x_train, y_train = x_all[train_idx].to(device), y_all[train_idx].to(device)
    del x_all, y_all
    n_train = len(y_train)
    data_seconds = time.perf_counter() - t_data
    bs = cfg.batch_size
    assert bs is not None and cfg.epochs is not None
    steps_per_epoch = max(1, n_train // bs)  # drop the last partial batch
    if cfg.max_batches:
        steps_per_epoch = min(steps_per_epoch, cfg.max_batches)

    # ---- model and optimiser
    torch.manual_seed(cfg.seed)
    info = get_arch(cfg.arch)
    net = info.build()
    model = NormalizedModel(net, info.mean, info.std, name=cfg.arch, dataset=cfg.dataset, arch=cfg.arch)
    model = model.to(device).to(memory_format=mem_format).train()
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            net.parameters(), lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=False
        )
    else:
        opt = torch.optim.Adam(net.parameters(), lr=0.0, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed + 1)
    cpu_gen = torch.Generator().manual_seed(cfg.seed + 2)
    return TrainRun(
        cfg=cfg, out=out, device=device, use_amp=use_amp, mem_format=mem_format, source=source,
        data_seconds=data_seconds, n_hold=n_hold, n_train=n_train, steps_per_epoch=steps_per_epoch,
        x_hold=x_hold, y_hold=y_hold, x_train=x_train, y_train=y_train, net=net, model=model, opt=opt, gen=gen,
        cpu_gen=cpu_gen, planned_epochs=cfg.epochs,
    )
