"""Checkpoints: the training card, the resumable state written after every epoch, resuming it, and packing.

An unfinished checkpoint holds the weights, the card and ``train_state`` (config, epoch, plan, optimiser,
history, best weights so far, RNG states); resuming restores all of it, so a resumed run is bit-identical to
one that was never interrupted. A finished one holds the best weights and only the config and history.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from workers.models.evaluate import device_description
from workers.models.train.config import TrainConfig, TrainError
from workers.models.train.run import TrainRun

logger = logging.getLogger("workers.models.train")

# What must match between a checkpoint and the config that resumes it.
RESUME_KEYS = ("dataset", "arch", "eps", "method", "seed", "batch_size", "lr", "epochs")


def read_resume_state(cfg: TrainConfig, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint at ``out`` and its training state; an unfinished one must have been made by this config."""
    from workers.models import read_checkpoint

    ckpt = read_checkpoint(out)
    state = ckpt.get("train_state") if isinstance(ckpt, dict) else None
    if not state:
        raise TrainError(f"{out} holds no resumable training state")
    if not state.get("finished"):
        saved = state["config"]
        for key in RESUME_KEYS:
            if saved[key] != getattr(cfg, key):
                raise TrainError(f"cannot resume: {key} was {saved[key]!r} in {out}, now {getattr(cfg, key)!r}")
    return ckpt, state


def restore(run: TrainRun, ckpt: dict[str, Any], state: dict[str, Any]) -> tuple[int, float]:
    """Put an unfinished checkpoint's weights, optimiser, plan, history and RNGs back into ``run``.
    Returns the epoch to continue from and the training seconds already spent."""
    run.net.load_state_dict({k: v.to(run.device) for k, v in ckpt["state_dict"].items()})
    run.opt.load_state_dict(state["optimizer"])
    start_epoch = int(state["epoch"])
    run.planned_epochs = int(state["planned_epochs"])
    run.history = list(state["history"])
    run.best = dict(state["best"])
    run.best_state = state.get("best_state")
    elapsed_before = float(state.get("train_seconds", 0.0))
    run.gen.set_state(state["rng"]["gen"])
    run.cpu_gen.set_state(state["rng"]["cpu_gen"])
    torch.set_rng_state(state["rng"]["torch"])
    logger.info("resuming %s at epoch %d/%d", run.out, start_epoch + 1, run.planned_epochs)
    return start_epoch, elapsed_before


def recipe(run: TrainRun) -> dict[str, Any]:
    cfg = run.cfg
    r = {
        "method": cfg.method, "eps": cfg.eps, "epochs_max": cfg.epochs, "epochs_planned": run.planned_epochs,
        "batch_size": run.batch_size, "optimizer": cfg.optimizer, "lr_max": cfg.lr,
        "lr_schedule": "cyclic (0 -> max at 40% -> 0)",
        "weight_decay": cfg.weight_decay, "momentum": cfg.momentum if cfg.optimizer == "sgd" else None,
        "eps_warmup_fraction": cfg.eps_warmup, "augment": "random crop (pad 4) + flip" if cfg.augment else None,
        "seed": cfg.seed, "amp": "bf16" if run.use_amp else None, "holdout": run.n_hold,
        "steps_per_epoch": run.steps_per_epoch, "time_budget_s": cfg.time_budget,
    }
    if cfg.method == "pgd":
        r.update(pgd_steps=cfg.pgd_steps, pgd_alpha=cfg.pgd_alpha, random_start=True)
    else:
        r.update(fgsm_alpha=cfg.fgsm_alpha, random_start="uniform in the eps-ball")
    return r


def training_card(run: TrainRun, train_seconds: float, finished: bool) -> dict[str, Any]:
    cfg = run.cfg
    return {
        "dataset": cfg.dataset, "arch": cfg.arch, "recipe": recipe(run),
        "training": {
            "data": run.source, "n_train": run.n_train, "epochs_run": len(run.history), "finished": finished,
            "best_epoch": run.best["epoch"], "selected_by": f"held-out PGD-{cfg.holdout_pgd_steps} accuracy on "
            f"{run.n_hold} training images", "train_seconds": round(train_seconds, 1),
            "data_load_seconds": round(run.data_seconds, 1), "device": device_description(run.device),
            "calibration": run.calibration,
            "torch": torch.__version__, "history": run.history,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        },
        "note": cfg.note, **cfg.extra,
    }


def save_checkpoint(run: TrainRun, epoch: int, train_seconds: float) -> None:
    """The resumable checkpoint after ``epoch``."""
    from workers.models import save_model_file

    train_state = {
        "config": asdict(run.cfg), "epoch": epoch, "planned_epochs": run.planned_epochs,
        "optimizer": run.opt.state_dict(), "history": run.history, "best": run.best, "best_state": run.best_state,
        "train_seconds": train_seconds,
        "rng": {"gen": run.gen.get_state().cpu(), "cpu_gen": run.cpu_gen.get_state(), "torch": torch.get_rng_state()},
        "finished": False,
    }
    save_model_file(run.out, run.net, run.cfg.arch, card=training_card(run, train_seconds, False),
                    extra={"train_state": train_state})


def save_finished(run: TrainRun, card: dict[str, Any]) -> None:
    """The final checkpoint: the weights in ``run.net``, the card, and no optimiser or RNG state."""
    from workers.models import save_model_file

    save_model_file(
        run.out, run.net, run.cfg.arch, card=card,
        extra={"train_state": {"finished": True, "config": asdict(run.cfg), "history": run.history}},
    )


def pack(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, half: bool = True) -> Path:
    """Copy a trained checkpoint to ``dst`` without optimiser/resume state, optionally as fp16."""
    from workers.models import load_model, read_checkpoint, save_model_file

    ckpt = read_checkpoint(src)
    model = load_model(src)
    return save_model_file(
        dst, model.model, ckpt["arch"], normalization=ckpt.get("normalization"), card=ckpt.get("card"), half=half
    )
