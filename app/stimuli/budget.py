"""The study budgets, checked on 8-bit images without torch (imported stimuli, hand-made CAP).

The same rules as the worker's ``workers/measures/budgets.py``: L0 at most 15% of the pixels changed (a colour
pixel counts once), ``5.99 <= L2 <= 6.01`` and ``L-inf <= 0.1`` with pixels scaled to [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

from app.design import L0_FRACTION, L2_TARGET, L2_TOL, LINF_EPS  # the budgets are defined once, there


def budget_problem(norm: str, benign: np.ndarray, adv: np.ndarray) -> str | None:
    """Why ``adv`` breaks the ``norm`` budget around ``benign`` (uint8 HW or HWC), or None if it keeps it."""
    b = np.asarray(benign).astype(np.float64) / 255.0
    a = np.asarray(adv).astype(np.float64) / 255.0
    if b.shape != a.shape:
        return f"its shape {a.shape} differs from the benign image's {b.shape}"
    d = a - b
    if norm == "l0":
        changed = d != 0
        if changed.ndim == 3:
            changed = changed.any(axis=2)
        h, w = changed.shape
        k_max = int(math.floor(h * w * L0_FRACTION + 1e-9))
        n = int(changed.sum())
        if n > k_max:
            return f"it changes {n} pixels ({n / (h * w):.1%}); the L0 budget is {k_max} ({L0_FRACTION:.0%})"
        return None
    if norm == "l2":
        l2 = float(np.sqrt((d * d).sum()))
        if not L2_TARGET - L2_TOL <= l2 <= L2_TARGET + L2_TOL:
            return f"its L2 distance is {l2:.4f}; the L2 study needs {L2_TARGET - L2_TOL:g} to {L2_TARGET + L2_TOL:g}"
        return None
    if norm == "linf":
        linf = float(np.abs(d).max()) if d.size else 0.0
        if linf > LINF_EPS:
            return f"its L-inf distance is {linf:.4f}; the budget is {LINF_EPS:g}"
        return None
    return f"unknown norm {norm!r}"
