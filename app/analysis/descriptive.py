"""Per condition: accuracy per user, majority-vote accuracy over images, confidence and response times."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.analysis.sample import Answers
from app.analysis.stats import bootstrap_mean_ci, num, quantiles, rng_for, summary


@dataclass(frozen=True)
class Settings:
    level: float
    resamples: int
    seed: int
    ties: str  # split | incorrect | exclude


def per_user(answers: Answers, n_participants: int) -> dict[str, np.ndarray]:
    """Per included participant: answers, accuracy (share correct) and mean confidence (NaN without one)."""
    p = answers.participant
    n = np.bincount(p, minlength=n_participants).astype(float)
    correct = np.bincount(p, weights=answers.correct, minlength=n_participants)
    has_conf = ~np.isnan(answers.confidence)
    n_conf = np.bincount(p[has_conf], minlength=n_participants).astype(float)
    sum_conf = np.bincount(p[has_conf], weights=answers.confidence[has_conf], minlength=n_participants)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "answers": n,
            "accuracy": np.where(n > 0, correct / np.maximum(n, 1), np.nan),
            "confidence": np.where(n_conf > 0, sum_conf / np.maximum(n_conf, 1), np.nan),
        }


def majority(responses: list[int], truth: int, rule: str) -> dict[str, Any]:
    """The most frequent answer on one image; a tie between k labels is handled by `rule` (see docs/analysis.md).

    Returns the majority label (None on a tie), the tied labels, and `correct`: 1 or 0, the share 1/k of a
    tie that includes the true label under "split", or None when a tied image is excluded.
    """
    counts = Counter(responses)
    top = max(counts.values())
    winners = sorted(label for label, c in counts.items() if c == top)
    if len(winners) == 1:
        return {"label": winners[0], "tied": [], "correct": float(winners[0] == truth)}
    if rule == "split":
        correct: float | None = (1.0 / len(winners)) if truth in winners else 0.0
    elif rule == "incorrect":
        correct = 0.0
    else:
        correct = None
    return {"label": None, "tied": winners, "correct": correct}


def item_table(answers: Answers, conditions: list[str], rule: str) -> list[dict[str, Any]]:
    """One row per stimulus that was answered: answers, accuracy, majority label and whether it is correct."""
    rows: dict[int, dict[str, Any]] = {}
    order = np.argsort(answers.stimulus_id, kind="stable")
    sid_sorted = answers.stimulus_id[order]
    bounds = np.flatnonzero(np.diff(sid_sorted)) + 1
    for chunk in np.split(order, bounds):
        if len(chunk) == 0:
            continue
        i = chunk[0]
        truth = int(answers.truth[i])
        resp = [int(r) for r in answers.response[chunk]]
        conf = answers.confidence[chunk]
        maj = majority(resp, truth, rule)
        rows[int(answers.stimulus_id[i])] = {
            "stimulus_id": int(answers.stimulus_id[i]),
            "condition": conditions[int(answers.condition[i])],
            "image_index": int(answers.image_index[i]),
            "true_label": truth,
            "n_answers": len(chunk),
            "accuracy": float(answers.correct[chunk].mean()),
            "mean_confidence": num(np.nanmean(conf)) if np.any(~np.isnan(conf)) else None,
            "majority_label": maj["label"],
            "tied_labels": maj["tied"],
            "majority_correct": maj["correct"],
        }
    return [rows[k] for k in sorted(rows)]


def condition_summary(
    code: str, answers: Answers, users: dict[str, np.ndarray], items: list[dict[str, Any]], s: Settings
) -> dict[str, Any]:
    """Everything the paper's Fig. 3 shows for one condition, and more. `answers` and `users` are this condition's."""
    notes: list[str] = []
    acc = users["accuracy"]
    n_users = int(np.sum(~np.isnan(acc)))
    if n_users == 0:
        notes.append("no participant counts in this condition: nothing to summarise")
    elif n_users == 1:
        notes.append("one participant: no SD, confidence interval or test is possible")
    accuracy = summary(acc, s.level)
    _clip(accuracy, 0.0, 1.0, "accuracy", notes)
    accuracy["ci_bootstrap"] = bootstrap_mean_ci(acc, rng_for(s.seed, f"acc:{code}"), s.resamples, s.level)
    if accuracy["sd"] == 0.0:
        notes.append("every participant has the same accuracy: zero variance, the intervals have no width")

    mv = [r["majority_correct"] for r in items if r["majority_correct"] is not None]
    ties = [r for r in items if r["tied_labels"]]
    majority_vote = {
        "n_images": len(items),
        "n_images_used": len(mv),
        "n_ties": len(ties),
        "n_ties_with_true_label": sum(1 for r in ties if r["true_label"] in r["tied_labels"]),
        "tie_rule": s.ties,
        "accuracy": num(np.mean(mv)) if mv else None,
        "ci_bootstrap": bootstrap_mean_ci(np.asarray(mv), rng_for(s.seed, f"mv:{code}"), s.resamples, s.level),
    }

    conf = answers.confidence
    has = ~np.isnan(conf)
    n_missing = int(np.sum(~has))
    if n_missing:
        notes.append(f"{n_missing} answer(s) without a confidence rating: left out of the confidence figures")
    confidence = summary(users["confidence"], s.level)
    _clip(confidence, 1.0, 5.0, "confidence", notes)
    confidence["ci_bootstrap"] = bootstrap_mean_ci(
        users["confidence"], rng_for(s.seed, f"conf:{code}"), s.resamples, s.level
    )
    confidence["answers"] = _answer_level(conf[has])
    confidence["correct"] = _answer_level(conf[has & (answers.correct == 1)])
    confidence["incorrect"] = _answer_level(conf[has & (answers.correct == 0)])
    confidence["n_missing"] = n_missing

    rt = quantiles(answers.rt_ms)
    rt["n_missing"] = int(np.sum(np.isnan(answers.rt_ms)))
    return {
        "condition": code,
        "n_participants": n_users,
        "n_answers": len(answers),
        "accuracy": accuracy,
        "majority_vote": majority_vote,
        "confidence": confidence,
        "rt_ms": rt,
        "notes": notes,
    }


def _clip(stat: dict[str, Any], lo: float, hi: float, what: str, notes: list[str]) -> None:
    """A t interval is symmetric and can leave the scale (e.g. past 100% accuracy): cut it at the scale's ends."""
    ci = stat["ci_t"]
    if ci is None:
        return
    clipped = [max(ci[0], lo), min(ci[1], hi)]
    stat["ci_t_clipped"] = clipped != ci
    if clipped != ci:
        notes.append(f"the t interval of {what} reached past the scale ({lo:g}-{hi:g}) and was cut at its end")
        stat["ci_t"] = clipped


def _answer_level(x: np.ndarray) -> dict[str, Any]:
    n = len(x)
    return {
        "n": n,
        "mean": num(x.mean()) if n else None,
        "sd": num(x.std(ddof=1)) if n > 1 else None,
    }
