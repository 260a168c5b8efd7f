"""The thin loader: a study's participants, trials and stimuli as plain records, from the database or a data package.

Everything downstream is pure functions of a ``StudyData``; nothing else in app/analysis touches the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.analysis.scoring import truth_of
from app.errors import ConfigError
from app.models import Participant, Stimulus, Study, Trial
from app.participants.repository import study_participants
from app.studies.schema import Analysis, StudyConfig, parse_study_config


@dataclass(frozen=True)
class ParticipantRecord:
    key: str  # the Prolific PID: unique within a study
    condition: str
    status: str
    is_test: bool = False
    test_kind: str | None = None
    attention_failures: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    age: int | None = None
    gender: str | None = None
    student: str | None = None
    employment: str | None = None


@dataclass(frozen=True)
class StimulusRecord:
    id: int
    condition: str
    image_index: int
    label: int
    metrics: dict[str, Any] = field(default_factory=dict)
    # Taken out of the pool by an admin (broken image, replaced): its answers do not count.
    excluded: bool = False
    excluded_reason: str | None = None


@dataclass(frozen=True)
class TrialRecord:
    participant: str  # ParticipantRecord.key
    position: int  # 0-based
    kind: str  # "stimulus" or "attention"
    stimulus_id: int | None
    truth: int | None  # true label, or the attention check's instructed label
    response: int | None
    confidence: int | None
    rt_ms: int | None
    answered_at: dt.datetime | None = None
    shown_at: dt.datetime | None = None


@dataclass
class StudyData:
    slug: str
    title: str
    dataset: str
    norm: str
    conditions: list[str]
    labels: list[str]
    trials_per_participant: int
    config_source: str
    options: Analysis
    fail_threshold: int | None  # the study's attention_checks.fail_threshold; None without checks
    participants: list[ParticipantRecord]
    trials: list[TrialRecord]
    stimuli: list[StimulusRecord]


def study_config_of(source: str) -> StudyConfig | None:
    try:
        return parse_study_config(source)
    except ConfigError:
        return None


def _options(cfg: StudyConfig | None) -> tuple[Analysis, int | None]:
    if cfg is None:
        return Analysis(), None
    ac = cfg.attention_checks
    threshold = ac.fail_threshold if ac is not None and ac.enabled else None
    return cfg.analysis, threshold


def load_study(session: Session, study: Study) -> StudyData:
    """Every participant (test ones too: select_sample decides, and reports how many it left out), trial and
    stimulus of a study. Participants come from the shared results query (app.participants.repository)."""
    cfg = study_config_of(study.config_source)
    options, threshold = _options(cfg)
    codes = {c.id: c.code for c in study.conditions}
    participants: list[ParticipantRecord] = []
    keys: dict[int, str] = {}
    for p in session.scalars(study_participants(study.id, include_test=True)):
        keys[p.id] = p.prolific_pid
        participants.append(
            ParticipantRecord(
                key=p.prolific_pid,
                condition=codes[p.condition_id],
                status=p.status,
                is_test=bool(p.is_test),
                test_kind=p.test_kind,
                attention_failures=p.attention_failures,
                started_at=p.started_at,
                finished_at=p.finished_at,
                age=p.age,
                gender=p.gender,
                student=p.student,
                employment=p.employment,
            )
        )
    stimuli = [
        StimulusRecord(id=s.id, condition=codes[s.condition_id], image_index=s.image_index, label=s.label,
                       metrics=dict(s.metrics or {}), excluded=s.excluded_at is not None,
                       excluded_reason=s.excluded_reason)
        for s in session.scalars(select(Stimulus).where(Stimulus.study_id == study.id).order_by(Stimulus.id))
    ]  # fmt: skip
    label_of = {s.id: s.label for s in stimuli}
    rows = session.execute(
        select(
            Trial.participant_id, Trial.position, Trial.kind, Trial.stimulus_id, Trial.expected_label,
            Trial.response_label, Trial.confidence, Trial.rt_ms, Trial.answered_at, Trial.shown_at,
        )
        .join(Participant, Participant.id == Trial.participant_id)
        .where(Participant.study_id == study.id)
        .order_by(Trial.participant_id, Trial.position)
    )  # fmt: skip
    trials = [
        TrialRecord(
            participant=keys[pid], position=pos, kind=kind, stimulus_id=sid,
            truth=truth_of(kind, label_of.get(sid) if sid is not None else None, expected),
            response=resp, confidence=conf, rt_ms=rt, answered_at=answered, shown_at=shown,
        )
        for pid, pos, kind, sid, expected, resp, conf, rt, answered, shown in rows
    ]  # fmt: skip
    return StudyData(
        slug=study.slug,
        title=study.title,
        dataset=study.dataset,
        norm=study.norm,
        conditions=[c.code for c in study.conditions],
        labels=[str(x) for x in study.labels],
        trials_per_participant=study.trials_per_participant,
        config_source=study.config_source,
        options=options,
        fail_threshold=threshold,
        participants=participants,
        trials=trials,
        stimuli=stimuli,
    )
