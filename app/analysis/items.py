"""Item-level comparison that uses the design: the same source images across conditions, paired by image."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as st

from app.analysis.stats import num


def paired_items(items: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Per source image (image_index) seen in both conditions: its accuracy in each, and a two-sided Wilcoxon
    signed-rank test of the differences across images (zero differences dropped, scipy's zero_method="wilcox")."""
    acc_a = {r["image_index"]: r["accuracy"] for r in items if r["condition"] == a}
    acc_b = {r["image_index"]: r["accuracy"] for r in items if r["condition"] == b}
    common = sorted(set(acc_a) & set(acc_b))
    out: dict[str, Any] = {
        "n_images": len(common),
        "images": [{"image_index": i, "accuracy": [acc_a[i], acc_b[i]]} for i in common],
        "mean_difference": None,
        "median_difference": None,
        "n_nonzero": 0,
        "wilcoxon": None,
        "notes": [],
    }
    if not common:
        out["notes"].append(f"no source image was answered in both {a} and {b}: nothing to pair")
        return out
    x = np.array([acc_a[i] for i in common])
    y = np.array([acc_b[i] for i in common])
    diff = x - y
    out["mean_difference"] = num(diff.mean())
    out["median_difference"] = num(np.median(diff))
    out["n_nonzero"] = int(np.sum(diff != 0))
    if out["n_nonzero"] == 0:
        out["notes"].append("every paired image has the same accuracy in both conditions: no test")
        return out
    r = st.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    out["wilcoxon"] = {"w": num(r.statistic), "p": num(r.pvalue)}
    if out["n_nonzero"] < 6:
        out["notes"].append(
            f"only {out['n_nonzero']} image(s) differ: the signed-rank test cannot reach p < 0.05 with fewer than 6"
        )
    return out
