"""The participant's path: entry, atomic assignment, and the server-side page state machine.

Every function here opens its own Core connection from the engine and commits itself (it is the hot path: no ORM
session). Every answer is written with a conditional UPDATE keyed on the participant's current position, so a
double POST (even two at once) is stored exactly once.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, case, exists, func, insert, select, update
from sqlalchemy.orm import Session

from app.errors import BadRequest, NotFound, StudyUnavailable
from app.models import Condition, Participant, ParticipantStatus, Stage, Stimulus, Study, StudyStatus, Trial
from app.models.base import utcnow
from app.prolific import EntryParams

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


# Everything here runs on plain Core connections (no ORM session): the participant's path is the hot path.
P: Table = Participant.__table__  # type: ignore[assignment]
T: Table = Trial.__table__  # type: ignore[assignment]
S: Table = Stimulus.__table__  # type: ignore[assignment]
ST: Table = Study.__table__  # type: ignore[assignment]
C: Table = Condition.__table__  # type: ignore[assignment]

_TRIALS = Stage.TRIALS.value
_ACTIVE = ParticipantStatus.ACTIVE.value
_NOT_FOUND = "This page does not exist. Please open the study again from Prolific."
# Study rows change rarely (texts, labels); page views read them from a per-process cache this many seconds old
# at most. Entry and assignment always read the study from the database.
STUDY_CACHE_TTL_S = 10.0


def _autocommit(engine: Engine) -> Connection:
    """A connection whose statements each commit on their own (no BEGIN/COMMIT round trips)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


# --- entry and assignment -----------------------------------------------------------------------
#
# Assignment is serialised per study by a row lock: `UPDATE studies SET assignment_seq = assignment_seq + 1`
# takes PostgreSQL's row lock and SQLite's writer lock, held until commit, so several server processes never
# over-fill a condition. To keep that lock short, the decision is prepared before it: one statement reads the
# per-condition counts, the study's assignment_seq and any participant with this PID (one snapshot), and the
# condition and stimuli are chosen from it. The lock's UPDATE returns the new assignment_seq: if it is the one
# read plus one, no assignment happened in between and the decision stands (the lock is then held only for the
# two INSERTs). Otherwise everything is read and decided again under the lock.

_STUDY_FOR_ENTRY = select(
    ST.c.id, ST.c.status, ST.c.trials_per_participant, ST.c.attention, ST.c.timeout_minutes
).where(ST.c.slug == bindparam("slug"))
_LOCK = (
    update(ST)
    .where(ST.c.id == bindparam("b_id"))
    .values(assignment_seq=ST.c.assignment_seq + 1)
    .returning(ST.c.assignment_seq)
)


def _entry_state(conn: Connection, study_id: int, pid: str, cutoff: dt.datetime) -> tuple[int, str | None, list]:
    """(assignment_seq, token of this PID's participant or None, [(condition id, code, target, filled)])."""
    active = P.c.status == _ACTIVE
    filled = func.count(
        case(((active & (P.c.last_seen_at >= cutoff)) | (P.c.status == ParticipantStatus.COMPLETED.value), 1))
    )
    existing = select(P.c.token).where(P.c.study_id == study_id, P.c.prolific_pid == pid).scalar_subquery()
    seq = select(ST.c.assignment_seq).where(ST.c.id == study_id).scalar_subquery()
    rows = conn.execute(
        select(C.c.id, C.c.code, C.c.target, filled, seq, existing)
        .select_from(C.outerjoin(P, P.c.condition_id == C.c.id))
        .where(C.c.study_id == study_id)
        .group_by(C.c.id, C.c.code, C.c.target)
        .order_by(C.c.id)
    ).all()
    if not rows:
        return 0, None, []
    return rows[0][4], rows[0][5], [tuple(r[:4]) for r in rows]


def _shown_counts(conn: Connection, condition_id: int) -> list[tuple[int, int]]:
    """[(stimulus id, times given to active or completed participants)] for one condition's pool."""
    shown = (
        select(T.c.stimulus_id, func.count().label("n"))
        .select_from(T.join(P, P.c.id == T.c.participant_id))
        .where(
            P.c.condition_id == condition_id,
            P.c.status.in_([_ACTIVE, ParticipantStatus.COMPLETED.value]),
        )
        .group_by(T.c.stimulus_id)
        .subquery()
    )
    rows = conn.execute(
        select(S.c.id, func.coalesce(shown.c.n, 0))
        .select_from(S.outerjoin(shown, shown.c.stimulus_id == S.c.id))
        .where(S.c.condition_id == condition_id)
    ).all()
    return [(r[0], r[1]) for r in rows]


