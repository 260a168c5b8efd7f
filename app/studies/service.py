"""Study lifecycle: create from config, list, activate, close, per-condition counts.

Services flush; callers commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from app.errors import Conflict, NotFound
from app.jobs.service import enqueue_generation, has_jobs, unfinished_jobs
from app.models import Condition, Participant, ParticipantStatus, Stimulus, Study, StudyStatus
from app.models.base import utcnow
from app.participants.repository import is_real
from app.participants.slots import open_slots
from app.studies.schema import StudyConfig, parse_study_config


def _apply_config(study: Study, cfg: StudyConfig, source: str) -> None:
    attention = None
    positions = cfg.attention_positions()
    if positions:
        assert cfg.attention_checks is not None
        attention = {"positions": positions, "fail_threshold": cfg.attention_checks.fail_threshold}
    study.slug = cfg.slug
    study.title = cfg.title
    study.dataset = cfg.dataset
    study.norm = cfg.norm
    study.labels = list(cfg.labels or [])
    study.trials_per_participant = cfg.trials_per_participant
    study.scales = list(cfg.scales)
    study.timeout_minutes = cfg.timeout_minutes
    study.code_completed = cfg.completion_codes.completed
    study.code_no_consent = cfg.completion_codes.no_consent
    study.code_failed_attention = cfg.completion_codes.failed_attention
    study.attention = attention
    study.consent_text, study.instructions_text = cfg.filled_texts()  # as the participant reads them
    study.config_source = source
    study.config = cfg.model_dump(mode="json")


def create_study(session: Session, source: str, *, filename: str = "study.toml") -> Study:
    cfg = parse_study_config(source, filename=filename)
    if session.scalar(select(Study.id).where(Study.slug == cfg.slug)) is not None:
        raise Conflict(f"a study with slug '{cfg.slug}' already exists")
    study = Study(status=StudyStatus.DRAFT, assignment_seq=0)
    _apply_config(study, cfg, source)
    study.conditions = [Condition(code=c, target=cfg.participants_per_condition) for c in cfg.conditions]
    session.add(study)
    session.flush()
    if cfg.generation is not None:
        enqueue_generation(session, study)
    return study


# What stimuli are made for: changing these once a pool or a job exists would leave stimuli outside the design.
_STIMULUS_FIELDS = ("dataset", "norm", "generation")


def update_draft(session: Session, study: Study, source: str, *, filename: str = "study.toml") -> Study:
    """Replace a draft's config. Refused once anyone took part, for a slug change, and for a change of what the
    stimuli are made for (dataset, norm, generation, conditions) once stimuli or jobs exist."""
    if study.status != StudyStatus.DRAFT:
        raise Conflict(f"study '{study.slug}' is {study.status}: only a draft can be edited")
    cfg = parse_study_config(source, filename=filename)
    if cfg.slug != study.slug:
        raise Conflict(f"the slug cannot change (it is '{study.slug}'; the config says '{cfg.slug}')")
    if session.scalar(select(func.count()).select_from(Participant).where(Participant.study_id == study.id)):
        raise Conflict(f"study '{study.slug}' already has participants (test ones included): it cannot be edited")
    new = cfg.model_dump(mode="json")
    changed = [f for f in _STIMULUS_FIELDS if new.get(f) != study.config.get(f)]
    if sorted(cfg.conditions) != sorted(c.code for c in study.conditions):
        changed.append("conditions")
    has_stimuli = bool(sum(pool_sizes(session, study).values()))
    if changed and (has_stimuli or has_jobs(session, study)):
        raise Conflict(
            f"cannot change {', '.join(changed)} of study '{study.slug}': its stimuli (or generation jobs) were "
            "made for the current values. Create a new study instead."
        )
    _apply_config(study, cfg, source)
    keep = {c.code: c for c in study.conditions}
    study.conditions = [keep.get(code) or Condition(code=code, target=0) for code in cfg.conditions]
    for c in study.conditions:
        c.target = cfg.participants_per_condition
    session.flush()
    if cfg.generation is not None and not has_jobs(session, study):
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
    """Stimuli in each condition's pool (excluded ones are not)."""
    rows = session.execute(
        select(Condition.code, func.count(Stimulus.id))
        .join(Stimulus, (Stimulus.condition_id == Condition.id) & Stimulus.excluded_at.is_(None), isouter=True)
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
    open_slots(session, study.id)
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
    """Real participants per condition (previews and bots are counted apart: participants.pilots)."""
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
        .join(P, (P.condition_id == Condition.id) & is_real(P), isouter=True)  # test participants never count
        .where(Condition.study_id == study.id)
        .group_by(Condition.id)
    ).all()
    by_id = {r[0]: r[1:] for r in rows}
    out = []
    for c in study.conditions:
        a, done, to, nc, fa = by_id.get(c.id, (0, 0, 0, 0, 0))
        out.append(ConditionCounts(c.code, c.target, a, done, to, nc, fa))
    return out
