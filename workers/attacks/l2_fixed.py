"""L2 at a fixed norm (default 6, pixels in [0, 1]), the paper's CIFAR-10 L2 study.

The paper's method, the default here:

1. **Wang initialisation.** Start on the sphere ``||x' - x||_2 = r`` at the point of highest SSIM (CAI) or
   lowest SSIM (CAP), found by the equal-MSE search of Wang et al. 2004 (``workers.attacks.wang``) on the optimisation
   SSIM (reflect padding).
2. **Gradient steps, renormalised.** Each iteration takes a step of length ``step * r`` along the normalised
   gradient of the cross-entropy of the true label and puts the image back on the sphere, at exactly L2 = r
   inside the box (``project_sphere_box``).
3. **Stop when misclassified.** Every iterate is rounded to 8 bits with the exact L2 band
   (``workers.measures.budgets.quantize_l2``); an image stops at its first rounded iterate that the model misclassifies,
   which keeps it as close to its Wang start (high or low SSIM) as the attack allows.

Two named options, off by default because the paper does not describe them:

* ``ssim_steps=True``: after every gradient step, one equal-MSE SSIM step of length ``ssim_step * r`` (up for
  CAI, down for CAP), so the SSIM keeps being pushed while the attack runs;
* ``select="best_ssim"``: run all ``steps`` iterations and keep the misclassified rounded iterate with the best
  SSIM (highest for CAI, lowest for CAP) instead of the first one.
"""

from __future__ import annotations

from typing import Any

import torch

from workers.attacks.base import AttackResult, register
from workers.attacks.common import BestBySsim, bshape, condition_direction, predict
from workers.attacks.linf_pgd_ssim import ce_grad
from workers.attacks.wang import equal_mse_search, project_sphere_box, ssim_tangent_step, unit
from workers.measures.budgets import L2_TARGET, L2_TOL, from_uint8, quantize_l2, to_uint8
from workers.measures.ssim import OPT_VARIANT, ssim

SELECT = ("first", "best_ssim")


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
        "ssim_steps": False,
        "ssim_step": 0.02,
        "select": "first",
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
    ssim_steps: bool = False,
    ssim_step: float = 0.02,
    select: str = "first",
    **_: Any,
) -> AttackResult:
    """L2 = ``r`` attack; ``step`` and ``ssim_step`` are step lengths as fractions of ``r``."""
    if select not in SELECT:
        raise ValueError(f"unknown select {select!r}; choose one of {SELECT}")
    if steps < 0 or step <= 0 or wang_steps < 0:
        raise ValueError("need steps >= 0, step > 0 and wang_steps >= 0")
    direction = condition_direction(condition)
    x = x.detach()
    y = y.to(x.device).long()
    n = x.shape[0]
    b_u8 = to_uint8(x)
    cur, _ = equal_mse_search(x, r, direction, steps=wang_steps, generator=generator)
    best = BestBySsim(quantize_l2(b_u8, cur, r, tol), direction)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    for it in range(steps + 1):
        q = quantize_l2(b_u8, cur, r, tol)
        qf = from_uint8(q, x.dtype)
        l2 = (q.double() - b_u8.double()).flatten(1).norm(dim=1) / 255.0
        in_band = (l2 >= r - tol) & (l2 <= r + tol)
        ok = (predict(model, qf) != y) & in_band
        with torch.no_grad():
            s = ssim(x, qf, OPT_VARIANT).double()
        if select == "first":
            best.update(q, ok & active, s, it)
            active &= ~ok
            if not bool(active.any()):
                break
        else:
            best.update(q, ok, s, it)
        if it == steps:
            break
        g = ce_grad(model, cur, y)
        moved = project_sphere_box(x, cur + step * r * unit(g), r)
        if ssim_steps:
            moved = ssim_tangent_step(x, moved, r, ssim_step, direction)
        # Images that stopped keep their iterate (only the active ones move on).
        cur = torch.where(active.view(bshape(x)), moved, cur) if select == "first" else moved
    return best.result("no misclassified iterate at L2 = r")
