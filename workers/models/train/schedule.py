"""The schedules: one-cycle LR, the eps ramp, and the number of epochs planned from a time budget."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import torch

from workers.models.train.adversarial import adversarial_step, holdout_check
from workers.models.train.run import TrainRun

logger = logging.getLogger("workers.models.train")


def cyclic_lr(progress: float, lr_max: float, peak: float = 0.4) -> float:
    """One-cycle schedule (Wong et al. 2020): 0 -> lr_max linearly until ``peak``, then back to 0."""
    progress = min(max(progress, 0.0), 1.0)
    if progress <= peak:
        return lr_max * progress / peak
    return lr_max * (1.0 - progress) / (1.0 - peak)


def ramp(progress: float, warmup: float) -> float:
    """Linear ramp from 0 to 1 over the first ``warmup`` fraction (1 when warmup is 0)."""
    return 1.0 if warmup <= 0 else min(1.0, progress / warmup)


def plan_epochs(run: TrainRun, progress: bool) -> dict[str, Any]:
    """Set ``run.planned_epochs`` from ``cfg.time_budget``; returns the calibration that led to it.

    The plan is made before training, from timed steps on a throw-away copy of the model, so that the LR and
    eps schedules are fixed from the first step (changing them mid-run can wreck MNIST).
    """
    from tqdm import tqdm

    cfg, device, bs = run.cfg, run.device, run.batch_size
    assert cfg.time_budget is not None and cfg.epochs is not None
    t_cal = time.perf_counter()
    m_copy = copy.deepcopy(run.model)
    o_copy = torch.optim.SGD(m_copy.parameters(), lr=1e-6)
    g_copy = torch.Generator(device=device)
    g_copy.manual_seed(12345)
    n_warm, n_timed = 3, min(20, run.steps_per_epoch)
    for j in range(n_warm + n_timed):
        if j == n_warm:
            if run.cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        idx = torch.arange(j * bs, (j + 1) * bs, device=device) % run.n_train
        adversarial_step(run, m_copy, o_copy, run.x_train[idx].float().div_(255), run.y_train[idx], cfg.eps, g_copy)
    if run.cuda:
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - t0) / n_timed
    t0 = time.perf_counter()
    holdout_check(m_copy, run.x_hold, run.y_hold, cfg, device, seed=0)
    per_check = time.perf_counter() - t0
    del m_copy, o_copy
    est_epoch = per_step * run.steps_per_epoch + per_check
    remaining = cfg.time_budget - (time.perf_counter() - t_cal)
    run.planned_epochs = max(1, min(cfg.epochs, int(remaining // est_epoch)))
    calibration = {"seconds_per_step": round(per_step, 5), "holdout_check_seconds": round(per_check, 2),
                   "estimated_epoch_seconds": round(est_epoch, 2), "planned_epochs": run.planned_epochs,
                   "calibration_seconds": round(time.perf_counter() - t_cal, 2)}
    logger.info("time budget %.0fs: ~%.1fs/epoch -> %d epochs", cfg.time_budget, est_epoch, run.planned_epochs)
    if progress:
        tqdm.write(f"[{cfg.arch}] ~{est_epoch:.1f}s/epoch, budget {cfg.time_budget:.0f}s "
                   f"-> {run.planned_epochs} epochs")
    return calibration
