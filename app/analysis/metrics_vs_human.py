"""Metrics judged against humans (the paper's Sec. 5): does a stimulus metric predict what people see?

Over the adversarial stimuli (CAI and CAP) that were answered: for each numeric metric, the ROC AUC with which it
predicts that the humans' majority label differs from the true label, and its Spearman correlation with the
image's human accuracy, each with a percentile bootstrap interval over images. Beside it, human-model error
consistency (Geirhos et al. 2020) and how often wrong human answers pick the model's label.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as st

from app.analysis.load import StimulusRecord
from app.analysis.sample import Answers
from app.analysis.stats import num, percentile_interval, rng_for

ADVERSARIAL = ("CAI", "CAP")
# Stored numbers that are not measurements of the image: labels, bookkeeping and flags. source_position (the
# source image's place in its study's list) and evaluations (how many model calls the L0 search spent) are what
# the generator stores about its own work, like iterations and seconds.
NOT_METRICS = {
    "model_pred", "second_pred", "target", "label", "image_index", "iterations", "seconds", "seed", "success",
    "budget_ok", "budget", "batch", "source_position", "evaluations",
}  # fmt: skip


def model_prediction_keys(stimuli: list[StimulusRecord]) -> list[str]:
    """Stored model predictions: model_pred, second_pred and any other *_pred key holding labels."""
    keys = {k for s in stimuli for k in s.metrics if k.endswith("_pred")}
    return sorted(keys, key=lambda k: (k != "model_pred", k))


def numeric_metrics(stimuli: list[StimulusRecord]) -> list[str]:
    keys: set[str] = set()
    for s in stimuli:
        for k, v in s.metrics.items():
            if k in NOT_METRICS or k.endswith("_pred"):
                continue
            if isinstance(v, int | float) and not isinstance(v, bool):
                keys.add(k)
    return sorted(keys)


def metric_value(s: StimulusRecord, key: str) -> float:
    v = s.metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return np.nan
    return float(v)


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(tie)/2, from the Mann-Whitney U of average ranks."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = st.rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _weighted_ranks(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks of every value within each bootstrap resample given as counts w (B, n): a value drawn w times
    is w tied copies. Same ranks as rankdata on the resampled values, without building them."""
    uniq, inv = np.unique(values, return_inverse=True)
    onehot = np.zeros((len(values), len(uniq)))
    onehot[np.arange(len(values)), inv] = 1.0
    wu = w @ onehot
    r_u = np.cumsum(wu, axis=1) - wu + (wu + 1) / 2
    return r_u[:, inv]


