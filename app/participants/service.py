"""The participant's path: entry, atomic assignment, and the server-side page state machine.

Services flush; the request commits. Every answer is written with a conditional UPDATE keyed on the
participant's current position, so a double POST (even two at once) is stored exactly once.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.errors import BadRequest, NotFound, StudyUnavailable
from app.models import Condition, Participant, ParticipantStatus, Stage, Stimulus, Study, StudyStatus, Trial
from app.models.base import utcnow
from app.prolific import EntryParams
from app.studies.service import condition_counts, timeout_cutoff

GENDERS = ("female", "male", "non-binary", "other", "prefer-not-to-say")
STUDENT = ("yes", "no", "prefer-not-to-say")
EMPLOYMENT = (
    "full-time",
    "part-time",
    "unemployed",
    "not-in-paid-work",
    "student-only",
    "other",
    "prefer-not-to-say",
)
MAX_RT_MS = 6 * 3600 * 1000
# last_seen_at is refreshed on a GET only when older than this, to keep page views read-only.
TOUCH_INTERVAL_S = 30


def new_token() -> str:
    return secrets.token_urlsafe(16)


def _study_by_slug(session: Session, slug: str) -> Study:
    study = session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        raise NotFound(
            "There is no study at this address. Please check the link you were given.", title="Study not found"
        )
    return study


def _existing(session: Session, study_id: int, pid: str) -> Participant | None:
    return session.scalar(select(Participant).where(Participant.study_id == study_id, Participant.prolific_pid == pid))


def enter(session: Session, slug: str, params: EntryParams, rng: random.Random | None = None) -> Participant:
    """Find the participant for this PID, or assign a new one. Raises if the study can't take them."""
    study = _study_by_slug(session, slug)
    existing = _existing(session, study.id, params.pid)
    if existing is not None:
        return existing
    if study.status != StudyStatus.ACTIVE:
        raise StudyUnavailable(
            "This study is not accepting participants at the moment. Thank you for your interest. "
            "Please return the study on Prolific.",
            reason="closed",
        )
    # Serialise assignment for this study across threads and processes: the UPDATE takes the
    # study's row lock on PostgreSQL and SQLite's write lock, and holds it until the request commits.
    session.execute(update(Study).where(Study.id == study.id).values(assignment_seq=Study.assignment_seq + 1))
    existing = _existing(session, study.id, params.pid)  # a concurrent entry with the same PID
    if existing is not None:
        return existing
    return _assign(session, study, params, rng or random.SystemRandom())


def _assign(session: Session, study: Study, params: EntryParams, rng: random.Random) -> Participant:
    counts = condition_counts(session, study)
    open_ = [c for c in counts if c.filled < c.target]
    if not open_:
        raise StudyUnavailable(
            "This study has all the participants it needs. Thank you for your interest. "
            "Please return the study on Prolific.",
            reason="full",
        )
    least = min(c.filled for c in open_)
    code = rng.choice(sorted(c.code for c in open_ if c.filled == least))
    condition = next(c for c in study.conditions if c.code == code)

    now = utcnow()
    participant = Participant(
        study_id=study.id,
        condition_id=condition.id,
        token=new_token(),
        prolific_pid=params.pid,
        prolific_study_id=params.study_id,
        prolific_session_id=params.session_id,
        status=ParticipantStatus.ACTIVE,
        stage=Stage.CONSENT,
        position=0,
        attention_failures=0,
        started_at=now,
        last_seen_at=now,
    )
    session.add(participant)
    session.flush()
    stimulus_ids = _choose_stimuli(session, study, condition, rng)
    attention = set((study.attention or {}).get("positions", []))
    total = len(stimulus_ids) + len(attention)
    it = iter(stimulus_ids)
    trials = []
    for pos in range(total):
        if pos in attention:
            trials.append(
                {
                    "participant_id": participant.id,
                    "position": pos,
                    "stimulus_id": None,
                    "kind": "attention",
                    "expected_label": rng.randrange(10),
                }
            )
        else:
            trials.append(
                {
                    "participant_id": participant.id,
                    "position": pos,
                    "stimulus_id": next(it),
                    "kind": "stimulus",
                    "expected_label": None,
                }
            )
    session.execute(insert(Trial), trials)
    return participant


