"""Assignment slots: every condition has one slot per rank up to its target; an entry claims the free one with the
lowest (rank, tiebreak) (app.participants.assignment).

This module holds the slots' statements and their making: the pick of the free slot to claim (PICK, and PICK_PG
with SKIP LOCKED, for one entry or a batch), giving a slot to its participant, SQLite's writer lock, and the
blocks of slots made ahead of the entries (SLOT_BLOCK ranks at a time, and the first block when a study opens).
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Connection, Engine, Integer, Table, bindparam, func, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.models import AssignmentSlot, ParticipantStatus
from app.participants.tables import ACTIVE, ST, C, P, entry_rng

SL: Table = AssignmentSlot.__table__  # type: ignore[assignment]
# Slots are made this many ranks ahead of the highest existing one, for every condition at once.
SLOT_BLOCK = 128

# The free slot to claim: the lowest (rank, tiebreak) below the condition's target that nobody holds, or whose
# holder no longer fills it. Each kind of free slot is found by an index of its own, not by walking the slots
# already held (which cost an entry 2.4 ms of PostgreSQL time at 720 participants): slots nobody holds by their
# partial index, slots of holders who declined or failed the checks, or timed out, from the participants'
# (study_id, status, last_seen_at) index. One statement, the lowest of each kind (each locked with SKIP
# LOCKED on PostgreSQL); the entry takes the lowest of them. Every status but active and completed is one that
# no longer fills a slot.
_RELEASED = [s.value for s in ParticipantStatus if s not in (ParticipantStatus.ACTIVE, ParticipantStatus.COMPLETED)]


def _lowest(pg: bool, limit: Any, source: Any, *where: Any) -> Any:
    q = (
        select(SL.c.id, SL.c.condition_id, SL.c.rank, SL.c.tiebreak)
        .select_from(source.join(C, C.c.id == SL.c.condition_id))
        .where(SL.c.rank < C.c.target, *where)
        .order_by(SL.c.rank, SL.c.tiebreak)
        .limit(limit)
    )
    return (q.with_for_update(of=SL, skip_locked=True) if pg else q).subquery()


def _build_pick(pg: bool, limit: Any) -> Any:
    held = SL.join(P, P.c.id == SL.c.participant_id)
    study = bindparam("study_id", type_=Integer)
    arms = [
        _lowest(pg, limit, SL, SL.c.study_id == study, SL.c.participant_id.is_(None)),
        # one arm per status: an equality is always a condition of the index scan, where an IN list can end up
        # a filter over every participant of the study when the table's statistics are stale (a launch burst)
        *(_lowest(pg, limit, held, P.c.study_id == study, P.c.status == status) for status in _RELEASED),
        _lowest(
            pg,
            limit,
            held,
            P.c.study_id == study,
            P.c.status == ACTIVE,
            P.c.last_seen_at < bindparam("cutoff", type_=P.c.last_seen_at.type),
        ),
    ]
    return union_all(*(select(arm) for arm in arms))


PICK = _build_pick(pg=False, limit=1)
# PostgreSQL: for `n` entries at once (one, or a batch: app.participants.batch), the lowest `n` free slots of each
# kind; the claim takes the lowest `n` of them, the slots that `n` entries one after another would have taken.
PICK_PG = _build_pick(pg=True, limit=bindparam("n", type_=Integer))
# SQLite: the one writer lock, taken before the pick so that two entries cannot pick the same slot.
WRITER_LOCK = update(ST).where(ST.c.id == bindparam("b_id")).values(assignment_seq=ST.c.assignment_seq + 1)
GIVE = update(SL).where(SL.c.id == bindparam("b_slot")).values(participant_id=bindparam("b_participant"))
SLOT_STATE = (
    select(C.c.id, C.c.target, func.coalesce(func.max(SL.c.rank) + 1, 0))
    .select_from(C.outerjoin(SL, SL.c.condition_id == C.c.id))
    .where(C.c.study_id == bindparam("study_id"))
    .group_by(C.c.id, C.c.target)
)


def make_slots(engine: Engine, study_id: int, rng: random.Random) -> bool:
    """Make the next block of slots (every condition up to the same rank, capped by its target), in one
    transaction. False when every condition already has slots up to its target. Safe to run concurrently: a
    rank that exists already is skipped, and each run leaves every condition at a common rank bound."""
    with engine.begin() as conn:
        return add_slot_block(conn, study_id, rng)


def add_slot_block(conn: Connection, study_id: int, rng: random.Random) -> bool:
    """make_slots in the caller's transaction."""
    state = conn.execute(SLOT_STATE, {"study_id": study_id}).all()
    if not state:
        return False
    bound = max(made for _cid, _target, made in state) + SLOT_BLOCK
    rows = [
        {"study_id": study_id, "condition_id": cid, "rank": rank, "tiebreak": rng.randrange(1 << 30)}
        for cid, target, made in state
        for rank in range(made, min(target, bound))
    ]
    if not rows:
        return False
    keys = ["condition_id", "rank"]
    if conn.dialect.name == "postgresql":
        conn.execute(pg_insert(SL).on_conflict_do_nothing(index_elements=keys), rows)
    else:
        conn.execute(sqlite_insert(SL).on_conflict_do_nothing(index_elements=keys), rows)
    return True


def open_slots(session: Session, study_id: int) -> None:
    """The first block of slots, made when a study opens (activation, resume) in the session's transaction, so
    that the launch burst's first entries find slots waiting instead of all making the same block at once (each
    such insert waits on the others' uncommitted rows)."""
    add_slot_block(session.connection(), study_id, entry_rng())
