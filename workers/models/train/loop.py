"""The training loop: ``train()`` runs the planned epochs, checks each on the holdout, keeps the best weights."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from workers.models.train.adversarial import adversarial_step, holdout_check
from workers.models.train.checkpoint import read_resume_state, restore, save_checkpoint, save_finished, training_card
from workers.models.train.config import TrainConfig, TrainError
from workers.models.train.run import TrainRun, configure_device, start_run
from workers.models.train.schedule import cyclic_lr, plan_epochs, ramp

logger = logging.getLogger("workers.models.train")


def train(config: TrainConfig, out: str | os.PathLike[str], *, resume: bool = False, progress: bool = True) -> dict:
    """Train a robust model per ``config``; write checkpoints to ``out``. Returns the training card.

    With ``resume`` and an unfinished checkpoint at ``out`` the run continues from its last completed epoch
    (same seed, schedule and data order).
    """
    from tqdm import tqdm

    cfg = config.resolved()
    out = Path(out)
    if out.suffix != ".pt":
        raise TrainError(f"--out must be a .pt file, got {out}")
    if out.exists() and not resume:
        raise TrainError(f"{out} exists: pass --resume to continue it, or choose another --out")
    device, use_amp, mem_format = configure_device(cfg)

    resumed: tuple[dict[str, Any], dict[str, Any]] | None = None
    if resume and out.exists():
        ckpt, state = read_resume_state(cfg, out)
        if state.get("finished"):
            logger.info("%s is already finished", out)
            return dict(ckpt.get("card") or {})
        resumed = ckpt, state

    run = start_run(cfg, out, device, use_amp, mem_format)
    start_epoch, elapsed_before = 0, 0.0
    if resumed is not None:
        start_epoch, elapsed_before = restore(run, *resumed)
    elif cfg.time_budget:
        run.calibration = plan_epochs(run, progress)

    total_steps = run.planned_epochs * run.steps_per_epoch
    t_start = time.perf_counter() - elapsed_before
    epoch = start_epoch
    stop_reason = "planned epochs done"
    while epoch < run.planned_epochs:
        t_epoch = time.perf_counter()
        stats = _train_epoch(run, epoch, total_steps, progress)
        if run.cuda:
            torch.cuda.synchronize()
        train_time = time.perf_counter() - t_epoch
        h_clean, h_robust = holdout_check(run.model, run.x_hold, run.y_hold, cfg, device, seed=cfg.seed + 3)
        epoch += 1
        epoch_time = time.perf_counter() - t_epoch
        rec = {
            "epoch": epoch, "seconds": round(epoch_time, 2), "train_seconds": round(train_time, 2),
            "train_loss": round(stats["loss_sum"] / max(stats["seen"], 1), 4),
            "train_adv_acc": round(stats["correct"] / max(stats["seen"], 1), 4),
            "holdout_clean": round(h_clean, 4), "holdout_robust": round(h_robust, 4),
            "lr_end": round(stats["lr"], 6), "eps_end": round(stats["eps"], 5),
        }
        run.history.append(rec)
        logger.info("epoch %d: %s", epoch, rec)
        if progress:
            tqdm.write(f"[{cfg.arch}] epoch {epoch}/{run.planned_epochs} {epoch_time:.1f}s loss {rec['train_loss']} "
                       f"holdout clean {h_clean:.3f} robust {h_robust:.3f}")
        full_eps = stats["eps"] >= cfg.eps - 1e-12
        if full_eps and h_robust >= run.best["holdout_robust"]:
            run.best = {"epoch": epoch, "holdout_robust": h_robust, "holdout_clean": h_clean}
            run.best_state = {k: v.detach().cpu().clone() for k, v in run.net.state_dict().items()}
        # catastrophic overfitting guard (FGSM-RS): robust accuracy collapses while clean accuracy rises
        if full_eps and run.best["holdout_robust"] > 0.1 and h_robust < run.best["holdout_robust"] - 0.2:
            stop_reason = f"stopped at epoch {epoch}: held-out robust accuracy collapsed (catastrophic overfitting)"
            logger.warning(stop_reason)
            break
        # safety net: never run far past the time budget (the plan above should make this rare)
        spent = time.perf_counter() - t_start
        if cfg.time_budget and epoch < run.planned_epochs and spent + epoch_time > 1.25 * cfg.time_budget:
            stop_reason = f"stopped at epoch {epoch}/{run.planned_epochs}: time budget exhausted"
            logger.warning(stop_reason)
            save_checkpoint(run, epoch, spent)
            break
        save_checkpoint(run, epoch, time.perf_counter() - t_start)
        if cfg.stop_after is not None and epoch >= cfg.stop_after and epoch < run.planned_epochs:
            logger.info("stopping after epoch %d as asked; resume with --resume", epoch)
            return training_card(run, time.perf_counter() - t_start, False)

    train_seconds = time.perf_counter() - t_start
    if run.best_state is not None and run.best["epoch"] != epoch:
        run.net.load_state_dict({k: v.to(device) for k, v in run.best_state.items()})
    final_card = training_card(run, train_seconds, True)
    final_card["training"]["stop_reason"] = stop_reason
    final_card["training"]["best_holdout"] = run.best
    save_finished(run, final_card)
    return final_card


def _train_epoch(run: TrainRun, epoch: int, total_steps: int, progress: bool) -> dict[str, float]:
    """One pass over a fresh permutation of the training set; the loss and accuracy of every 20th batch,
    and the LR and eps of the last step."""
    from tqdm import tqdm

    cfg, bs = run.cfg, run.batch_size
    order = torch.randperm(run.n_train, generator=run.cpu_gen).to(run.device)
    loss_sum = correct = seen = 0.0
    lr = eps_now = 0.0
    bar = tqdm(range(run.steps_per_epoch), desc=f"{cfg.arch} epoch {epoch + 1}/{run.planned_epochs}",
               disable=not progress, leave=False, unit="batch")
    for i in bar:
        step = epoch * run.steps_per_epoch + i
        frac = (step + 1) / total_steps
        lr = cyclic_lr(frac, cfg.lr or 0.0)
        eps_now = cfg.eps * ramp(frac, cfg.eps_warmup or 0.0)
        for g in run.opt.param_groups:
            g["lr"] = lr
        idx = order[i * bs : (i + 1) * bs]
        loss, logits = adversarial_step(
            run, run.model, run.opt, run.x_train[idx].float().div_(255), run.y_train[idx], eps_now, run.gen
        )
        if i % 20 == 0 or i == run.steps_per_epoch - 1:
            yb = run.y_train[idx]
            loss_sum += float(loss.detach()) * len(yb)
            correct += float((logits.argmax(1) == yb).sum())
            seen += len(yb)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{lr:.4f}", eps=f"{eps_now:.3f}")
    bar.close()
    return {"loss_sum": loss_sum, "correct": correct, "seen": seen, "lr": lr, "eps": eps_now}
