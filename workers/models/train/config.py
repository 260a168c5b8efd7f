"""What a training run is asked to do: TrainConfig, its per-dataset defaults and its validation."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Method = Literal["pgd", "fgsm-rs"]

# Recipe defaults per dataset (used where the config leaves a value None).
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 100, "eps_warmup": 0.2,
              "augment": False, "epochs": 12},
    "cifar10": {"optimizer": "sgd", "lr": 0.2, "weight_decay": 5e-4, "batch_size": 128, "eps_warmup": 0.0,
                "augment": True, "epochs": 15},
}
MAX_EPS = {"mnist": 0.5, "cifar10": 32 / 255}


class TrainError(Exception):
    """Bad training arguments or an unusable checkpoint."""


@dataclass
class TrainConfig:
    dataset: str
    arch: str
    eps: float
    method: Method = "fgsm-rs"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    seed: int = 0
    device: str = "auto"
    pgd_steps: int = 10
    pgd_alpha: float | None = None  # default 2.5 * eps / pgd_steps (Madry's rule)
    fgsm_alpha: float | None = None  # default 1.25 * eps (Wong et al.)
    eps_warmup: float | None = None  # fraction of the planned steps over which eps ramps up linearly
    augment: bool | None = None
    holdout: int = 1000  # training images kept out for the per-epoch check
    holdout_pgd_steps: int = 10
    time_budget: float | None = None  # seconds; plans the number of epochs (at most ``epochs``)
    max_batches: int | None = None  # per epoch (smoke tests)
    train_subset: int | None = None  # use only the first N training images (after the holdout is removed)
    amp: bool | None = None  # bf16 autocast; None: on CUDA only
    channels_last: bool | None = None  # None: on CUDA only
    num_threads: int | None = None
    stop_after: int | None = None  # leave the run unfinished after this epoch (resumable; for tests)
    data_dir: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        """A copy with dataset defaults filled in, validated."""
        from workers.models import UnknownArch, get_arch

        if self.dataset not in RECIPE_DEFAULTS:
            raise TrainError(f"unknown dataset {self.dataset!r}: expected mnist or cifar10")
        try:
            info = get_arch(self.arch)
        except UnknownArch as exc:
            raise TrainError(str(exc)) from None
        if info.dataset != self.dataset:
            raise TrainError(f"architecture {self.arch!r} is for {info.dataset}, not {self.dataset}")
        if self.method not in ("pgd", "fgsm-rs"):
            raise TrainError(f"unknown method {self.method!r}: expected pgd or fgsm-rs")
        if not (0 <= self.eps <= MAX_EPS[self.dataset]) or math.isnan(self.eps):
            raise TrainError(f"eps {self.eps} out of range for {self.dataset} (0 .. {MAX_EPS[self.dataset]:.4f})")
        cfg = copy.deepcopy(self)
        for key, value in RECIPE_DEFAULTS[self.dataset].items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if cfg.pgd_alpha is None:
            cfg.pgd_alpha = 2.5 * cfg.eps / max(cfg.pgd_steps, 1)
        if cfg.fgsm_alpha is None:
            cfg.fgsm_alpha = 1.25 * cfg.eps
        assert cfg.epochs is not None and cfg.batch_size is not None
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise TrainError("epochs and batch size must be >= 1")
        if cfg.optimizer not in ("sgd", "adam"):
            raise TrainError(f"unknown optimizer {cfg.optimizer!r}")
        return cfg
