"""Small statistical primitives shared by the analysis modules: summaries, t and bootstrap intervals, Holm."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as st


def num(x: Any, digits: int | None = None) -> float | None:
    """A JSON-safe float: None for None, NaN and infinities."""
    if x is None:
        return None
    f = float(x)
    if not math.isfinite(f):
        return None
    return round(f, digits) if digits is not None else f


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible stream per statistic: adding a statistic never changes another's interval."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def summary(x: np.ndarray, level: float) -> dict[str, Any]:
    """n, mean, SD (n-1), SE and the t interval mean +- t_{n-1,(1+level)/2} * SD / sqrt(n)."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    out: dict[str, Any] = {"n": n, "mean": None, "sd": None, "se": None, "ci_t": None}
    if n == 0:
        return out
    m = float(x.mean())
    out["mean"] = m
    if n < 2:
        return out
    sd = float(x.std(ddof=1))
    se = sd / math.sqrt(n)
    half = float(st.t.ppf((1 + level) / 2, n - 1)) * se
    out.update(sd=sd, se=se, ci_t=[m - half, m + half])
    return out


def bootstrap_mean_ci(x: np.ndarray, rng: np.random.Generator, resamples: int, level: float) -> list[float] | None:
    """Percentile bootstrap interval of the mean: resample the n values with replacement `resamples` times."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n < 2:
        return None
    if np.ptp(x) == 0:  # no variation: every resample has the same mean
        return [float(x[0]), float(x[0])]
    idx = rng.integers(0, n, size=(resamples, n))
    means = x[idx].mean(axis=1)
    return percentile_interval(means, level)


def percentile_interval(values: np.ndarray, level: float) -> list[float] | None:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment over the p-values given (None entries are not tests and stay None)."""
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def quantiles(x: np.ndarray) -> dict[str, Any]:
    """n, median, Q1, Q3 and IQR (numpy's default linear interpolation, R's type 7)."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return {"n": 0, "median": None, "q1": None, "q3": None, "iqr": None}
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    return {"n": len(x), "median": float(med), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1)}