@dataclass
class _Decision:
    condition_id: int
    trials: list[dict[str, Any]]  # without participant_id


def _decide(conn: Connection, study: Any, counts: list, rng: random.Random) -> _Decision:
    """Least-filled open condition (random tie-break), then its least-shown stimuli in random order."""
    open_ = [c for c in counts if c[3] < c[2]]
    if not open_:
        raise StudyUnavailable(
            "This study has all the participants it needs. Thank you for your interest. "
            "Please return the study on Prolific.",
            reason="full",
        )
    least = min(c[3] for c in open_)
    code = rng.choice(sorted(c[1] for c in open_ if c[3] == least))
    condition_id = next(c[0] for c in open_ if c[1] == code)
    rows = _shown_counts(conn, condition_id)
    need = study.trials_per_participant
    if len(rows) < need:
        raise StudyUnavailable("This study is not ready yet. Please return the study on Prolific.", reason="not-ready")
    keyed = sorted(rows, key=lambda r: (r[1], rng.random()))  # least-shown first, random among ties
    chosen = [r[0] for r in keyed[:need]]
    rng.shuffle(chosen)
    attention = set((study.attention or {}).get("positions", []))
    it = iter(chosen)
    trials = []
    for pos in range(len(chosen) + len(attention)):
        if pos in attention:
            trials.append(
                {"position": pos, "stimulus_id": None, "kind": "attention", "expected_label": rng.randrange(10)}
            )
        else:
            trials.append({"position": pos, "stimulus_id": next(it), "kind": "stimulus", "expected_label": None})
    return _Decision(condition_id, trials)


def _not_active(engine: Engine, study_id: int) -> StudyUnavailable:
    from app.jobs.service import unfinished_jobs

    with Session(engine) as session:
        study = session.get(Study, study_id)
        if study is not None and study.status == StudyStatus.DRAFT and unfinished_jobs(session, study):
            return StudyUnavailable(
                "This study's images are still being prepared. Please try this link again in a few minutes.",
                reason="preparing",
            )
    return StudyUnavailable(
        "This study is not accepting participants at the moment. Thank you for your interest. "
        "Please return the study on Prolific.",
        reason="closed",
    )


def enter(engine: Engine, slug: str, params: EntryParams, rng: random.Random | None = None) -> str:
    """The token of this PID's participant, assigning a new one if needed. Raises if the study can't take them."""
    rng = rng or random.SystemRandom()
    with _autocommit(engine) as conn:  # the reads that prepare the decision: no transaction needed
        study = conn.execute(_STUDY_FOR_ENTRY, {"slug": slug}).first()
        if study is None:
            raise NotFound(
                "There is no study at this address. Please check the link you were given.", title="Study not found"
            )
        cutoff = utcnow() - dt.timedelta(minutes=study.timeout_minutes)
        seq, existing, counts = _entry_state(conn, study.id, params.pid, cutoff)
        if existing is not None:
            return str(existing)  # the same PID again: resume, never a second assignment
        if study.status != StudyStatus.ACTIVE:
            raise _not_active(engine, study.id)
        decision = _decide(conn, study, counts, rng)

    with engine.connect() as conn:
        locked_seq = conn.execute(_LOCK, {"b_id": study.id}).scalar_one()  # takes the study's lock
        if locked_seq != seq + 1:  # someone was assigned since: decide again, now under the lock
            _seq, existing, counts = _entry_state(conn, study.id, params.pid, cutoff)
            if existing is not None:
                conn.rollback()
                return str(existing)
            decision = _decide(conn, study, counts, rng)
        now = utcnow()
        token = new_token()
        participant_id = conn.execute(
            insert(P)
            .values(
                study_id=study.id,
                condition_id=decision.condition_id,
                token=token,
                prolific_pid=params.pid,
                prolific_study_id=params.study_id,
                prolific_session_id=params.session_id,
                status=_ACTIVE,
                stage=Stage.CONSENT.value,
                position=0,
                attention_failures=0,
                started_at=now,
                last_seen_at=now,
            )
            .returning(P.c.id)
        ).scalar_one()
        conn.execute(insert(T), [{"participant_id": participant_id, **t} for t in decision.trials])
        conn.commit()
        return token


