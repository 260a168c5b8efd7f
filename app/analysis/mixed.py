"""A mixed-effects logistic model of correctness: condition as the fixed effect, random intercepts for
participants and for source images, fitted by variational Bayes (statsmodels' BinomialBayesMixedGLM).

What it is: a description of how the odds of a correct answer differ between conditions once participant ability
and image difficulty are allowed for, with approximate posterior means and SDs. What it is not: a significance
test. A variational fit gives no p-values and its posterior SDs are known to be too narrow; the frequentist tests
elsewhere in the report are the inferential ones.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
from scipy import sparse

from app.analysis.sample import Answers
from app.analysis.stats import num

# Above this many answers the fit takes minutes: skip it with a note (the limit is in the result).
MAX_ANSWERS = 8000


def fit_mixed(
    answers: Answers, conditions: list[str], *, enabled: bool, max_answers: int = MAX_ANSWERS
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "fitted": False,
        "method": "statsmodels BinomialBayesMixedGLM, fit_vb (mean-field variational Bayes)",
        "formula": "correct ~ condition + (1 | participant) + (1 | source image)",
        "reference": conditions[0] if conditions else None,
        "fixed_effects": [],
        "random_effects": [],
        "notes": [],
    }
    if not enabled:
        out["notes"].append("not fitted: turned off ([analysis] mixed_model = false, or --no-mixed)")
        return out
    n = len(answers)
    present = sorted(set(answers.condition.tolist()))
    if n == 0 or len(present) < 2:
        out["notes"].append("needs answers in at least two conditions")
        return out
    if n > max_answers:
        out["notes"].append(f"{n} answers is more than {max_answers}: the variational fit would take minutes; skipped")
        return out
    try:
        from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
    except ImportError:
        out["notes"].append("statsmodels is not installed: the mixed model is skipped")
        return out
    y = answers.correct
    ref = present[0]
    others = present[1:]
    x = np.column_stack([np.ones(n)] + [(answers.condition == k).astype(float) for k in others])
    names = ["intercept"] + [f"{conditions[k]} vs {conditions[ref]}" for k in others]
    _, p_idx = np.unique(answers.participant, return_inverse=True)
    _, i_idx = np.unique(answers.image_index, return_inverse=True)
    n_p, n_i = int(p_idx.max()) + 1, int(i_idx.max()) + 1
    rows = np.arange(n)
    z = sparse.hstack(
        [
            sparse.csr_matrix((np.ones(n), (rows, p_idx)), shape=(n, n_p)),
            sparse.csr_matrix((np.ones(n), (rows, i_idx)), shape=(n, n_i)),
        ]
    ).tocsr()
    ident = np.r_[np.zeros(n_p, dtype=int), np.ones(n_i, dtype=int)]
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = BinomialBayesMixedGLM(y, x, z, ident, vcp_p=1.0, fe_p=2.0)
            res = model.fit_vb()
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        out["notes"].append(f"the fit failed: {exc}")
        return out
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["fitted"] = True
    out["reference"] = conditions[ref]
    out["n_answers"], out["n_participants"], out["n_images"] = n, n_p, n_i
    for name, m, s in zip(names, res.fe_mean, res.fe_sd, strict=True):
        out["fixed_effects"].append(
            {
                "term": name,
                "mean": num(m),
                "sd": num(s),
                "interval_95": [num(m - 1.96 * s), num(m + 1.96 * s)],
                "odds_ratio": num(math.exp(m)) if abs(m) < 700 else None,
            }
        )
    for name, m, s in zip(("participant", "source image"), res.vcp_mean, res.vcp_sd, strict=True):
        out["random_effects"].append(
            {"group": name, "log_sd_mean": num(m), "log_sd_sd": num(s), "sd": num(math.exp(m))}
        )
    out["notes"].append(
        "posterior means and SDs on the log-odds scale from a variational approximation: no p-values, and the SDs "
        "tend to be too small; read the intervals as descriptive"
    )
    return out
