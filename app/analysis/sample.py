"""Who counts: finished, non-test participants, less the preregistered exclusions; and their answers as arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.analysis.load import ParticipantRecord, StudyData
from app.analysis.scoring import STIMULUS, is_correct

FINISHED = ("completed", "failed_attention")


@dataclass
class Answers:
    """One entry per answered stimulus trial of an included participant (attention checks never count)."""

    participant: np.ndarray  # int: index into Sample.included
    condition: np.ndarray  # int: index into StudyData.conditions
    stimulus_id: np.ndarray  # int
    image_index: np.ndarray  # int
    truth: np.ndarray  # int
    response: np.ndarray  # int
    correct: np.ndarray  # float 0/1
    confidence: np.ndarray  # float, NaN when missing
    rt_ms: np.ndarray  # float, NaN when missing

    def __len__(self) -> int:
        return len(self.correct)

    def subset(self, mask: np.ndarray) -> Answers:
        return Answers(**{k: v[mask] for k, v in self.__dict__.items()})


@dataclass
class Sample:
    included: list[ParticipantRecord]
    answers: Answers
    exclusions: dict  # JSON-ready account of who was left out and why
    attention_threshold: int | None
    # participant key -> why they do not count ("test", "no_consent", ...; "" when included): the exports' columns
    reason_of: dict[str, str] = field(default_factory=dict)


def attention_threshold(data: StudyData) -> int | None:
    """Failures at which a participant is excluded; None when the rule is off or the study has no checks."""
    opts = data.options
    if not opts.exclude_attention_failures:
        return None
    return opts.attention_failure_threshold or data.fail_threshold


def select_sample(data: StudyData, include_test: bool = False) -> Sample:
    threshold = attention_threshold(data)
    excluded_ids = {s.id for s in data.stimuli if s.excluded}
    answered: dict[str, int] = {}
    for t in data.trials:
        if t.kind == STIMULUS and t.response is not None and t.truth is not None and t.stimulus_id not in excluded_ids:
            answered[t.participant] = answered.get(t.participant, 0) + 1
    reasons = ("test", "no_consent", "not_finished", "attention", "no_answers")
    counts = {c: dict.fromkeys(("assigned", *reasons, "included"), 0) for c in data.conditions}
    included: list[ParticipantRecord] = []
    reason_of: dict[str, str] = {}
    for p in data.participants:
        row = counts.setdefault(p.condition, dict.fromkeys(("assigned", *reasons, "included"), 0))
        row["assigned"] += 1
        if p.is_test and not include_test:
            why = "test"
        elif p.status == "no_consent":
            why = "no_consent"
        elif p.status not in FINISHED:
            why = "not_finished"
        elif threshold is not None and p.attention_failures >= threshold:
            why = "attention"
        elif answered.get(p.key, 0) == 0:
            why = "no_answers"
        else:
            why = ""
            included.append(p)
        row[why or "included"] += 1
        reason_of[p.key] = why
    totals = {k: sum(r[k] for r in counts.values()) for k in ("assigned", *reasons, "included")}
    keys = {p.key for p in included}
    dropped = sum(
        1 for t in data.trials
        if t.participant in keys and t.stimulus_id in excluded_ids and t.response is not None
    )  # fmt: skip
    exclusions = {
        "rule": {
            "include_test": include_test,
            "exclude_attention_failures": data.options.exclude_attention_failures,
            "attention_failure_threshold": threshold,
        },
        "by_condition": counts,
        "total": totals,
        "excluded_stimuli": [
            {"stimulus_id": s.id, "condition": s.condition, "image_index": s.image_index, "reason": s.excluded_reason}
            for s in data.stimuli
            if s.excluded
        ],
        "answers_on_excluded_stimuli": dropped,
        "reasons": {
            "test": "test participants (admin previews, lpstudy bots pilots)",
            "no_consent": "declined consent",
            "not_finished": "did not finish (still in progress or timed out)",
            "attention": (
                f"failed at least {threshold} attention check(s)" if threshold is not None else "rule not applied"
            ),
            "no_answers": "finished without answering any image (that is still in the pool)",
        },
    }
    return Sample(included, build_answers(data, included), exclusions, threshold, reason_of)


def build_answers(data: StudyData, included: list[ParticipantRecord]) -> Answers:
    index = {p.key: i for i, p in enumerate(included)}
    cond_index = {c: i for i, c in enumerate(data.conditions)}
    p_cond = [cond_index[p.condition] for p in included]
    image_of = {s.id: s.image_index for s in data.stimuli}
    excluded_ids = {s.id for s in data.stimuli if s.excluded}
    cols: dict[str, list] = {k: [] for k in Answers.__dataclass_fields__}
    for t in data.trials:
        i = index.get(t.participant)
        if i is None or t.kind != STIMULUS:
            continue
        ok = is_correct(t.response, t.truth)
        if ok is None or t.stimulus_id is None or t.stimulus_id in excluded_ids:
            continue
        cols["participant"].append(i)
        cols["condition"].append(p_cond[i])
        cols["stimulus_id"].append(t.stimulus_id)
        cols["image_index"].append(image_of.get(t.stimulus_id, -1))
        cols["truth"].append(t.truth)
        cols["response"].append(t.response)
        cols["correct"].append(1.0 if ok else 0.0)
        cols["confidence"].append(np.nan if t.confidence is None else float(t.confidence))
        cols["rt_ms"].append(np.nan if t.rt_ms is None else float(t.rt_ms))
    ints = ("participant", "condition", "stimulus_id", "image_index", "truth", "response")
    return Answers(**{k: np.asarray(v, dtype=np.int64 if k in ints else np.float64) for k, v in cols.items()})
