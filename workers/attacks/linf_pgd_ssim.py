"""L-inf PGD (Madry et al.) at eps 0.1 with an SSIM step after every iteration, the paper's CIFAR-10 L-inf study.

Each iteration takes a PGD step (``alpha * sign`` of the gradient of the clipped margin loss
``min(max_{k != y} z_k - z_y, kappa)``), projects onto the eps-ball and the box, then takes one SSIM step on
the optimisation SSIM (reflect padding), projected likewise:

* CAI raises SSIM with a scaled gradient step (the gradient divided by its largest entry, times
  ``ssim_alpha``), so pixels that barely matter barely move;
* CAP lowers SSIM with a signed step (``ssim_alpha * sign``), which drives the perturbation to the corners of
  the eps-box where it is most visible.

Every iterate is rounded to 8 bits within ``floor(eps * 255)`` levels (``workers.measures.budgets.quantize_linf``); the
misclassified rounded iterate with the best SSIM (highest for CAI, lowest for CAP) is kept.
"""

from __future__ import annotations

from typing import Any

import torch

from workers.attacks.base import AttackResult, register
from workers.attacks.common import BestBySsim, bshape, condition_direction, margin_grad, predict
from workers.measures.budgets import LINF_EPS, from_uint8, quantize_linf, to_uint8
from workers.measures.ssim import OPT_VARIANT, ssim, ssim_grad


def _project(x: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(adv, x - eps), x + eps).clamp(0.0, 1.0)


@register(
    "linf_pgd_ssim",
    "linf",
    ("CAI", "CAP"),
    defaults={"eps": LINF_EPS, "steps": 60, "alpha": 0.01, "ssim_alpha": 0.01, "kappa": 1.0, "random_start": True},
    ssim_variant=OPT_VARIANT,
)
def linf_pgd_ssim(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    condition: str = "CAI",
    generator: torch.Generator | None = None,
    eps: float = LINF_EPS,
    steps: int = 60,
    alpha: float = 0.01,
    ssim_alpha: float = 0.01,
    kappa: float = 1.0,
    random_start: bool = True,
    **_: Any,
) -> AttackResult:
    direction = condition_direction(condition)
    x = x.detach()
    y = y.to(x.device).long()
    b_u8 = to_uint8(x)
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        cur = _project(x, x + (2 * noise - 1) * eps, eps)
    else:
        cur = x.clone()
    best = BestBySsim(quantize_linf(b_u8, cur, eps), direction)
    for it in range(steps + 1):
        q = quantize_linf(b_u8, cur, eps)
        qf = from_uint8(q, x.dtype)
        ok = predict(model, qf) != y
        with torch.no_grad():
            s = ssim(x, qf, OPT_VARIANT).double()
        best.update(q, ok, s, it)
        if it == steps:
            break
        _, g = margin_grad(model, cur, y, kappa)
        cur = _project(x, cur + alpha * g.sign(), eps)
        _, gs = ssim_grad(x, cur, OPT_VARIANT)
        if direction > 0:
            scale = gs.flatten(1).abs().amax(1).clamp(min=1e-12).view(bshape(gs))
            cur = _project(x, cur + ssim_alpha * gs / scale, eps)
        else:
            cur = _project(x, cur - ssim_alpha * gs.sign(), eps)
    return best.result("no misclassified iterate within eps")
