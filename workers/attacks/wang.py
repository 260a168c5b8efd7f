"""Equal-MSE SSIM ascent and descent (Wang et al. 2004, "Image quality assessment: from error visibility to
structural similarity", Sec. IV-B), batched in torch.

All images ``y`` stay on the sphere ``||y - x||_2 = r`` intersected with the box ``[0, 1]``. One iteration:

1. take the SSIM gradient at ``y`` (autograd, the optimisation variant by default: reflect padding, so the
   border pixels are seen too; see ``workers.measures.ssim``);
2. project it onto the tangent plane of the sphere at ``y`` (remove its component along ``y - x``);
3. step along it (+ for higher SSIM, - for lower), with a step length relative to ``r``;
4. clip to ``[0, 1]`` and rescale back onto the sphere (``project_sphere_box``: the exact point of the ray
   ``x + t (y - x)``, clipped, at distance ``r``);
5. keep the move only if SSIM got better, otherwise keep the old point and halve the step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from workers.measures.ssim import OPT_VARIANT, Variant, ssim, ssim_grad

_EPS = 1e-12


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample dot product, shaped to broadcast against ``a``."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def l2_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 distance, shape ``[N]``."""
    return (y - x).flatten(1).norm(dim=1)


def project_sphere_box(x: torch.Tensor, y: torch.Tensor, r: float, iters: int = 40) -> torch.Tensor:
    """Map ``y`` to ``clip(x + t (y - x), 0, 1)`` with the ``t >= 0`` that puts it at L2 distance ``r`` from x.

    The distance of the clipped ray point is non-decreasing in ``t``, so a bisection finds ``t``. When the
    sphere cannot be reached inside the box along that ray, the farthest point of the ray is returned.
    A zero direction is replaced by a fixed one (all ones).
    """
    d = y - x
    norm = d.flatten(1).norm(dim=1)
    zero = norm <= _EPS
    if bool(zero.any()):
        fallback = torch.where(x < 0.5, torch.ones_like(x), -torch.ones_like(x))
        d = torch.where(zero.view(-1, *([1] * (x.dim() - 1))), fallback, d)
        norm = d.flatten(1).norm(dim=1)
    shape = (-1, *([1] * (x.dim() - 1)))

    def dist(t: torch.Tensor) -> torch.Tensor:
        return ((x + t.view(shape) * d).clamp(0.0, 1.0) - x).flatten(1).norm(dim=1)

    hi = bisect_ray(dist, r, r / norm, grow=60, iters=iters)
    return (x + hi.view(shape) * d).clamp(0.0, 1.0)


def bisect_ray(
    dist: Callable[[torch.Tensor], torch.Tensor], r: torch.Tensor | float, hi: torch.Tensor, *, grow: int, iters: int
) -> torch.Tensor:
    """The ray parameter ``t`` (per sample) at which the non-decreasing ``dist(t)`` reaches ``r``.

    ``hi`` (the first guess) doubles, at most ``grow`` times, until ``dist(hi) >= r`` (or the distance
    saturates: every coordinate clipped); then ``iters`` bisection steps on ``[0, hi]``. Returns the upper end,
    so that the point is at least ``r`` away wherever ``r`` can be reached.
    """
    lo = torch.zeros_like(hi)
    for _ in range(grow):
        short = dist(hi) < r
        if not bool(short.any()):
            break
        hi = torch.where(short, hi * 2.0, hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = dist(mid) < r
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return hi


def tangent(g: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The component of ``g`` orthogonal to ``d`` (per sample)."""
    return g - _bdot(g, d) / (_bdot(d, d) + _EPS) * d


def unit(v: torch.Tensor) -> torch.Tensor:
    """``v`` scaled to unit L2 norm per sample (zero stays zero)."""
    n = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
    return v / (n + _EPS)


def random_on_sphere(x: torch.Tensor, r: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random point of the sphere of radius ``r`` around ``x``, inside the box."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return project_sphere_box(x, x + noise, r)


def ssim_tangent_step(
    x: torch.Tensor,
    y: torch.Tensor,
    r: float,
    step: torch.Tensor | float,
    direction: int,
    variant: Variant = OPT_VARIANT,
) -> torch.Tensor:
    """One unconditional equal-MSE SSIM step (length ``step * r`` per sample), projected back onto the sphere."""
    _, g = ssim_grad(x, y, variant)
    t = unit(tangent(g, y - x))
    if not torch.is_tensor(step):
        step = torch.full((x.shape[0],), float(step), dtype=x.dtype, device=x.device)
    shape = (-1, *([1] * (x.dim() - 1)))
    return project_sphere_box(x, y + direction * step.view(shape) * r * t, r)


def equal_mse_search(
    x: torch.Tensor,
    r: float,
    direction: int = 1,
    steps: int = 100,
    step: float = 0.25,
    min_step: float = 1e-4,
    y0: torch.Tensor | None = None,
    variant: Variant = OPT_VARIANT,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM ascent (``direction=+1``) or descent (``-1``) on the L2 sphere of radius ``r`` around ``x``.

    Returns ``(y, ssim_opt(x, y))``. ``step`` is the initial step length as a fraction of ``r``; it halves per
    sample on every move that made SSIM worse (the move is then rejected) and grows by 10% on accepted moves.
    """
    if direction not in (1, -1):
        raise ValueError("direction must be +1 (ascent) or -1 (descent)")
    x = x.detach()
    y = random_on_sphere(x, r, generator) if y0 is None else project_sphere_box(x, y0.detach(), r)
    lr = torch.full((x.shape[0],), float(step), dtype=x.dtype, device=x.device)
    shape = (-1, *([1] * (x.dim() - 1)))
    value, g = ssim_grad(x, y, variant)
    for _ in range(steps):
        active = lr > min_step
        if not bool(active.any()):
            break
        t = unit(tangent(g, y - x))
        cand = project_sphere_box(x, y + direction * lr.view(shape) * r * t, r)
        cand_value, cand_g = ssim_grad(x, cand, variant)
        better = (direction * (cand_value - value) > 0) & active
        bm = better.view(shape)
        y = torch.where(bm, cand, y)
        g = torch.where(bm, cand_g, g)
        value = torch.where(better, cand_value, value)
        lr = torch.where(better, lr * 1.1, torch.where(active, lr * 0.5, lr))
    return y.detach(), ssim(x, y, variant).detach()
