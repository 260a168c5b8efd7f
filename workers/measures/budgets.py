"""Exact Lp budgets after 8-bit rounding.

Every stimulus is stored as an 8-bit PNG, so budgets are checked on the rounded image, and rounding goes
toward the benign image wherever plain rounding would break a budget:

* L0: at most 15% of the pixels changed (a colour pixel counts once if any of its channels changed). Nearest
  rounding never adds a changed pixel (the benign value is on the 8-bit grid), so it can only lower L0.
* L2: ``5.99 <= ||x' - x||_2 <= 6.01`` with pixels in [0, 1]. Nearest rounding, then a repair that moves the
  pixels closest to a rounding boundary by one level (toward the benign image when the norm is too large,
  away from it when too small) until the norm is inside the band.
* L-inf: at most 0.1, that is at most ``floor(0.1 * 255) = 25`` levels from the benign value (rounding to
  nearest could reach 25.5 / 255 > 0.1).

Tensors here are batches ``[N, C, H, W]``: float images in [0, 1] and benign images as uint8 tensors.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from app.design import L0_FRACTION, L2_TARGET, L2_TOL, LINF_EPS, NORMS, Budget, l0_max_pixels, linf_levels

# The budgets are part of the study vocabulary (app.design); they are re-exported here for the attacks.
__all__ = [
    "L0_FRACTION",
    "L2_TARGET",
    "L2_TOL",
    "LINF_EPS",
    "NORMS",
    "Budget",
    "budget_ok",
    "distances",
    "from_uint8",
    "l0_max_pixels",
    "linf_levels",
    "quantize",
    "quantize_l0",
    "quantize_l2",
    "quantize_linf",
    "to_uint8",
]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Nearest 8-bit rounding of a float image in [0, 1]."""
    return (x.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def from_uint8(q: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return q.to(dtype) / 255.0


def quantize_l0(benign: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits; cannot add changed pixels (checked with ``budget_ok`` by the callers)."""
    del benign
    return to_uint8(adv)


def quantize_linf(benign: torch.Tensor, adv: torch.Tensor, eps: float = LINF_EPS) -> torch.Tensor:
    """Round to 8 bits with the change clamped to ``floor(eps * 255)`` levels around the benign image."""
    k = linf_levels(eps)
    b = benign.to(torch.int32)
    q = (adv.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.int32)
    q = torch.minimum(torch.maximum(q, b - k), b + k).clamp(0, 255)
    return q.to(torch.uint8)


def quantize_l2(
    benign: torch.Tensor,
    adv: torch.Tensor,
    target: float = L2_TARGET,
    tol: float = L2_TOL,
    max_rounds: int = 8,
) -> torch.Tensor:
    """Round to 8 bits so that ``target - tol <= L2 <= target + tol`` holds on the rounded image.

    Plain rounding almost always lands inside the band (its L2 error is about 0.001 at L2 = 6 on CIFAR).
    Otherwise, pixels are moved by one level, starting with those whose float value was nearest to the
    other rounding: toward the benign value while the norm is too large, away from it while too small.
    Images that cannot reach the band inside [0, 255] come back as close as possible (``budget_ok`` fails).
    """
    b = benign.to(torch.float64).flatten(1)
    a = adv.detach().to(torch.float64).clamp(0.0, 1.0).flatten(1) * 255.0
    q = a.round()
    # Integer squared-norm bounds in level^2 units; margins keep the float check on the far side safe.
    lo = math.ceil(((target - tol) * 255.0) ** 2) + 1
    hi = math.floor(((target + tol) * 255.0) ** 2) - 1
    mid = (target * 255.0) ** 2
    for _ in range(max_rounds):
        d = q - b
        n2 = (d * d).sum(1)
        too_big = n2 > hi
        too_small = n2 < lo
        if not bool((too_big | too_small).any()):
            break
        # Moving toward benign: candidates with d != 0; change of n2 = 1 - 2|d| (<= -1).
        sgn = torch.sign(d)
        toward = q - sgn
        gain_t = 1.0 - 2.0 * d.abs()
        cost_t = (toward - a).abs() + torch.where(d == 0, torch.inf, 0.0)
        # Moving away: one level farther from benign (direction of the float change, or up if equal).
        away_dir = torch.where(sgn != 0, sgn, torch.where(a >= b, 1.0, -1.0))
        away = q + away_dir
        feasible = (away >= 0) & (away <= 255)
        away_dir = torch.where(feasible, away_dir, -away_dir)
        away = q + away_dir
        dn = away - b
        gain_a = dn * dn - d * d
        cost_a = (away - a).abs() + torch.where(gain_a > 0, 0.0, torch.inf)
        cost = torch.where(too_big.unsqueeze(1), cost_t, cost_a)
        gain = torch.where(too_big.unsqueeze(1), gain_t, gain_a)
        moved = torch.where(too_big.unsqueeze(1), toward, away)
        order = cost.argsort(dim=1)
        g_sorted = torch.gather(gain, 1, order)
        c_sorted = torch.gather(cost, 1, order)
        g_sorted = torch.where(torch.isinf(c_sorted), 0.0, g_sorted)
        cum = n2.unsqueeze(1) + g_sorted.cumsum(1)
        # Take moves up to (and including) the first one that enters the band, aiming at its middle.
        need = torch.where(too_big, n2 - mid, mid - n2).clamp(min=0)
        done_before = torch.where(
            too_big.unsqueeze(1),
            (n2.unsqueeze(1) - cum) >= need.unsqueeze(1),
            (cum - n2.unsqueeze(1)) >= need.unsqueeze(1),
        )
        # take[k] = True for the sorted prefix up to the first index where the target is met
        reached = done_before.cumsum(1)
        take_sorted = (reached == 0) | ((reached == 1) & done_before)
        take_sorted &= ~torch.isinf(c_sorted)
        take_sorted &= (too_big | too_small).unsqueeze(1)
        take = torch.zeros_like(take_sorted).scatter(1, order, take_sorted)
        q = torch.where(take, moved, q)
    return q.view(adv.shape).to(torch.uint8)


def quantize(norm: str, benign: torch.Tensor, adv: torch.Tensor, budget: Budget | None = None) -> torch.Tensor:
    """Budget-preserving 8-bit rounding for ``norm`` in ``("l0", "l2", "linf")``."""
    budget = budget or Budget(norm)
    if norm == "l0":
        return quantize_l0(benign, adv)
    if norm == "l2":
        return quantize_l2(benign, adv, budget.l2_target, budget.l2_tol)
    if norm == "linf":
        return quantize_linf(benign, adv, budget.linf_eps)
    raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")


def distances(benign: np.ndarray, adv: np.ndarray) -> dict[str, float]:
    """L0 (pixels, fraction), L2 and L-inf between two uint8 images (HW or HWC), pixels scaled to [0, 1]."""
    b = np.asarray(benign).astype(np.float64) / 255.0
    a = np.asarray(adv).astype(np.float64) / 255.0
    if b.shape != a.shape:
        raise ValueError(f"shape mismatch: {b.shape} vs {a.shape}")
    diff = a - b
    changed = diff != 0
    if diff.ndim == 3:
        changed = changed.any(axis=2)
    n_pixels = changed.shape[0] * changed.shape[1]
    l0 = int(changed.sum())
    return {
        "l0": l0,
        "l0_frac": l0 / n_pixels,
        "l2": float(np.sqrt((diff * diff).sum())),
        "linf": float(np.abs(diff).max()) if diff.size else 0.0,
    }


def budget_ok(norm: str, benign: np.ndarray, adv: np.ndarray, budget: Budget | None = None) -> bool:
    """Whether the uint8 image ``adv`` (HW or HWC) is inside the budget around ``benign``."""
    budget = budget or Budget(norm)
    d = distances(benign, adv)
    if norm == "l0":
        h, w = np.asarray(benign).shape[:2]
        return d["l0"] <= l0_max_pixels(h, w, budget.l0_fraction)
    if norm == "l2":
        return budget.l2_target - budget.l2_tol <= d["l2"] <= budget.l2_target + budget.l2_tol
    if norm == "linf":
        return d["linf"] <= budget.linf_eps
    raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
