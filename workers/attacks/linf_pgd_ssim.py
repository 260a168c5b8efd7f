"""L-inf PGD (Madry et al.) at eps 0.1 with Wang's equal-MSE SSIM step, the paper's CIFAR-10 L-inf study.

CAI and CAP run the *same* algorithm; only the sign of the SSIM step differs (up for CAI, down for CAP):

1. random start, uniform in the eps-ball (seeded);
2. per iteration, a PGD step ``alpha * sign(grad CE)`` on the cross-entropy of the true label (Madry et al.),
   projected onto the eps-ball and the box;
3. then one SSIM step in the manner of Wang et al. (2004): the gradient of the optimisation SSIM (reflect
   padding) projected on the tangent plane of the sphere ``||x' - x||_2 = ||cur - x||_2`` (so the step keeps the
   MSE, to first order), of length ``ssim_step * ||cur - x||_2``, then put back at the same L2 distance inside
   the eps-ball and the box (the exact point of the ray from ``x``, by bisection). The SSIM step therefore never
   changes the energy of the perturbation, only its structure: CAI and CAP differ in SSIM, not in L2 (beyond
   what their diverging PGD trajectories do);
4. after ``steps`` iterations the **final iterate** is rounded to 8 bits within ``floor(eps * 255)`` levels
   (``workers.measures.budgets.quantize_linf``) and succeeds if the model misclassifies the rounded image.

``select="best_ssim"`` keeps, instead of the final iterate, the misclassified rounded iterate with the best
SSIM (highest for CAI, lowest for CAP): an option, off by default (not the paper's method).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from workers.attacks.base import AttackResult, register
from workers.attacks.common import BestBySsim, bshape, condition_direction, predict
from workers.attacks.wang import bisect_ray, tangent, unit
from workers.measures.budgets import LINF_EPS, from_uint8, quantize_linf, to_uint8
from workers.measures.ssim import OPT_VARIANT, ssim, ssim_grad

SELECT = ("final", "best_ssim")


def _project(x: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(adv, x - eps), x + eps).clamp(0.0, 1.0)


def rescale_in_ball(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, eps: float, iters: int = 30) -> torch.Tensor:
    """``proj(x + t (y - x))`` with the ``t >= 0`` that puts it at L2 distance ``r`` (per sample) from ``x``.

    ``proj`` clips to the eps-ball and the box; the distance of the projected ray point grows with ``t``, so a
    bisection finds ``t``. Where ``r`` cannot be reached along the ray, the farthest point is returned.
    """
    d = y - x
    norm = d.flatten(1).norm(dim=1).clamp(min=1e-12)

    def dist(t: torch.Tensor) -> torch.Tensor:
        return (_project(x, x + t.view(bshape(x)) * d, eps) - x).flatten(1).norm(dim=1)

    hi = bisect_ray(dist, r, r / norm, grow=30, iters=iters)
    return _project(x, x + hi.view(bshape(x)) * d, eps)


def wang_step_linf(x: torch.Tensor, cur: torch.Tensor, eps: float, ssim_step: float, direction: int) -> torch.Tensor:
    """One equal-MSE SSIM step (up for ``direction=+1``, down for ``-1``) inside the eps-ball."""
    d = cur - x
    r = d.flatten(1).norm(dim=1)
    _, g = ssim_grad(x, cur, OPT_VARIANT)
    t = unit(tangent(g, d))
    moved = cur + direction * ssim_step * r.view(bshape(x)) * t
    out = rescale_in_ball(x, moved, r, eps)
    return torch.where((r > 1e-12).view(bshape(x)), out, cur)


def ce_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy of the true labels with respect to ``x``."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    return g


@register(
    "linf_pgd_ssim",
    "linf",
    ("CAI", "CAP"),
    defaults={
        "eps": LINF_EPS,
        "steps": 40,
        "alpha": 0.01,
        "ssim_step": 0.1,
        "random_start": True,
        "select": "final",
    },
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
    steps: int = 40,
    alpha: float = 0.01,
    ssim_step: float = 0.1,
    random_start: bool = True,
    select: str = "final",
    **_: Any,
) -> AttackResult:
    """PGD + equal-MSE SSIM steps; ``ssim_step`` is the SSIM step length as a fraction of the current L2."""
    if select not in SELECT:
        raise ValueError(f"unknown select {select!r}; choose one of {SELECT}")
    if steps < 1 or alpha <= 0 or ssim_step < 0:
        raise ValueError("need steps >= 1, alpha > 0 and ssim_step >= 0")
    direction = condition_direction(condition)
    x = x.detach()
    y = y.to(x.device).long()
    b_u8 = to_uint8(x)
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        cur = _project(x, x + (2 * noise - 1) * eps, eps)
    else:
        cur = x.clone()
    best = BestBySsim(quantize_linf(b_u8, cur, eps), direction) if select == "best_ssim" else None
    for it in range(1, steps + 1):
        cur = _project(x, cur + alpha * ce_grad(model, cur, y).sign(), eps)
        if ssim_step > 0:
            cur = wang_step_linf(x, cur, eps, ssim_step, direction)
        if best is not None:
            q = quantize_linf(b_u8, cur, eps)
            qf = from_uint8(q, x.dtype)
            with torch.no_grad():
                s = ssim(x, qf, OPT_VARIANT).double()
            best.update(q, predict(model, qf) != y, s, it)
    if best is not None:
        return best.result("no misclassified iterate within eps")
    q = quantize_linf(b_u8, cur, eps)
    qf = from_uint8(q, x.dtype)
    ok = predict(model, qf) != y
    with torch.no_grad():
        s = ssim(x, qf, OPT_VARIANT)
    n = x.shape[0]
    return AttackResult(
        adv_u8=q,
        success=ok,
        target=torch.full((n,), -1, dtype=torch.long, device=x.device),
        iterations=torch.full((n,), steps, dtype=torch.long, device=x.device),
        ssim_opt=s.float(),
        notes=["" if bool(o) else "final iterate still classified correctly" for o in ok],
    )
