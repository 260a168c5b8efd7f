"""Between two conditions: Welch's and Student's t, Mann-Whitney U, Cohen's d and Hedges' g with intervals."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import optimize, special
from scipy import stats as st

from app.analysis.stats import holm, num


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[~np.isnan(x)]


def t_tests(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Welch's t (unequal variances; reported first) and Student's t (pooled variance: scipy's default)."""
    a, b = _clean(a), _clean(b)
    out: dict[str, Any] = {"welch": None, "student": None, "notes": []}
    if len(a) < 2 or len(b) < 2:
        out["notes"].append("a t-test needs at least 2 participants in each condition")
        return out
    va, vb = a.var(ddof=1), b.var(ddof=1)
    if va == 0 and vb == 0:
        out["notes"].append("no variance in either condition (every participant scored the same): t is undefined")
        return out
    if va == 0 or vb == 0:
        out["notes"].append("one condition has no variance (every participant scored the same)")
    for name, equal in (("welch", False), ("student", True)):
        with warnings.catch_warnings():
            # scipy warns about precision loss when one group is constant; that case is handled and noted above.
            warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
            r = st.ttest_ind(a, b, equal_var=equal)
        out[name] = {"t": num(r.statistic), "df": num(r.df), "p": num(r.pvalue)}
    return out


def mann_whitney(a: np.ndarray, b: np.ndarray) -> dict[str, Any] | None:
    """Two-sided Mann-Whitney U (scipy's method="auto": exact without ties for small n, else normal with tie
    correction), with the rank-biserial correlation r = 2U/(n_a n_b) - 1 (positive: a tends to be higher)."""
    a, b = _clean(a), _clean(b)
    if len(a) == 0 or len(b) == 0:
        return None
    if np.all(np.concatenate([a, b]) == a[0]):
        return {"u": len(a) * len(b) / 2, "p": None, "rank_biserial": 0.0, "note": "all values are equal: no test"}
    r = st.mannwhitneyu(a, b, alternative="two-sided")
    return {"u": num(r.statistic), "p": num(r.pvalue), "rank_biserial": num(2 * r.statistic / (len(a) * len(b)) - 1)}


def hedges_j(df: float) -> float:
    """The exact small-sample correction J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))."""
    return math.exp(special.gammaln(df / 2) - 0.5 * math.log(df / 2) - special.gammaln((df - 1) / 2))


def _nct_interval(t_obs: float, df: float, level: float) -> tuple[float, float] | None:
    """Noncentrality parameters whose noncentral t puts t_obs at the (1+level)/2 and (1-level)/2 quantiles."""
    hi_q, lo_q = (1 + level) / 2, (1 - level) / 2

    def root(q: float) -> float:
        f = lambda nc: st.nct.cdf(t_obs, df, nc) - q  # noqa: E731
        span = max(10.0, 2 * abs(t_obs))
        return float(optimize.brentq(f, t_obs - span, t_obs + span, xtol=1e-10))

    try:
        lo, hi = root(hi_q), root(lo_q)
    except (ValueError, RuntimeError):
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return lo, hi


def effect_sizes(a: np.ndarray, b: np.ndarray, level: float) -> dict[str, Any]:
    """Cohen's d = (mean_a - mean_b) / pooled SD and Hedges' g = J(df) d, df = n_a + n_b - 2.

    The interval inverts the noncentral t distribution of t = d sqrt(n_a n_b / (n_a + n_b)) (Steiger & Fouladi);
    when that fails numerically (very large |t|) it falls back to the normal approximation with
    SE(d) = sqrt((n_a + n_b) / (n_a n_b) + d^2 / (2 (n_a + n_b))) (Hedges & Olkin), and says so.
    """
    a, b = _clean(a), _clean(b)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return {"cohen_d": None, "hedges_g": None, "note": "needs at least 2 participants in each condition"}
    df = na + nb - 2
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / df)
    if pooled == 0:
        return {"cohen_d": None, "hedges_g": None, "note": "zero pooled SD: the standardised difference is undefined"}
    d = (a.mean() - b.mean()) / pooled
    scale = math.sqrt((na + nb) / (na * nb))
    j = hedges_j(df) if df > 1 else float("nan")
    nct = _nct_interval(d / scale, df, level)
    if nct is not None:
        ci_d, method = [nct[0] * scale, nct[1] * scale], "noncentral t"
    else:
        se = math.sqrt((na + nb) / (na * nb) + d * d / (2 * (na + nb)))
        z = float(st.norm.ppf((1 + level) / 2))
        ci_d, method = [d - z * se, d + z * se], "normal approximation"
    return {
        "cohen_d": {"estimate": num(d), "ci": [num(ci_d[0]), num(ci_d[1])]},
        "hedges_g": {"estimate": num(j * d), "ci": [num(j * ci_d[0]), num(j * ci_d[1])], "j": num(j)},
        "pooled_sd": num(pooled),
        "ci_method": method,
    }


def compare(a: np.ndarray, b: np.ndarray, level: float) -> dict[str, Any]:
    """Every test and effect size of one measure (per-user accuracy or confidence) between two conditions."""
    a, b = _clean(a), _clean(b)
    tt = t_tests(a, b)
    es = effect_sizes(a, b, level)
    return {
        "n": [len(a), len(b)],
        "mean": [num(a.mean()) if len(a) else None, num(b.mean()) if len(b) else None],
        "difference": num(a.mean() - b.mean()) if len(a) and len(b) else None,
        "welch": tt["welch"],
        "student": tt["student"],
        "mann_whitney": mann_whitney(a, b),
        **{k: v for k, v in es.items() if k != "note"},
        "notes": tt["notes"] + ([es["note"]] if "note" in es else []),
    }


def adjust_family(results: list[dict[str, Any]], test: str, alpha: float) -> None:
    """Holm over the family (every pair of conditions, one measure, one test): adds p_holm and significant."""
    ps = [r[test]["p"] if r.get(test) else None for r in results]
    for r, adj in zip(results, holm(ps), strict=True):
        if r.get(test):
            r[test]["p_holm"] = adj
            r[test]["significant"] = None if adj is None else bool(adj < alpha)
