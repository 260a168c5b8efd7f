"""analyze(): who counts, per-condition summaries, comparisons, items, demographics, metrics against humans."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from app.analysis.compare import adjust_family, compare
from app.analysis.demographics import demographics
from app.analysis.descriptive import Settings, condition_summary, item_table, per_user
from app.analysis.items import paired_items
from app.analysis.load import StudyData
from app.analysis.metrics_vs_human import error_consistency, metric_table, wrong_answers_agree
from app.analysis.mixed import fit_mixed
from app.analysis.sample import select_sample
from app.analysis.stats import holm

SCHEMA = "lpstudy.analysis/1"
PAPER_PAIRS = {("CB", "CAI"), ("CB", "CAP")}


def analyze(data: StudyData, *, include_test: bool = False, mixed: bool | None = None) -> dict[str, Any]:
    """The whole analysis of one study as a JSON-ready dict (floats or None; never NaN)."""
    t0 = time.perf_counter()
    opts = data.options
    s = Settings(
        level=opts.confidence_level, resamples=opts.bootstrap_resamples, seed=opts.seed, ties=opts.majority_ties
    )
    sample = select_sample(data, include_test=include_test)
    ans = sample.answers
    users = per_user(ans, len(sample.included))
    user_cond = np.array([data.conditions.index(p.condition) for p in sample.included], dtype=int)
    items = item_table(ans, data.conditions, s.ties)

    conditions = {}
    for k, code in enumerate(data.conditions):
        mask_u = user_cond == k
        conditions[code] = condition_summary(
            code,
            ans.subset(ans.condition == k),
            {name: v[mask_u] for name, v in users.items()},
            [r for r in items if r["condition"] == code],
            s,
        )

    comparisons: list[dict[str, Any]] = []
    for a, b in itertools.combinations(data.conditions, 2):
        ia, ib = data.conditions.index(a), data.conditions.index(b)
        comparisons.append(
            {
                "a": a,
                "b": b,
                "paper": (a, b) in PAPER_PAIRS,
                "accuracy": compare(users["accuracy"][user_cond == ia], users["accuracy"][user_cond == ib], s.level),
                "confidence": compare(
                    users["confidence"][user_cond == ia], users["confidence"][user_cond == ib], s.level
                ),
                "items": paired_items(items, a, b),
            }
        )
    for measure in ("accuracy", "confidence"):
        for test in ("welch", "student", "mann_whitney"):
            adjust_family([c[measure] for c in comparisons], test, opts.alpha)
    item_p = holm([c["items"]["wilcoxon"]["p"] if c["items"]["wilcoxon"] else None for c in comparisons])
    for c, adj in zip(comparisons, item_p, strict=True):
        if c["items"]["wilcoxon"]:
            c["items"]["wilcoxon"]["p_holm"] = adj
            c["items"]["wilcoxon"]["significant"] = None if adj is None else bool(adj < opts.alpha)

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "study": {
            "slug": data.slug,
            "title": data.title,
            "dataset": data.dataset,
            "norm": data.norm,
            "conditions": data.conditions,
            "labels": data.labels,
            "trials_per_participant": data.trials_per_participant,
        },
        "options": {
            "include_test": include_test,
            "exclude_attention_failures": opts.exclude_attention_failures,
            "attention_failure_threshold": sample.attention_threshold,
            "majority_ties": s.ties,
            "bootstrap_resamples": s.resamples,
            "seed": s.seed,
            "confidence_level": s.level,
            "alpha": opts.alpha,
        },
        "sample": sample.exclusions,
        "conditions": conditions,
        "comparisons": comparisons,
        "mixed_model": fit_mixed(ans, data.conditions, enabled=opts.mixed_model if mixed is None else mixed),
        "demographics": {
            "all": demographics(sample.included),
            "by_condition": {
                c: demographics([p for p in sample.included if p.condition == c]) for c in data.conditions
            },
        },
        "metrics_vs_human": {
            **metric_table(items, data.stimuli, level=s.level, resamples=s.resamples, seed=s.seed),
            "error_consistency": error_consistency(
                ans, data.conditions, data.stimuli, level=s.level, resamples=s.resamples, seed=s.seed
            ),
            "wrong_answers_agree_with_model": wrong_answers_agree(ans, data.conditions, data.stimuli),
        },
        "items": items,
        "participants": [
            {
                "participant": p.key,
                "condition": p.condition,
                "n_answers": int(users["answers"][i]),
                "accuracy": float(users["accuracy"][i]),
                "mean_confidence": None if np.isnan(users["confidence"][i]) else float(users["confidence"][i]),
            }
            for i, p in enumerate(sample.included)
        ],
        "notes": _notes(sample.exclusions, len(ans)),
    }
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def _notes(exclusions: dict[str, Any], n_answers: int) -> list[str]:
    notes = []
    if exclusions["total"]["included"] == 0:
        notes.append("No participant counts yet (finished, not a test participant, not excluded): nothing to analyse.")
        if n_test := exclusions["total"]["test"]:
            notes.append(
                f"{n_test} test participant(s) (admin previews, lpstudy bots) are left out by default; to analyse "
                "a pilot, include them (--include-test)."
            )
    elif n_answers == 0:
        notes.append("No answers to analyse.")
    return notes