def _choose_stimuli(session: Session, study: Study, condition: Condition, rng: random.Random) -> list[int]:
    """Least-shown first (random among ties), then shuffled: evens out exposure across the pool."""
    shown = (
        select(Trial.stimulus_id, func.count().label("n"))
        .join(Participant, Participant.id == Trial.participant_id)
        .where(
            Participant.condition_id == condition.id,
            Participant.status.in_([ParticipantStatus.ACTIVE, ParticipantStatus.COMPLETED]),
        )
        .group_by(Trial.stimulus_id)
        .subquery()
    )
    rows = session.execute(
        select(Stimulus.id, func.coalesce(shown.c.n, 0))
        .join(shown, shown.c.stimulus_id == Stimulus.id, isouter=True)
        .where(Stimulus.condition_id == condition.id)
    ).all()
    need = study.trials_per_participant
    if len(rows) < need:
        raise StudyUnavailable("This study is not ready yet. Please return the study on Prolific.", reason="not-ready")
    keyed = sorted(rows, key=lambda r: (r[1], rng.random()))
    chosen = [r[0] for r in keyed[:need]]
    rng.shuffle(chosen)
    return chosen


# --- the page state machine -------------------------------------------------------------------


@dataclass
class PageState:
    participant: Participant
    study: Study
    trial: Trial | None = None
    stimulus_public_id: str | None = None
    stimulus_size: tuple[int, int] | None = None
    total_trials: int = 0


def load(session: Session, token: str) -> tuple[Participant, Study]:
    p = session.scalar(select(Participant).where(Participant.token == token))
    if p is None:
        raise NotFound("This page does not exist. Please open the study again from Prolific.", title="Page not found")
    study = session.get(Study, p.study_id)
    assert study is not None
    return p, study


def current_page(session: Session, token: str) -> PageState:
    p, study = load(session, token)
    now = utcnow()
    if p.stage != Stage.DONE and (now - _aware(p.last_seen_at)).total_seconds() > TOUCH_INTERVAL_S:
        p.last_seen_at = now
    state = PageState(participant=p, study=study)
    if p.stage == Stage.TRIALS:
        state.total_trials = (
            session.scalar(select(func.count()).select_from(Trial).where(Trial.participant_id == p.id)) or 0
        )
        trial = session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == p.position))
        if trial is None:
            raise NotFound("This trial does not exist.")
        if trial.shown_at is None:
            trial.shown_at = now
        state.trial = trial
        if trial.stimulus_id is not None:
            row = session.execute(
                select(Stimulus.public_id, Stimulus.width, Stimulus.height).where(Stimulus.id == trial.stimulus_id)
            ).one()
            state.stimulus_public_id = row[0]
            state.stimulus_size = (row[1], row[2])
    session.flush()
    return state


def _aware(ts):  # type: ignore[no-untyped-def]
    # SQLite returns naive datetimes; they are stored in UTC.
    import datetime as dt

    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


class WrongPage(Exception):
    """The POST does not belong to the participant's current page: redirect to the current page."""


