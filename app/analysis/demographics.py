"""Demographics as the paper's Sec. 4.2 reports them: age, gender, student and employment status, time taken."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from app.analysis.load import ParticipantRecord
from app.analysis.stats import num, quantiles

NOT_GIVEN = "not given"


def _shares(values: list[str | None]) -> dict[str, Any]:
    counts = Counter(v if v else NOT_GIVEN for v in values)
    n = len(values)
    return {
        "n": n,
        "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "shares": {k: num(c / n) for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))} if n else {},
    }


def demographics(participants: list[ParticipantRecord]) -> dict[str, Any]:
    ages = np.array([p.age for p in participants if p.age is not None], dtype=float)
    minutes = np.array(
        [
            (p.finished_at - p.started_at).total_seconds() / 60
            for p in participants
            if p.finished_at is not None and p.started_at is not None
        ],
        dtype=float,
    )
    return {
        "n": len(participants),
        "age": {
            "n": len(ages),
            "mean": num(ages.mean()) if len(ages) else None,
            "sd": num(ages.std(ddof=1)) if len(ages) > 1 else None,
            "min": num(ages.min()) if len(ages) else None,
            "max": num(ages.max()) if len(ages) else None,
            "n_missing": len(participants) - len(ages),
        },
        "gender": _shares([p.gender for p in participants]),
        "student": _shares([p.student for p in participants]),
        "employment": _shares([p.employment for p in participants]),
        "completion_minutes": {
            "n": len(minutes),
            "mean": num(minutes.mean()) if len(minutes) else None,
            "sd": num(minutes.std(ddof=1)) if len(minutes) > 1 else None,
            **{k: v for k, v in quantiles(minutes).items() if k in ("median", "q1", "q3")},
        },
    }
