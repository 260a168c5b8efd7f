"""Adversarial training: Madry et al. (2018) PGD training and fast FGSM-RS training (Wong et al. 2020).

The whole training set lives on the device as uint8; batches are drawn with a seeded permutation, augmented
on the device (CIFAR-10: random crop with 4-pixel zero padding and horizontal flip), attacked, and used for
one optimiser step. The LR follows a one-cycle ("cyclic", Wong et al.) schedule over the planned number of
steps; the eps can ramp up linearly at the start (helps MNIST at 0.3).

After every epoch the trainer measures clean and PGD-10 accuracy on a held-out slice of the training set,
keeps the best weights by held-out robust accuracy (which also guards against FGSM's catastrophic
overfitting) and writes a resumable checkpoint to ``out``. With ``time_budget`` the number of epochs is
planned from the measured duration of the first epochs. At the end ``out`` holds the best weights (no
optimiser state) and the training card.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from workers.models.evaluate import device_description, pgd_attack, resolve_device

logger = logging.getLogger(__name__)

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


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------


def load_train_data(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, str]:
    """uint8 NCHW images and int64 labels of the training split (CPU tensors) and a source description."""
    import numpy as np

    from workers.data import load_cifar10, load_mnist

    if cfg.dataset == "mnist":
        x, y = load_mnist(cfg.data_dir, "train")
        x = x[:, None]
        source = "MNIST official train set (IDX)"
    else:
        x, y = load_cifar10(cfg.data_dir, "train")
        x = x.transpose(0, 3, 1, 2)
        source = f"CIFAR-10 train split, {len(y)} images"
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)), source


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip, per sample, on the tensor's device."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[idx_n, idx_c, rows, cols]
    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


# ----------------------------------------------------------------------------------------------------------
# schedules and attacks
# ----------------------------------------------------------------------------------------------------------


def cyclic_lr(progress: float, lr_max: float, peak: float = 0.4) -> float:
    """One-cycle schedule (Wong et al. 2020): 0 -> lr_max linearly until ``peak``, then back to 0."""
    progress = min(max(progress, 0.0), 1.0)
    if progress <= peak:
        return lr_max * progress / peak
    return lr_max * (1.0 - progress) / (1.0 - peak)


def ramp(progress: float, warmup: float) -> float:
    """Linear ramp from 0 to 1 over the first ``warmup`` fraction (1 when warmup is 0)."""
    return 1.0 if warmup <= 0 else min(1.0, progress / warmup)


def fgsm_rs_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, gen: torch.Generator
) -> torch.Tensor:
    """FGSM with a uniform random start (Wong et al. 2020), projected to the eps-ball and [0, 1]."""
    delta = (torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
    loss = F.cross_entropy(model(x + delta), y)
    (grad,) = torch.autograd.grad(loss, delta)
    delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


# ----------------------------------------------------------------------------------------------------------
# trainer
# ----------------------------------------------------------------------------------------------------------


def _rng_state(gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {"gen": gen.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(gen: torch.Generator, state: dict[str, torch.Tensor]) -> None:
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch"])


@torch.no_grad()
def _holdout_check(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, device: torch.device, seed: int
) -> tuple[float, float]:
    if len(y) == 0:
        return float("nan"), float("nan")
    model.eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    clean = robust = 0
    for i in range(0, len(y), 500):
        xb = x[i : i + 500].to(device).float().div_(255)
        yb = y[i : i + 500].to(device)
        ok = model(xb).argmax(1) == yb
        with torch.enable_grad():
            adv = pgd_attack(model, xb, yb, cfg.eps, 2.5 * cfg.eps / cfg.holdout_pgd_steps,
                             cfg.holdout_pgd_steps, generator=gen)
        robust += int(((model(adv).argmax(1) == yb) & ok).sum())
        clean += int(ok.sum())
    model.train()
    return clean / len(y), robust / len(y)


def train(config: TrainConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> dict:
    """Train a robust model per ``config``; write checkpoints to ``out``. Returns the training card.

    With ``resume`` and an unfinished checkpoint at ``out`` the run continues from its last completed epoch
    (same seed, schedule and data order).
    """
    from tqdm import tqdm

    from workers.models import get_arch, read_checkpoint, save_model_file

    cfg = config.resolved()
    out = Path(out)
    if out.suffix != ".pt":
        raise TrainError(f"--out must be a .pt file, got {out}")
    if out.exists() and not resume:
        raise TrainError(f"{out} exists: pass --resume to continue it, or choose another --out")
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
    mem_format = torch.channels_last if use_cl else torch.contiguous_format

    state: dict[str, Any] | None = None
    if resume and out.exists():
        ckpt = read_checkpoint(out)
        state = ckpt.get("train_state") if isinstance(ckpt, dict) else None
        if not state:
            raise TrainError(f"{out} holds no resumable training state")
        if state.get("finished"):
            logger.info("%s is already finished", out)
            return dict(ckpt.get("card") or {})
        saved = state["config"]
        for key in ("dataset", "arch", "eps", "method", "seed", "batch_size", "lr", "epochs"):
            if saved[key] != getattr(cfg, key):
                raise TrainError(f"cannot resume: {key} was {saved[key]!r} in {out}, now {getattr(cfg, key)!r}")

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
    from workers.models import NormalizedModel

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

    start_epoch = 0
    planned_epochs = cfg.epochs
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "holdout_robust": -1.0}
    best_state: dict[str, torch.Tensor] | None = None
    elapsed_before = 0.0
    if state is not None:
        net.load_state_dict({k: v.to(device) for k, v in ckpt["state_dict"].items()})
        opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        planned_epochs = int(state["planned_epochs"])
        history = list(state["history"])
        best = dict(state["best"])
        best_state = state.get("best_state")
        elapsed_before = float(state.get("train_seconds", 0.0))
        gen.set_state(state["rng"]["gen"])
        cpu_gen.set_state(state["rng"]["cpu_gen"])
        torch.set_rng_state(state["rng"]["torch"])
        logger.info("resuming %s at epoch %d/%d", out, start_epoch + 1, planned_epochs)

    def recipe() -> dict[str, Any]:
        r = {
            "method": cfg.method, "eps": cfg.eps, "epochs_max": cfg.epochs, "epochs_planned": planned_epochs,
            "batch_size": bs, "optimizer": cfg.optimizer, "lr_max": cfg.lr,
            "lr_schedule": "cyclic (0 -> max at 40% -> 0)",
            "weight_decay": cfg.weight_decay, "momentum": cfg.momentum if cfg.optimizer == "sgd" else None,
            "eps_warmup_fraction": cfg.eps_warmup, "augment": "random crop (pad 4) + flip" if cfg.augment else None,
            "seed": cfg.seed, "amp": "bf16" if use_amp else None, "holdout": n_hold,
            "steps_per_epoch": steps_per_epoch, "time_budget_s": cfg.time_budget,
        }
        if cfg.method == "pgd":
            r.update(pgd_steps=cfg.pgd_steps, pgd_alpha=cfg.pgd_alpha, random_start=True)
        else:
            r.update(fgsm_alpha=cfg.fgsm_alpha, random_start="uniform in the eps-ball")
        return r

    def card(train_seconds: float, finished: bool) -> dict[str, Any]:
        return {
            "dataset": cfg.dataset, "arch": cfg.arch, "recipe": recipe(),
            "training": {
                "data": source, "n_train": n_train, "epochs_run": len(history), "finished": finished,
                "best_epoch": best["epoch"], "selected_by": f"held-out PGD-{cfg.holdout_pgd_steps} accuracy on "
                f"{n_hold} training images", "train_seconds": round(train_seconds, 1),
                "data_load_seconds": round(data_seconds, 1), "device": device_description(device),
                "calibration": calibration,
                "torch": torch.__version__, "history": history,
                "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            },
            "note": cfg.note, **cfg.extra,
        }

    def save(epoch: int, train_seconds: float) -> None:
        train_state = {
            "config": asdict(cfg), "epoch": epoch, "planned_epochs": planned_epochs, "optimizer": opt.state_dict(),
            "history": history, "best": best, "best_state": best_state, "train_seconds": train_seconds,
            "rng": {"gen": gen.get_state().cpu(), "cpu_gen": cpu_gen.get_state(), "torch": torch.get_rng_state()},
            "finished": False,
        }
        save_model_file(out, net, cfg.arch, card=card(train_seconds, False), extra={"train_state": train_state})

    def adv_step(m: nn.Module, o: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor, eps_now: float,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on adversarial examples of (xb, yb) at radius eps_now."""
        if cfg.augment:
            xb = augment_batch(xb, g)
        xb = xb.contiguous(memory_format=mem_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            if eps_now > 0:
                if cfg.method == "fgsm-rs":
                    assert cfg.fgsm_alpha is not None
                    xb = fgsm_rs_examples(m, xb, yb, eps_now, cfg.fgsm_alpha * eps_now / cfg.eps, g)
                else:
                    assert cfg.pgd_alpha is not None
                    xb = pgd_attack(m, xb, yb, eps_now, cfg.pgd_alpha * eps_now / cfg.eps, cfg.pgd_steps, generator=g)
            logits = m(xb)
            loss = F.cross_entropy(logits, yb)
        o.zero_grad(set_to_none=True)
        loss.backward()
        o.step()
        return loss, logits

    calibration: dict[str, Any] | None = None
    if cfg.time_budget and state is None:
        # Plan the number of epochs before training, from timed steps on a throw-away copy of the model, so
        # that the LR and eps schedules are fixed from the first step (changing them mid-run can wreck MNIST).
        t_cal = time.perf_counter()
        m_copy = copy.deepcopy(model)
        o_copy = torch.optim.SGD(m_copy.parameters(), lr=1e-6)
        g_copy = torch.Generator(device=device)
        g_copy.manual_seed(12345)
        n_warm, n_timed = 3, min(20, steps_per_epoch)
        for j in range(n_warm + n_timed):
            if j == n_warm:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            idx = torch.arange(j * bs, (j + 1) * bs, device=device) % n_train
            adv_step(m_copy, o_copy, x_train[idx].float().div_(255), y_train[idx], cfg.eps, g_copy)
        if cuda:
            torch.cuda.synchronize()
        per_step = (time.perf_counter() - t0) / n_timed
        t0 = time.perf_counter()
        _holdout_check(m_copy, x_hold, y_hold, cfg, device, seed=0)
        per_check = time.perf_counter() - t0
        del m_copy, o_copy
        est_epoch = per_step * steps_per_epoch + per_check
        remaining = cfg.time_budget - (time.perf_counter() - t_cal)
        planned_epochs = max(1, min(cfg.epochs, int(remaining // est_epoch)))
        calibration = {"seconds_per_step": round(per_step, 5), "holdout_check_seconds": round(per_check, 2),
                       "estimated_epoch_seconds": round(est_epoch, 2), "planned_epochs": planned_epochs,
                       "calibration_seconds": round(time.perf_counter() - t_cal, 2)}
        logger.info("time budget %.0fs: ~%.1fs/epoch -> %d epochs", cfg.time_budget, est_epoch, planned_epochs)
        if progress:
            tqdm.write(f"[{cfg.arch}] ~{est_epoch:.1f}s/epoch, budget {cfg.time_budget:.0f}s "
                       f"-> {planned_epochs} epochs")

    total_steps = planned_epochs * steps_per_epoch
    t_start = time.perf_counter() - elapsed_before
    epoch = start_epoch
    stop_reason = "planned epochs done"
    while epoch < planned_epochs:
        t_epoch = time.perf_counter()
        order = torch.randperm(n_train, generator=cpu_gen).to(device)
        loss_sum = correct = seen = 0.0
        lr = eps_now = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.arch} epoch {epoch + 1}/{planned_epochs}",
                   disable=not progress, leave=False, unit="batch")
        for i in bar:
            step = epoch * steps_per_epoch + i
            frac = (step + 1) / total_steps
            lr = cyclic_lr(frac, cfg.lr or 0.0)
            eps_now = cfg.eps * ramp(frac, cfg.eps_warmup or 0.0)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order[i * bs : (i + 1) * bs]
            loss, logits = adv_step(model, opt, x_train[idx].float().div_(255), y_train[idx], eps_now, gen)
            if i % 20 == 0 or i == steps_per_epoch - 1:
                yb = y_train[idx]
                loss_sum += float(loss.detach()) * len(yb)
                correct += float((logits.argmax(1) == yb).sum())
                seen += len(yb)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{lr:.4f}", eps=f"{eps_now:.3f}")
        bar.close()
        if cuda:
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t_epoch
        h_clean, h_robust = _holdout_check(model, x_hold, y_hold, cfg, device, seed=cfg.seed + 3)
        epoch += 1
        epoch_time = time.perf_counter() - t_epoch
        rec = {
            "epoch": epoch, "seconds": round(epoch_time, 2), "train_seconds": round(train_time, 2),
            "train_loss": round(loss_sum / max(seen, 1), 4), "train_adv_acc": round(correct / max(seen, 1), 4),
            "holdout_clean": round(h_clean, 4), "holdout_robust": round(h_robust, 4),
            "lr_end": round(lr, 6), "eps_end": round(eps_now, 5),
        }
        history.append(rec)
        logger.info("epoch %d: %s", epoch, rec)
        if progress:
            tqdm.write(f"[{cfg.arch}] epoch {epoch}/{planned_epochs} {epoch_time:.1f}s loss {rec['train_loss']} "
                       f"holdout clean {h_clean:.3f} robust {h_robust:.3f}")
        full_eps = eps_now >= cfg.eps - 1e-12
        if full_eps and h_robust >= best["holdout_robust"]:
            best = {"epoch": epoch, "holdout_robust": h_robust, "holdout_clean": h_clean}
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        # catastrophic overfitting guard (FGSM-RS): robust accuracy collapses while clean accuracy rises
        if full_eps and best["holdout_robust"] > 0.1 and h_robust < best["holdout_robust"] - 0.2:
            stop_reason = f"stopped at epoch {epoch}: held-out robust accuracy collapsed (catastrophic overfitting)"
            logger.warning(stop_reason)
            break
        # safety net: never run far past the time budget (the plan above should make this rare)
        spent = time.perf_counter() - t_start
        if cfg.time_budget and epoch < planned_epochs and spent + epoch_time > 1.25 * cfg.time_budget:
            stop_reason = f"stopped at epoch {epoch}/{planned_epochs}: time budget exhausted"
            logger.warning(stop_reason)
            save(epoch, spent)
            break
        save(epoch, time.perf_counter() - t_start)
        if cfg.stop_after is not None and epoch >= cfg.stop_after and epoch < planned_epochs:
            logger.info("stopping after epoch %d as asked; resume with --resume", epoch)
            return card(time.perf_counter() - t_start, False)

    train_seconds = time.perf_counter() - t_start
    if best_state is not None and best["epoch"] != epoch:
        net.load_state_dict({k: v.to(device) for k, v in best_state.items()})
    final_card = card(train_seconds, True)
    final_card["training"]["stop_reason"] = stop_reason
    final_card["training"]["best_holdout"] = best
    save_model_file(
        out, net, cfg.arch, card=final_card,
        extra={"train_state": {"finished": True, "config": asdict(cfg), "history": history}},
    )
    return final_card


def pack(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, half: bool = True) -> Path:
    """Copy a trained checkpoint to ``dst`` without optimiser/resume state, optionally as fp16."""
    from workers.models import load_model, read_checkpoint, save_model_file

    ckpt = read_checkpoint(src)
    model = load_model(src)
    return save_model_file(
        dst, model.model, ckpt["arch"], normalization=ckpt.get("normalization"), card=ckpt.get("card"), half=half
    )


# ----------------------------------------------------------------------------------------------------------
# the default models
# ----------------------------------------------------------------------------------------------------------

# Recipes of the committed default models; ``budget`` is the training time planned on the GPU (seconds).
DEFAULT_RECIPES: dict[str, dict[str, Any]] = {
    "mnist-default": {
        "config": {"dataset": "mnist", "arch": "madry_mnist", "eps": 0.3, "method": "pgd", "pgd_steps": 10,
                   "epochs": 40, "batch_size": 128, "lr": 1e-3, "optimizer": "adam", "eps_warmup": 0.25, "seed": 0,
                   "amp": False, "channels_last": False},
        "budget": 120.0,
    },
    "mnist-second": {
        "config": {"dataset": "mnist", "arch": "cw_mnist", "eps": 0.3, "method": "pgd", "pgd_steps": 10,
                   "epochs": 40, "batch_size": 128, "lr": 1e-3, "optimizer": "adam", "eps_warmup": 0.25, "seed": 1,
                   "amp": False, "channels_last": False},
        "budget": 80.0,
    },
    "cifar10-default": {
        "config": {"dataset": "cifar10", "arch": "preact_resnet18_w32", "eps": 8 / 255, "method": "fgsm-rs",
                   "fgsm_alpha": 10 / 255, "epochs": 30, "batch_size": 256, "lr": 0.2, "optimizer": "sgd",
                   "weight_decay": 5e-4, "seed": 0},
        "budget": 240.0,
    },
}


def train_default_model(
    name: str,
    stage: str | os.PathLike[str],
    *,
    data_dir: str | None = None,
    device: str = "auto",
    budget_scale: float = 1.0,
    smoke: bool = False,
    progress: bool = True,
    note: str = "",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train default model ``name`` with its recipe, pack it as fp16 to ``stage/<name>.pt``, evaluate it on
    the lossless test set and write ``stage/<name>.json``. Returns the evaluation.

    ``overrides`` replaces recipe entries (``budget`` or any TrainConfig field, e.g. ``epochs``)."""
    from workers.models.evaluate import EVAL_DEFAULTS, evaluate_file

    recipe = copy.deepcopy(DEFAULT_RECIPES[name])
    for key, value in (overrides or {}).items():
        if key == "budget":
            recipe["budget"] = float(value)
        else:
            recipe["config"][key] = value
    stage = Path(stage)
    stage.mkdir(parents=True, exist_ok=True)
    kw = dict(recipe["config"])
    kw.update(device=device, data_dir=data_dir, time_budget=recipe["budget"] * budget_scale, note=note,
              extra={"name": name})
    if smoke:
        # exercise the CUDA code paths (bf16 autocast, channels_last) on the CPU too
        # (bf16 convolutions are ~10x slower on most CPUs: autocast only for the small MNIST nets)
        kw.update(epochs=2, max_batches=3, train_subset=2000, holdout=100, pgd_steps=2,
                  amp=kw["dataset"] == "mnist", channels_last=True, batch_size=32, time_budget=30.0)
    cfg = TrainConfig(**kw)
    work = stage / f"{name}.full.pt"
    if work.exists():
        work.unlink()
    train(cfg, work, progress=progress)
    final = pack(work, stage / f"{name}.pt", half=True)
    work.unlink()
    ev = EVAL_DEFAULTS[cfg.dataset]
    return evaluate_file(
        final, cfg.dataset, data_dir=data_dir, eps=cfg.eps, steps=2 if smoke else int(ev["steps"]),
        alpha=None if smoke else ev["alpha"], n=200 if smoke else None, device=device, progress=False,
    )
