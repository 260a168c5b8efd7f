"""L2 at a fixed norm (default 6, pixels in [0, 1]), the paper's CIFAR-10 L2 study.

1. Start on the sphere ``||x' - x||_2 = r`` at the point of highest SSIM (CAI) or lowest SSIM (CAP), found by
   the equal-MSE search of Wang et al. 2004 (``workers.attacks.wang``) on the optimisation SSIM (reflect padding).
2. Iterate: one gradient step on the clipped margin loss ``min(max_{k != y} z_k - z_y, kappa)``, projected on the
   sphere's tangent plane and renormalised onto the sphere (inside the box); then one equal-MSE SSIM step
   (up for CAI, down for CAP). Once a sample is misclassified by ``kappa`` the loss gradient vanishes and only
   the SSIM steps move it, until it drifts back toward the decision boundary.
3. Every iterate is rounded to 8 bits with the exact L2 band (``workers.measures.budgets.quantize_l2``); among the
   rounded iterates that are misclassified, the one with the best SSIM (highest for CAI, lowest for CAP) is
   kept.
"""

from __future__ import annotations

from typing import Any

import torch

from workers.attacks.base import AttackResult, register
from workers.attacks.common import BestBySsim, condition_direction, margin_grad, predict
from workers.attacks.wang import equal_mse_search, project_sphere_box, ssim_tangent_step, tangent, unit
from workers.measures.budgets import L2_TARGET, L2_TOL, from_uint8, quantize_l2, to_uint8
from workers.measures.ssim import OPT_VARIANT, ssim


@register(
    "l2_fixed",
    "l2",
    ("CAI", "CAP"),
    defaults={
        "r": L2_TARGET,
        "tol": L2_TOL,
        "wang_steps": 100,
        "steps": 60,
        "step": 0.05,
        "ssim_step": 0.02,
        "kappa": 1.0,
    },
    ssim_variant=OPT_VARIANT,
)
def l2_fixed(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    condition: str = "CAI",
    generator: torch.Generator | None = None,
    r: float = L2_TARGET,
    tol: float = L2_TOL,
    wang_steps: int = 100,
    steps: int = 60,
    step: float = 0.05,
    ssim_step: float = 0.02,
    kappa: float = 1.0,
    **_: Any,
) -> AttackResult:
    """L2 = ``r`` attack; ``step`` and ``ssim_step`` are step lengths as fractions of ``r``."""
    direction = condition_direction(condition)
    x = x.detach()
    y = y.to(x.device).long()
    b_u8 = to_uint8(x)
    cur, _ = equal_mse_search(x, r, direction, steps=wang_steps, generator=generator)
    best = BestBySsim(quantize_l2(b_u8, cur, r, tol), direction)
    for it in range(steps + 1):
        q = quantize_l2(b_u8, cur, r, tol)
        qf = from_uint8(q, x.dtype)
        l2 = (q.double() - b_u8.double()).flatten(1).norm(dim=1) / 255.0
        in_band = (l2 >= r - tol) & (l2 <= r + tol)
        ok = (predict(model, qf) != y) & in_band
        with torch.no_grad():
            s = ssim(x, qf, OPT_VARIANT).double()
        best.update(q, ok, s, it)
        if it == steps:
            break
        _, g = margin_grad(model, cur, y, kappa)
        cur = project_sphere_box(x, cur + step * r * unit(tangent(g, cur - x)), r)
        cur = ssim_tangent_step(x, cur, r, ssim_step, direction)
    return best.result("no misclassified iterate at L2 = r")