# --- the page state machine -------------------------------------------------------------------
#
# A page view is one SELECT that joins the participant, the current trial and its stimulus, then at most two
# conditional UPDATEs, in autocommit (each UPDATE is a single statement, atomic on its own). An answer is that
# SELECT plus two UPDATEs in one transaction.


@dataclass(frozen=True)
class StudyView:
    """What participant pages need from a study (immutable, safe to cache and share between threads)."""

    id: int
    slug: str
    title: str
    labels: tuple[str, ...]
    scales: tuple[int, ...]
    consent_text: str
    instructions_text: str
    attention: dict | None
    code_completed: str
    code_no_consent: str
    code_failed_attention: str


_STUDY_VIEW = select(
    ST.c.id,
    ST.c.slug,
    ST.c.title,
    ST.c.labels,
    ST.c.scales,
    ST.c.consent_text,
    ST.c.instructions_text,
    ST.c.attention,
    ST.c.code_completed,
    ST.c.code_no_consent,
    ST.c.code_failed_attention,
).where(ST.c.id == bindparam("study_id"))


class StudyCache:
    """study id -> StudyView, refreshed after STUDY_CACHE_TTL_S. One per app (ids are per database)."""

    def __init__(self, ttl_s: float = STUDY_CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._views: dict[int, tuple[float, StudyView]] = {}

    def get(self, conn: Connection, study_id: int) -> StudyView:
        now = time.monotonic()
        hit = self._views.get(study_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        r = conn.execute(_STUDY_VIEW, {"study_id": study_id}).one()
        view = StudyView(
            id=r.id,
            slug=r.slug,
            title=r.title,
            labels=tuple(r.labels),
            scales=tuple(r.scales),
            consent_text=r.consent_text,
            instructions_text=r.instructions_text,
            attention=r.attention,
            code_completed=r.code_completed,
            code_no_consent=r.code_no_consent,
            code_failed_attention=r.code_failed_attention,
        )
        self._views[study_id] = (now + self.ttl_s, view)
        return view


@dataclass(frozen=True)
class TrialView:
    position: int
    kind: str
    expected_label: int | None


@dataclass
class PageState:
    stage: str
    status: str
    study: StudyView
    trial: TrialView | None = None
    stimulus_public_id: str | None = None
    stimulus_size: tuple[int, int] | None = None
    total_trials: int = 0


def _trial_count() -> Any:
    t2 = T.alias("t2")
    return select(func.count()).select_from(t2).where(t2.c.participant_id == P.c.id).correlate(P).scalar_subquery()


# The participant, the trial at their position and its stimulus, and (on trial pages) the number of trials.
_PAGE = (
    select(
        P.c.id,
        P.c.study_id,
        P.c.stage,
        P.c.status,
        P.c.position,
        P.c.last_seen_at,
        T.c.id.label("trial_id"),
        T.c.kind,
        T.c.expected_label,
        T.c.shown_at,
        S.c.public_id,
        S.c.width,
        S.c.height,
        case((P.c.stage == _TRIALS, _trial_count()), else_=None).label("total"),
    )
    .select_from(
        P.outerjoin(
            T, and_(P.c.stage == _TRIALS, T.c.participant_id == P.c.id, T.c.position == P.c.position)
        ).outerjoin(S, S.c.id == T.c.stimulus_id)
    )
    .where(P.c.token == bindparam("token"))
)


# Prebuilt statements (their SQL and cache keys are computed once).
_TOUCH = (
    update(P).where(P.c.id == bindparam("b_id")).values(last_seen_at=bindparam("b_now", type_=P.c.last_seen_at.type))
)
_SHOWN = (
    update(T)
    .where(T.c.id == bindparam("b_id"), T.c.shown_at.is_(None))
    .values(shown_at=bindparam("b_now", type_=T.c.shown_at.type))
)
_ADVANCE_TRIAL = (
    update(P)
    .where(P.c.id == bindparam("b_id"), P.c.stage == _TRIALS, P.c.position == bindparam("b_pos"))
    .values(
        position=bindparam("b_next", type_=P.c.position.type),
        stage=bindparam("b_stage", type_=P.c.stage.type),
        attention_failures=P.c.attention_failures + bindparam("b_fail", type_=P.c.attention_failures.type),
        last_seen_at=bindparam("b_now", type_=P.c.last_seen_at.type),
    )
)
_STORE_ANSWER = (
    update(T)
    .where(T.c.id == bindparam("b_id"), T.c.answered_at.is_(None))
    .values(
        response_label=bindparam("b_label", type_=T.c.response_label.type),
        confidence=bindparam("b_conf", type_=T.c.confidence.type),
        rt_ms=bindparam("b_rt", type_=T.c.rt_ms.type),
        answered_at=bindparam("b_now", type_=T.c.answered_at.type),
        shown_at=func.coalesce(T.c.shown_at, bindparam("b_now", type_=T.c.shown_at.type)),
    )
)


# PostgreSQL: a page view and an answer are one statement each (data-modifying CTEs), so a request makes one
# round trip after the answer's SELECT. On a busy machine each round trip waits for the scheduler twice.
_NOW = P.c.last_seen_at.type
_p = (
    select(P.c.id, P.c.study_id, P.c.stage, P.c.status, P.c.position, P.c.last_seen_at)
    .where(P.c.token == bindparam("b_token"))  # not "token": a parameter named like a column joins the UPDATEs' SET
    .cte("p")
)
_t2 = T.alias("t2")
_PAGE_PG = (
    select(
        _p.c.id,
        _p.c.study_id,
        _p.c.stage,
        _p.c.status,
        _p.c.position,
        _p.c.last_seen_at,
        T.c.id.label("trial_id"),
        T.c.kind,
        T.c.expected_label,
        T.c.shown_at,
        S.c.public_id,
        S.c.width,
        S.c.height,
        case(
            (
                _p.c.stage == _TRIALS,
                select(func.count())
                .select_from(_t2)
                .where(_t2.c.participant_id == _p.c.id)
                .correlate(_p)
                .scalar_subquery(),
            ),
            else_=None,
        ).label("total"),
    )
    .select_from(
        _p.outerjoin(
            T, and_(_p.c.stage == _TRIALS, T.c.participant_id == _p.c.id, T.c.position == _p.c.position)
        ).outerjoin(S, S.c.id == T.c.stimulus_id)
    )
    # mark the current trial shown (once), and refresh last_seen_at when it is older than TOUCH_INTERVAL_S
    .add_cte(
        update(T)
        .where(
            T.c.participant_id == _p.c.id,
            T.c.position == _p.c.position,
            _p.c.stage == _TRIALS,
            T.c.shown_at.is_(None),
        )
        .values(shown_at=bindparam("b_now", type_=_NOW))
        .returning(T.c.id)
        .cte("shown")
    )
    .add_cte(
        update(P)
        .where(
            P.c.id == _p.c.id,
            _p.c.stage != Stage.DONE.value,
            _p.c.last_seen_at < bindparam("b_touch_before", type_=_NOW),
        )
        .values(last_seen_at=bindparam("b_now", type_=_NOW))
        .returning(P.c.id)
        .cte("touch")
    )
)
_adv = _ADVANCE_TRIAL.returning(P.c.id).cte("adv")
_ans = (
    update(T)
    .where(T.c.id == bindparam("b_tid"), T.c.answered_at.is_(None), exists(select(_adv.c.id)))
    .values(
        response_label=bindparam("b_label", type_=T.c.response_label.type),
        confidence=bindparam("b_conf", type_=T.c.confidence.type),
        rt_ms=bindparam("b_rt", type_=T.c.rt_ms.type),
        answered_at=bindparam("b_now", type_=_NOW),
        shown_at=func.coalesce(T.c.shown_at, bindparam("b_now", type_=_NOW)),
    )
    .returning(T.c.id)
    .cte("ans")
)
# Both UPDATEs in one statement: atomic without a transaction block. "advanced" is 0 when the form was stale.
_ANSWER_PG = select(select(func.count()).select_from(_adv).scalar_subquery().label("advanced"))
_ANSWER_PG = _ANSWER_PG.add_cte(_ans)


def current_page(engine: Engine, studies: StudyCache, token: str) -> PageState:
    """The participant's current page. Marks the trial shown (once) and refreshes last_seen_at (at most every
    TOUCH_INTERVAL_S), each with a single conditional UPDATE (on PostgreSQL all in the page's one statement)."""
    now = utcnow()
    pg = engine.dialect.name == "postgresql"
    with _autocommit(engine) as conn:
        if pg:
            params = {"b_token": token, "b_now": now, "b_touch_before": now - dt.timedelta(seconds=TOUCH_INTERVAL_S)}
            r = conn.execute(_PAGE_PG, params).first()
        else:
            r = conn.execute(_PAGE, {"token": token}).first()
        if r is None:
            raise NotFound(_NOT_FOUND, title="Page not found")
        state = PageState(stage=r.stage, status=r.status, study=studies.get(conn, r.study_id))
        if r.stage == _TRIALS:
            if r.trial_id is None:
                raise NotFound("This trial does not exist.")
            state.total_trials = r.total or 0
            state.trial = TrialView(r.position, r.kind, r.expected_label)
            if r.public_id is not None:
                state.stimulus_public_id = r.public_id
                state.stimulus_size = (r.width, r.height)
            if r.shown_at is None and not pg:
                conn.execute(_SHOWN, {"b_id": r.trial_id, "b_now": now})
        if not pg and r.stage != Stage.DONE and (now - _aware(r.last_seen_at)).total_seconds() > TOUCH_INTERVAL_S:
            conn.execute(_TOUCH, {"b_id": r.id, "b_now": now})
    return state


def _aware(ts):  # type: ignore[no-untyped-def]
    # SQLite returns naive datetimes; they are stored in UTC.
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


class WrongPage(Exception):
    """The POST does not belong to the participant's current page: redirect to the current page."""


def _advance(conn: Connection, where: Any, **values: Any) -> None:
    """Conditional move: only applies if the participant is still where the form was shown."""
    result = conn.execute(update(P).where(*where).values(last_seen_at=utcnow(), **values))
    if result.rowcount != 1:
        raise WrongPage()


_STAGE_OF = select(P.c.stage).where(P.c.token == bindparam("token"))


def _stage_of(conn: Connection, token: str) -> str:
    stage = conn.execute(_STAGE_OF, {"token": token}).scalar()
    if stage is None:
        raise NotFound(_NOT_FOUND, title="Page not found")
    return str(stage)


def submit_consent(engine: Engine, token: str, answer: str | None) -> None:
    with _autocommit(engine) as conn:
        if answer not in ("yes", "no"):
            if _stage_of(conn, token) != Stage.CONSENT:
                raise WrongPage()
            raise BadRequest("Please choose whether you consent to take part.")
        now = utcnow()
        if answer == "yes":
            values = {"stage": Stage.INSTRUCTIONS.value, "consented_at": now}
        else:
            values = {"stage": Stage.DONE.value, "status": ParticipantStatus.NO_CONSENT.value, "finished_at": now}
        done = conn.execute(
            update(P).where(P.c.token == token, P.c.stage == Stage.CONSENT.value).values(last_seen_at=now, **values)
        ).rowcount
        if done != 1:
            _stage_of(conn, token)  # 404 for an unknown token
            raise WrongPage()


def submit_instructions(engine: Engine, token: str) -> None:
    with _autocommit(engine) as conn:
        done = conn.execute(
            update(P)
            .where(P.c.token == token, P.c.stage == Stage.INSTRUCTIONS.value)
            .values(stage=_TRIALS, position=0, last_seen_at=utcnow())
        ).rowcount
        if done != 1:
            _stage_of(conn, token)
            raise WrongPage()


def _int_in(value: str | None, lo: int, hi: int, what: str) -> int:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadRequest(f"Please choose {what}.") from None
    if not lo <= n <= hi:
        raise BadRequest(f"The {what} you sent is not one of the options.")
    return n


# The participant and the trial at the position the answer is for, with the number of trials.
_ANSWER = (
    select(
        P.c.id,
        P.c.study_id,
        P.c.stage,
        P.c.position,
        T.c.id.label("trial_id"),
        T.c.kind,
        T.c.expected_label,
        _trial_count().label("total"),
    )
    .select_from(P.outerjoin(T, and_(T.c.participant_id == P.c.id, T.c.position == bindparam("position"))))
    .where(P.c.token == bindparam("token"))
)


def submit_trial(
    engine: Engine,
    studies: StudyCache,
    token: str,
    position: int,
    label: str | None,
    confidence: str | None,
    rt_ms: str | None,
) -> None:
    pg = engine.dialect.name == "postgresql"
    # PostgreSQL: the SELECT, then both UPDATEs in one statement (autocommit). SQLite: one transaction.
    with _autocommit(engine) if pg else engine.begin() as conn:
        r = conn.execute(_ANSWER, {"token": token, "position": position}).first()
        if r is None:
            raise NotFound(_NOT_FOUND, title="Page not found")
        if r.stage != _TRIALS or position < r.position:
            raise WrongPage()  # an earlier page (back button, double submit): nothing changes
        if position > r.position:
            raise BadRequest("This answer is not for the image you are being shown. Nothing was saved.")
        study = studies.get(conn, r.study_id)
        lab = _int_in(label, 0, len(study.labels) - 1, "a label")
        conf = _int_in(confidence, 1, 5, "how confident you are")
        rt: int | None = None
        try:
            rt = int(float(rt_ms)) if rt_ms not in (None, "") else None  # type: ignore[arg-type]
        except (ValueError, OverflowError):
            rt = None
        if rt is not None and not 0 <= rt <= MAX_RT_MS:
            rt = None
        if r.trial_id is None:
            raise BadRequest("This trial does not exist.")
        last = position + 1 >= (r.total or 0)
        failed = r.kind == "attention" and lab != r.expected_label
        params = {
            "b_id": r.id,
            "b_pos": position,
            "b_next": position + 1,
            "b_stage": Stage.DEMOGRAPHICS.value if last else _TRIALS,
            "b_fail": 1 if failed else 0,
            "b_now": utcnow(),
        }
        answer = {"b_label": lab, "b_conf": conf, "b_rt": rt}
        if pg:
            if conn.execute(_ANSWER_PG, {**params, **answer, "b_tid": r.trial_id}).scalar_one() != 1:
                raise WrongPage()
            return
        if conn.execute(_ADVANCE_TRIAL, params).rowcount != 1:
            raise WrongPage()
        conn.execute(_STORE_ANSWER, {**answer, "b_id": r.trial_id, "b_now": params["b_now"]})


_DEMOGRAPHICS = select(P.c.id, P.c.study_id, P.c.stage, P.c.attention_failures).where(P.c.token == bindparam("token"))


def submit_demographics(
    engine: Engine,
    studies: StudyCache,
    token: str,
    age: str | None,
    gender: str | None,
    student: str | None,
    employment: str | None,
) -> None:
    with _autocommit(engine) as conn:
        r = conn.execute(_DEMOGRAPHICS, {"token": token}).first()
        if r is None:
            raise NotFound(_NOT_FOUND, title="Page not found")
        if r.stage != Stage.DEMOGRAPHICS:
            raise WrongPage()
        age_n = _int_in(age, 18, 120, "your age (18 to 120)")
        for value, allowed, what in (
            (gender, GENDERS, "a gender option"),
            (student, STUDENT, "whether you are a student"),
            (employment, EMPLOYMENT, "an employment option"),
        ):
            if value not in allowed:
                raise BadRequest(f"Please choose {what}.")
        study = studies.get(conn, r.study_id)
        threshold = (study.attention or {}).get("fail_threshold", 2)
        status = (
            ParticipantStatus.FAILED_ATTENTION
            if study.attention and r.attention_failures >= threshold
            else ParticipantStatus.COMPLETED
        )
        _advance(
            conn,
            (P.c.id == r.id, P.c.stage == Stage.DEMOGRAPHICS.value),
            stage=Stage.DONE.value,
            status=status.value,
            finished_at=utcnow(),
            age=age_n,
            gender=gender,
            student=student,
            employment=employment,
        )


def completion_code(status: str, study: StudyView | Study) -> str:
    return {
        ParticipantStatus.COMPLETED: study.code_completed,
        ParticipantStatus.NO_CONSENT: study.code_no_consent,
        ParticipantStatus.FAILED_ATTENTION: study.code_failed_attention,
    }.get(ParticipantStatus(status), study.code_completed)
