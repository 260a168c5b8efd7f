"""The default models: their recipes, and training, packing and evaluating one of them."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from workers.models.train.checkpoint import pack
from workers.models.train.config import TrainConfig
from workers.models.train.loop import train

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
