"""Entry and assignment: a PID's participant, or a new one in the least-filled condition with its trials.

Assignment is serialised per study by a row lock: `UPDATE studies SET assignment_seq = assignment_seq + 1`
takes PostgreSQL's row lock and SQLite's writer lock, held until commit, so several server processes never
over-fill a condition. To keep that lock short, the decision is prepared before it: one statement reads the
per-condition counts, the study's assignment_seq and any participant with this PID (one snapshot), and the
condition and stimuli are chosen from it. The lock's UPDATE returns the new assignment_seq: if it is the one
read plus one, no assignment happened in between and the decision stands (the lock is then held only for the
two INSERTs). Otherwise everything is read and decided again under the lock.

Test participants (an admin's preview, `lpstudy bots`; see participants.pilots) take the same path, but are
counted apart: real participants' counts and stimulus balance never see them, and they are balanced among
themselves, with no target, in any study status.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session

from app.errors import BadRequest, NotFound, StudyUnavailable
from app.models import ParticipantStatus, Stage, Study, StudyStatus
from app.models.base import utcnow
from app.participants import viewing
from app.participants.pilots import EntryGrant
from app.participants.tables import ACTIVE, ST, C, P, S, T, autocommit, new_token
from app.prolific import EntryParams

_STUDY_FOR_ENTRY = select(
    ST.c.id, ST.c.status, ST.c.trials_per_participant, ST.c.attention, ST.c.timeout_minutes, ST.c.config
).where(ST.c.slug == bindparam("slug"))
_LOCK = (
    update(ST)
    .where(ST.c.id == bindparam("b_id"))
    .values(assignment_seq=ST.c.assignment_seq + 1)
    .returning(ST.c.assignment_seq)
)


def _entry_state(
    conn: Connection, study_id: int, pid: str, cutoff: dt.datetime, is_test: bool = False
) -> tuple[int, str | None, list]:
    """(assignment_seq, token of this PID's participant or None, [(condition id, code, target, filled)]).
    `filled` counts real participants, or for a test entry the test participants."""
    active = P.c.status == ACTIVE
    filled = func.count(
        case(((active & (P.c.last_seen_at >= cutoff)) | (P.c.status == ParticipantStatus.COMPLETED.value), 1))
    )
    existing = select(P.c.token).where(P.c.study_id == study_id, P.c.prolific_pid == pid).scalar_subquery()
    seq = select(ST.c.assignment_seq).where(ST.c.id == study_id).scalar_subquery()
    rows = conn.execute(
        select(C.c.id, C.c.code, C.c.target, filled, seq, existing)
        .select_from(C.outerjoin(P, (P.c.condition_id == C.c.id) & (P.c.is_test.is_(is_test))))
        .where(C.c.study_id == study_id)
        .group_by(C.c.id, C.c.code, C.c.target)
        .order_by(C.c.id)
    ).all()
    if not rows:
        return 0, None, []
    return rows[0][4], rows[0][5], [tuple(r[:4]) for r in rows]


def _shown_counts(conn: Connection, condition_id: int, is_test: bool = False) -> list[tuple[int, int]]:
    """[(stimulus id, times given to active or completed participants)] for one condition's pool (real
    participants; for a test entry, test participants)."""
    shown = (
        select(T.c.stimulus_id, func.count().label("n"))
        .select_from(T.join(P, P.c.id == T.c.participant_id))
        .where(
            P.c.condition_id == condition_id,
            P.c.status.in_([ACTIVE, ParticipantStatus.COMPLETED.value]),
            P.c.is_test.is_(is_test),
        )
        .group_by(T.c.stimulus_id)
        .subquery()
    )
    rows = conn.execute(
        select(S.c.id, func.coalesce(shown.c.n, 0))
        .select_from(S.outerjoin(shown, shown.c.stimulus_id == S.c.id))
        .where(S.c.condition_id == condition_id, S.c.excluded_at.is_(None))  # excluded: out of the pool
    ).all()
    return [(r[0], r[1]) for r in rows]


@dataclass
class _Decision:
    condition_id: int
    trials: list[dict[str, Any]]  # without participant_id


def _decide(
    conn: Connection, study: Any, counts: list, rng: random.Random, test: EntryGrant | None = None
) -> _Decision:
    """Least-filled open condition (random tie-break), then its least-shown stimuli in random order.
    A test entry has no target to respect (every condition is open), or the one condition it previews."""
    if test is None:
        open_ = [c for c in counts if c[3] < c[2]]
    else:
        open_ = [c for c in counts if test.condition in (None, c[1])]
        if not open_:
            raise BadRequest(f"This study has no condition {test.condition}.", title="Test link not valid")
    if not open_:
        raise StudyUnavailable(
            "This study has all the participants it needs. Thank you for your interest. "
            "Please return the study on Prolific.",
            reason="full",
        )
    least = min(c[3] for c in open_)
    code = rng.choice(sorted(c[1] for c in open_ if c[3] == least))
    condition_id = next(c[0] for c in open_ if c[1] == code)
    rows = _shown_counts(conn, condition_id, is_test=test is not None)
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


def enter(
    engine: Engine,
    slug: str,
    params: EntryParams,
    rng: random.Random | None = None,
    test: EntryGrant | None = None,
    screen: int | str | None = viewing.NOT_MEASURED,
) -> str:
    """The token of this PID's participant, assigning a new one if needed. Raises if the study can't take them.
    `test` (a verified test token) makes a new participant a test participant of that kind. `screen` is the
    window width the entry link measured (viewing.measured_width); the route passes None when it has none."""
    rng = rng or random.SystemRandom()
    is_test = test is not None
    with autocommit(engine) as conn:  # the reads that prepare the decision: no transaction needed
        study = conn.execute(_STUDY_FOR_ENTRY, {"slug": slug}).first()
        if study is None:
            raise NotFound(
                "There is no study at this address. Please check the link you were given.", title="Study not found"
            )
        cutoff = utcnow() - dt.timedelta(minutes=study.timeout_minutes)
        seq, existing, counts = _entry_state(conn, study.id, params.pid, cutoff, is_test)
        if existing is not None:
            return str(existing)  # the same PID again: resume, never a second assignment
        if study.status != StudyStatus.ACTIVE and not is_test:  # a preview or pilot may run before activation
            raise _not_active(engine, study.id)
        # the study's minimum window width (viewing.check_screen): a new participant only, before assignment
        viewing.check_screen(study.config, screen)
        decision = _decide(conn, study, counts, rng, test)

    with engine.connect() as conn:
        locked_seq = conn.execute(_LOCK, {"b_id": study.id}).scalar_one()  # takes the study's lock
        if locked_seq != seq + 1:  # someone was assigned since: decide again, now under the lock
            _seq, existing, counts = _entry_state(conn, study.id, params.pid, cutoff, is_test)
            if existing is not None:
                conn.rollback()
                return str(existing)
            decision = _decide(conn, study, counts, rng, test)
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
                status=ACTIVE,
                stage=Stage.CONSENT.value,
                position=0,
                attention_failures=0,
                started_at=now,
                last_seen_at=now,
                is_test=is_test,
                test_kind=test.kind if test is not None else None,
            )
            .returning(P.c.id)
        ).scalar_one()
        conn.execute(insert(T), [{"participant_id": participant_id, **t} for t in decision.trials])
        conn.commit()
        return token