def _auc_rows(score: np.ndarray, positive: np.ndarray, w: np.ndarray) -> np.ndarray:
    """auc() of each bootstrap resample (counts w, shape (B, n)); NaN where a resample has a single class."""
    ranks = _weighted_ranks(score, w)
    pos = positive.astype(float)
    n_pos = w @ pos
    n_neg = w.sum(axis=1) - n_pos
    u = (w * ranks) @ pos - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _spearman_rows(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spearman's rho of each bootstrap resample: the count-weighted Pearson correlation of the average ranks."""
    rx, ry = _weighted_ranks(x, w), _weighted_ranks(y, w)
    tot = w.sum(axis=1, keepdims=True)
    rx = rx - (w * rx).sum(axis=1, keepdims=True) / tot
    ry = ry - (w * ry).sum(axis=1, keepdims=True) / tot
    den = np.sqrt((w * rx * rx).sum(axis=1) * (w * ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (w * rx * ry).sum(axis=1) / den, np.nan)


def _resample_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """How often each of n items is drawn in each of `resamples` bootstrap resamples of size n."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)


def roc_points(score: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    """The empirical ROC curve: (FPR, TPR) as the threshold falls through every distinct score."""
    order = np.argsort(-score, kind="stable")
    s, y = score[order], positive[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return {"fpr": [0.0, *(fp / n_neg).round(6).tolist()], "tpr": [0.0, *(tp / n_pos).round(6).tolist()]}


def metric_table(
    items: list[dict[str, Any]], stimuli: list[StimulusRecord], *, level: float, resamples: int, seed: int
) -> dict[str, Any]:
    by_id = {s.id: s for s in stimuli}
    adv = [r for r in items if r["condition"] in ADVERSARIAL and r["stimulus_id"] in by_id]
    notes: list[str] = []
    decided = [r for r in adv if r["majority_correct"] in (0.0, 1.0)]
    if len(decided) < len(adv):
        notes.append(
            f"{len(adv) - len(decided)} adversarial image(s) with a tie that includes the true label (or excluded "
            "by the tie rule) are left out of the AUC"
        )
    rows = []
    for key in numeric_metrics([by_id[r["stimulus_id"]] for r in adv]):
        rows.append(_one_metric(key, adv, decided, by_id, level=level, resamples=resamples, seed=seed))
    if not adv:
        notes.append("no adversarial image was answered: nothing to judge the metrics against")
    return {
        "n_images": len(adv),
        "n_images_auc": len(decided),
        "n_fooled": int(sum(1 for r in decided if r["majority_correct"] == 0.0)),
        "metrics": rows,
        "notes": notes,
    }


def _one_metric(key, adv, decided, by_id, *, level, resamples, seed) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    notes: list[str] = []
    out: dict[str, Any] = {"metric": key, "auc": None, "auc_ci": None, "spearman": None, "spearman_ci": None}
    # AUC: positive class = the majority label is not the true label.
    v = np.array([metric_value(by_id[r["stimulus_id"]], key) for r in decided])
    fooled = np.array([r["majority_correct"] == 0.0 for r in decided], dtype=bool)
    keep = ~np.isnan(v)
    v, fooled = v[keep], fooled[keep]
    out["n_auc"] = len(v)
    out["n_fooled"] = int(fooled.sum())
    if len(v) and 0 < fooled.sum() < len(v):
        out["auc"] = num(auc(v, fooled))
        boot = _auc_rows(v, fooled, _resample_counts(rng_for(seed, f"auc:{key}"), len(v), resamples))
        out["auc_ci"] = percentile_interval(boot, level)
        out["auc_resamples_used"] = int(np.sum(~np.isnan(boot)))
        out["roc"] = roc_points(v, fooled)
    else:
        notes.append("AUC needs images where the majority was fooled and images where it was not")
    # Spearman with per-image human accuracy, over every answered adversarial image.
    x = np.array([metric_value(by_id[r["stimulus_id"]], key) for r in adv])
    y = np.array([r["accuracy"] for r in adv])
    keep = ~np.isnan(x)
    x, y = x[keep], y[keep]
    out["n_spearman"] = len(x)
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        rho = st.spearmanr(x, y)
        out["spearman"] = num(rho.statistic)
        out["spearman_p"] = num(rho.pvalue)
        w = _resample_counts(rng_for(seed, f"rho:{key}"), len(x), resamples)
        out["spearman_ci"] = percentile_interval(_spearman_rows(x, y, w), level)
    else:
        notes.append("Spearman needs at least 3 images and variation in both the metric and human accuracy")
    n_missing = int(np.sum(~keep))
    if n_missing:
        notes.append(f"{n_missing} image(s) without this metric left out")
    out["notes"] = notes
    return out


def error_consistency(
    answers: Answers, conditions: list[str], stimuli: list[StimulusRecord], *, level: float, resamples: int, seed: int
) -> list[dict[str, Any]]:
    """Cohen's kappa between "the human was wrong" and "the model was wrong" on the same stimuli (Geirhos et al.
    2020), pooled over answers: c_obs = share of answers where both are right or both wrong, c_exp = p_h p_m +
    (1 - p_h)(1 - p_m), kappa = (c_obs - c_exp) / (1 - c_exp). The interval resamples participants."""
    by_id = {s.id: s for s in stimuli}
    out = []
    for key in model_prediction_keys(stimuli):
        pred = np.array([_pred(by_id.get(int(i)), key) for i in answers.stimulus_id], dtype=float)
        groups = [(c, answers.condition == k) for k, c in enumerate(conditions)] + [
            ("all", np.ones(len(answers), bool))
        ]
        for name, mask in groups:
            m = mask & ~np.isnan(pred)
            out.append({"model": key, "condition": name, **_kappa(answers, pred, m, level, resamples, seed, key, name)})
    return out


def _pred(s: StimulusRecord | None, key: str) -> float:
    if s is None:
        return np.nan
    v = s.metrics.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan


def _kappa_of(h: np.ndarray, mm: np.ndarray) -> tuple[float, float, float, float]:
    c_obs = float(np.mean(h == mm))
    ph, pm = float(h.mean()), float(mm.mean())
    c_exp = ph * pm + (1 - ph) * (1 - pm)
    kappa = (c_obs - c_exp) / (1 - c_exp) if c_exp < 1 else float("nan")
    return kappa, c_obs, c_exp, pm


def _kappa(answers, pred, m, level, resamples, seed, key, name) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    n = int(m.sum())
    res: dict[str, Any] = {"n_answers": n, "kappa": None, "kappa_ci": None, "c_obs": None, "c_exp": None,
                           "human_accuracy": None, "model_accuracy": None, "notes": []}  # fmt: skip
    if n == 0:
        res["notes"].append("no answers on stimuli with this prediction")
        return res
    h = answers.correct[m] == 1
    mm = pred[m] == answers.truth[m]
    kappa, c_obs, c_exp, pm = _kappa_of(h, mm)
    res.update(
        kappa=num(kappa), c_obs=num(c_obs), c_exp=num(c_exp), human_accuracy=num(h.mean()), model_accuracy=num(pm)
    )
    if pm in (0.0, 1.0):
        res["notes"].append("the model is always wrong or always right here: kappa is 0 or undefined by construction")
        return res
    # Cluster bootstrap over participants: resample participants, pool their answers.
    part = answers.participant[m]
    uniq, inv = np.unique(part, return_inverse=True)
    k = len(uniq)
    both = np.bincount(inv, weights=(h == mm).astype(float), minlength=k)
    hs = np.bincount(inv, weights=h.astype(float), minlength=k)
    ms = np.bincount(inv, weights=mm.astype(float), minlength=k)
    cnt = np.bincount(inv, minlength=k).astype(float)
    rng = rng_for(seed, f"kappa:{key}:{name}")
    w = _resample_counts(rng, k, resamples)
    tot = w @ cnt
    co, ph, pmb = (w @ both) / tot, (w @ hs) / tot, (w @ ms) / tot
    ce = ph * pmb + (1 - ph) * (1 - pmb)
    with np.errstate(invalid="ignore", divide="ignore"):
        kb = np.where(ce < 1, (co - ce) / (1 - ce), np.nan)
    res["kappa_ci"] = percentile_interval(kb, level)
    return res


def wrong_answers_agree(answers: Answers, conditions: list[str], stimuli: list[StimulusRecord]) -> list[dict[str, Any]]:
    """Among wrong human answers on adversarial stimuli the model also gets wrong: the share that name the model's
    label, against 1/9 (a wrong answer spread evenly over the nine wrong labels), with an exact binomial test."""
    by_id = {s.id: s for s in stimuli}
    out = []
    for key in model_prediction_keys(stimuli):
        pred = np.array([_pred(by_id.get(int(i)), key) for i in answers.stimulus_id], dtype=float)
        base = (~np.isnan(pred)) & (answers.correct == 0) & (pred != answers.truth)
        groups = [(c, answers.condition == k) for k, c in enumerate(conditions) if c in ADVERSARIAL]
        adv_mask = np.zeros(len(answers), bool)
        for _, g in groups:
            adv_mask |= g
        for name, g in [*groups, ("adversarial", adv_mask)]:
            m = base & g
            n = int(m.sum())
            k = int(np.sum(answers.response[m] == pred[m])) if n else 0
            row: dict[str, Any] = {"model": key, "condition": name, "n_wrong": n, "n_agree": k,
                                   "share": num(k / n) if n else None, "chance": 1 / 9, "p": None}  # fmt: skip
            if n:
                row["p"] = num(st.binomtest(k, n, 1 / 9).pvalue)
            out.append(row)
    return out