def _advance(session: Session, p: Participant, expect_stage: str, expect_pos: int | None, **values) -> None:
    """Conditional move: only applies if the participant is still where the form was shown."""
    stmt = update(Participant).where(Participant.id == p.id, Participant.stage == expect_stage)
    if expect_pos is not None:
        stmt = stmt.where(Participant.position == expect_pos)
    result = session.execute(stmt.values(last_seen_at=utcnow(), **values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise WrongPage()
    session.expire(p)


def submit_consent(session: Session, token: str, answer: str | None) -> Participant:
    p, _study = load(session, token)
    if p.stage != Stage.CONSENT:
        raise WrongPage()
    if answer not in ("yes", "no"):
        raise BadRequest("Please choose whether you consent to take part.")
    now = utcnow()
    if answer == "yes":
        _advance(session, p, Stage.CONSENT, None, stage=Stage.INSTRUCTIONS, consented_at=now)
    else:
        _advance(
            session, p, Stage.CONSENT, None, stage=Stage.DONE, status=ParticipantStatus.NO_CONSENT, finished_at=now
        )
    return p


def submit_instructions(session: Session, token: str) -> Participant:
    p, _study = load(session, token)
    if p.stage != Stage.INSTRUCTIONS:
        raise WrongPage()
    _advance(session, p, Stage.INSTRUCTIONS, None, stage=Stage.TRIALS, position=0)
    return p


def _int_in(value: str | None, lo: int, hi: int, what: str) -> int:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadRequest(f"Please choose {what}.") from None
    if not lo <= n <= hi:
        raise BadRequest(f"The {what} you sent is not one of the options.")
    return n


def submit_trial(
    session: Session, token: str, position: int, label: str | None, confidence: str | None, rt_ms: str | None
) -> Participant:
    p, study = load(session, token)
    if p.stage != Stage.TRIALS or position < p.position:
        raise WrongPage()  # an earlier page (back button, double submit): nothing changes
    if position > p.position:
        raise BadRequest("This answer is not for the image you are being shown. Nothing was saved.")
    lab = _int_in(label, 0, len(study.labels) - 1, "a label")
    conf = _int_in(confidence, 1, 5, "how confident you are")
    rt: int | None = None
    try:
        rt = int(float(rt_ms)) if rt_ms not in (None, "") else None  # type: ignore[arg-type]
    except ValueError:
        rt = None
    if rt is not None and not 0 <= rt <= MAX_RT_MS:
        rt = None
    trial = session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position))
    if trial is None:
        raise BadRequest("This trial does not exist.")
    total = session.scalar(select(func.count()).select_from(Trial).where(Trial.participant_id == p.id)) or 0
    failed = trial.kind == "attention" and lab != trial.expected_label
    values: dict = {"position": position + 1}
    if position + 1 >= total:
        values["stage"] = Stage.DEMOGRAPHICS
    if failed:
        values["attention_failures"] = Participant.attention_failures + 1
    _advance(session, p, Stage.TRIALS, position, **values)
    now = utcnow()
    session.execute(
        update(Trial)
        .where(Trial.id == trial.id, Trial.answered_at.is_(None))
        .values(
            response_label=lab, confidence=conf, rt_ms=rt, answered_at=now, shown_at=func.coalesce(Trial.shown_at, now)
        )
        .execution_options(synchronize_session=False)
    )
    return p


def submit_demographics(
    session: Session,
    token: str,
    age: str | None,
    gender: str | None,
    student: str | None,
    employment: str | None,
) -> Participant:
    p, study = load(session, token)
    if p.stage != Stage.DEMOGRAPHICS:
        raise WrongPage()
    age_n = _int_in(age, 18, 120, "your age (18 to 120)")
    for value, allowed, what in (
        (gender, GENDERS, "a gender option"),
        (student, STUDENT, "whether you are a student"),
        (employment, EMPLOYMENT, "an employment option"),
    ):
        if value not in allowed:
            raise BadRequest(f"Please choose {what}.")
    threshold = (study.attention or {}).get("fail_threshold", 2)
    status = (
        ParticipantStatus.FAILED_ATTENTION
        if study.attention and p.attention_failures >= threshold
        else ParticipantStatus.COMPLETED
    )
    _advance(
        session,
        p,
        Stage.DEMOGRAPHICS,
        None,
        stage=Stage.DONE,
        status=status,
        finished_at=utcnow(),
        age=age_n,
        gender=gender,
        student=student,
        employment=employment,
    )
    return p


def completion_code(p: Participant, study: Study) -> str:
    return {
        ParticipantStatus.COMPLETED: study.code_completed,
        ParticipantStatus.NO_CONSENT: study.code_no_consent,
        ParticipantStatus.FAILED_ATTENTION: study.code_failed_attention,
    }.get(ParticipantStatus(p.status), study.code_completed)


def is_timed_out(p: Participant, study: Study) -> bool:
    return p.status == ParticipantStatus.ACTIVE and _aware(p.last_seen_at) < timeout_cutoff(study)
