"""Study lifecycle: create from config, list, activate, close, per-condition counts.

Services flush; callers commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from app.errors import Conflict, NotFound
from app.jobs.service import enqueue_generation, unfinished_jobs
from app.models import Condition, Participant, ParticipantStatus, Stimulus, Study, StudyStatus
from app.models.base import utcnow
from app.studies.schema import parse_study_config


def create_study(session: Session, source: str, *, filename: str = "study.toml") -> Study:
    cfg = parse_study_config(source, filename=filename)
    if session.scalar(select(Study.id).where(Study.slug == cfg.slug)) is not None:
        raise Conflict(f"a study with slug '{cfg.slug}' already exists")
    attention = None
    positions = cfg.attention_positions()
    if positions:
        assert cfg.attention_checks is not None
        attention = {"positions": positions, "fail_threshold": cfg.attention_checks.fail_threshold}
    study = Study(
        slug=cfg.slug,
        title=cfg.title,
        dataset=cfg.dataset,
        norm=cfg.norm,
        labels=list(cfg.labels or []),
        trials_per_participant=cfg.trials_per_participant,
        scales=list(cfg.scales),
        timeout_minutes=cfg.timeout_minutes,
        code_completed=cfg.completion_codes.completed,
        code_no_consent=cfg.completion_codes.no_consent,
        code_failed_attention=cfg.completion_codes.failed_attention,
        attention=attention,
        consent_text=cfg.texts.consent,
        instructions_text=cfg.texts.instructions,
        config_source=source,
        config=cfg.model_dump(mode="json"),
        status=StudyStatus.DRAFT,
        assignment_seq=0,
    )
    study.conditions = [Condition(code=c, target=cfg.participants_per_condition) for c in cfg.conditions]
    session.add(study)
    session.flush()
    if cfg.generation is not None:
        enqueue_generation(session, study)
    return study


def list_studies(session: Session) -> list[Study]:
    return list(session.scalars(select(Study).options(selectinload(Study.conditions)).order_by(Study.id)))


def get_study(session: Session, slug: str) -> Study:
    study = session.scalar(select(Study).where(Study.slug == slug).options(selectinload(Study.conditions)))
    if study is None:
        raise NotFound(f"no study with slug '{slug}'")
    return study


def pool_sizes(session: Session, study: Study) -> dict[str, int]:
    rows = session.execute(
        select(Condition.code, func.count(Stimulus.id))
        .join(Stimulus, Stimulus.condition_id == Condition.id, isouter=True)
        .where(Condition.study_id == study.id)
        .group_by(Condition.code)
    ).all()
    return dict(rows)


def activation_problems(session: Session, study: Study) -> list[str]:
    """Why the study cannot be activated yet (empty list: it can)."""
    sizes = pool_sizes(session, study)
    need = study.trials_per_participant
    problems = []
    pending = unfinished_jobs(session, study)
    if pending:
        problems.append(f"stimulus generation is not finished ({pending} job(s) pending or running)")
    problems += [
        f"condition {c.code} has {sizes.get(c.code, 0)} stimuli; each participant needs {need} distinct ones"
        for c in study.conditions
        if sizes.get(c.code, 0) < need
    ]
    return problems


def activate_study(session: Session, study: Study) -> Study:
    problems = activation_problems(session, study)
    if problems:
        raise Conflict("cannot activate study '" + study.slug + "': " + "; ".join(problems))
    study.status = StudyStatus.ACTIVE
    session.flush()
    return study


def close_study(session: Session, study: Study) -> Study:
    study.status = StudyStatus.CLOSED
    session.flush()
    return study


@dataclass(frozen=True)
class ConditionCounts:
    code: str
    target: int
    active: int
    completed: int
    timed_out: int
    no_consent: int
    failed_attention: int

    @property
    def filled(self) -> int:
        """What counts against the target: completed plus active within the timeout."""
        return self.completed + self.active


def timeout_cutoff(study: Study, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(minutes=study.timeout_minutes)


def condition_counts(session: Session, study: Study, now: dt.datetime | None = None) -> list[ConditionCounts]:
    cutoff = timeout_cutoff(study, now)
    P = Participant
    active = P.status == ParticipantStatus.ACTIVE
    rows = session.execute(
        select(
            Condition.id,
            func.count(case((active & (P.last_seen_at >= cutoff), 1))),
            func.count(case((P.status == ParticipantStatus.COMPLETED, 1))),
            func.count(case((active & (P.last_seen_at < cutoff), 1))),
            func.count(case((P.status == ParticipantStatus.NO_CONSENT, 1))),
            func.count(case((P.status == ParticipantStatus.FAILED_ATTENTION, 1))),
        )
        .join(P, P.condition_id == Condition.id, isouter=True)
        .where(Condition.study_id == study.id)
        .group_by(Condition.id)
    ).all()
    by_id = {r[0]: r[1:] for r in rows}
    out = []
    for c in study.conditions:
        a, done, to, nc, fa = by_id.get(c.id, (0, 0, 0, 0, 0))
        out.append(ConditionCounts(c.code, c.target, a, done, to, nc, fa))
    return out
