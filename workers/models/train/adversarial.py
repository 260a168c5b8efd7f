"""The attack in the loop: each step trains on FGSM-RS or PGD examples; every epoch ends with a PGD holdout check."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workers.models.evaluate import pgd_attack
from workers.models.train.config import TrainConfig
from workers.models.train.data import augment_batch
from workers.models.train.run import TrainRun


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


def adversarial_step(
    run: TrainRun, m: nn.Module, o: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor, eps_now: float,
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step of ``m`` on adversarial examples of (xb, yb) at radius eps_now."""
    cfg = run.cfg
    if cfg.augment:
        xb = augment_batch(xb, g)
    xb = xb.contiguous(memory_format=run.mem_format)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.use_amp):
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


@torch.no_grad()
def holdout_check(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, device: torch.device, seed: int
) -> tuple[float, float]:
    """Clean and PGD accuracy on the held-out training images (NaN without a holdout)."""
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
