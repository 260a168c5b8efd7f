"""Entry and assignment: a PID's participant, or a new one in the least-filled condition with its trials.

Assignment claims a slot (app.models.assignment; the slots' statements are in app.participants.slots): every
condition has one slot per rank up to its target, and an entry takes the free slot with the lowest (rank,
tiebreak). Taking ranks in order is "least-filled first, random tie-break": the conditions stay within one
participant of each other and never pass their targets, across any number of server processes. On PostgreSQL the
claim is ``FOR UPDATE SKIP LOCKED``, so simultaneous entries each take a different slot and none waits for another
(the old design queued every entry of a study on one row lock). SQLite has one writer anyway: there the entry
takes the writer lock first and then claims.

A slot is free when nobody holds it or its holder no longer fills it: completed and recently active participants
fill their slot; one who timed out, declined consent or failed the attention checks does not, and the next
entrant takes the slot over. A participant who comes back after timing out resumes in their own condition (the
PID is looked up first), without a slot.

Test participants (an admin's preview, `lpstudy bots`; participants.pilots) never hold a slot, so they never
count toward a target. They are assigned apart, in any study status: least-filled among test participants (or
the one condition a preview asks for), with no target, the n-th of a condition getting the n-th block of images.

Stimuli: the participant at rank r gets the r-th block of `trials_per_participant` images of the condition's pool
in a fixed pseudo-random order (wrapping around), shown in a random order of their own. Every image is then given
the same number of times, within one, with no counting query on the hot path; a taken-over slot gives its block
to the new holder, as the old holder's exposures no longer count.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Integer,
    String,
    any_,
    bindparam,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import BadRequest, NotFound, StudyUnavailable
from app.models import Stage, Study, StudyStatus
from app.models.base import utcnow
from app.participants import blocks, direct, slots, viewing
from app.participants.pilots import EntryGrant
from app.participants.slots import SL
from app.participants.tables import ACTIVE, ST, C, P, T, autocommit, entry_rng, new_token
from app.prolific import EntryParams

_EXISTING = select(P.c.token).where(P.c.study_id == bindparam("study_id"), P.c.prolific_pid == bindparam("pid"))
# The study and this PID's participant, if any, in one round trip.
_STUDY_COLUMNS = (ST.c.id, ST.c.status, ST.c.trials_per_participant, ST.c.attention, ST.c.timeout_minutes, ST.c.config)
_STUDY_FOR_ENTRY = select(
    *_STUDY_COLUMNS,
    select(P.c.token)
    .where(P.c.study_id == ST.c.id, P.c.prolific_pid == bindparam("pid"))
    .correlate(ST)
    .scalar_subquery()
    .label("existing"),
).where(ST.c.slug == bindparam("slug"))
# The study alone (a batch of entries looks up its PIDs with EXISTING_MANY).
STUDY_BY_SLUG = select(*_STUDY_COLUMNS).where(ST.c.slug == bindparam("slug"))
EXISTING_MANY = select(P.c.prolific_pid, P.c.token).where(
    P.c.study_id == bindparam("study_id", type_=Integer),
    P.c.prolific_pid == any_(bindparam("pids", type_=ARRAY(String))),
)



def no_study() -> NotFound:
    return NotFound("There is no study at this address. Please check the link you were given.", title="Study not found")


def full() -> StudyUnavailable:
    return StudyUnavailable(
        "This study has all the participants it needs. Thank you for your interest. "
        "Please return the study on Prolific.",
        reason="full",
    )


def not_active(engine: Engine, study_id: int) -> StudyUnavailable:
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


def _unnest(name: str, *columns: tuple[str, Any]) -> Any:
    """unnest(one array parameter per column) AS name(columns): rows passed as arrays, one per column."""
    return (
        func.unnest(*(bindparam(f"b_{c}", type_=ARRAY(t)) for c, t in columns))
        .table_valued(*(c for c, _ in columns), name=name)
        .render_derived()
    )


def _build_insert_many_pg() -> Any:
    """One prebuilt (so compiled once) statement for n new participants: WITH ins AS (INSERT the participants FROM
    unnest(their columns) RETURNING id, token), give AS (UPDATE each one's slot) INSERT INTO trials SELECT ins.id,
    t.* FROM ins JOIN unnest(the trials' columns) t ON the token."""
    now = bindparam("b_now", type_=P.c.last_seen_at.type)
    people = _unnest(
        "u", ("condition", Integer), ("token", String), ("pid", String), ("psid", String), ("pssid", String)
    )
    ins = (
        insert(P)
        .from_select(
            [
                "study_id", "condition_id", "token", "prolific_pid", "prolific_study_id", "prolific_session_id",
                "status", "stage", "position", "attention_failures", "started_at", "last_seen_at", "is_test",
            ],  # fmt: skip
            select(
                bindparam("b_study", type_=Integer),
                people.c.condition,
                people.c.token,
                people.c.pid,
                people.c.psid,
                people.c.pssid,
                literal(ACTIVE, type_=P.c.status.type),
                literal(Stage.CONSENT.value, type_=P.c.stage.type),
                literal(0, type_=Integer),
                literal(0, type_=Integer),
                now,
                now,
                literal(False, type_=Boolean),
            ),
        )
        .returning(P.c.id, P.c.token)
        .cte("ins")
    )
    held = _unnest("s", ("slot_token", String), ("slot", Integer))
    give = (
        update(SL)
        .where(SL.c.id == held.c.slot, held.c.slot_token == ins.c.token)
        .values(participant_id=ins.c.id)
        .returning(SL.c.id)
        .cte("give")
    )
    rows = _unnest(
        "t", ("t_token", String), ("position", Integer), ("stimulus_id", Integer), ("kind", String),
        ("expected_label", Integer),
    )  # fmt: skip
    return (
        insert(T)
        .from_select(
            ["participant_id", "position", "stimulus_id", "kind", "expected_label"],
            select(ins.c.id, rows.c.position, rows.c.stimulus_id, rows.c.kind, rows.c.expected_label).select_from(
                ins.join(rows, rows.c.t_token == ins.c.token)
            ),
        )
        .add_cte(give)
    )


INSERT_MANY_PG = _build_insert_many_pg()
_TRIAL_KEYS = ("position", "stimulus_id", "kind", "expected_label")  # blocks.block's trials, as INSERT_MANY_PG's arrays


def _existing(engine: Engine, study_id: int, pid: str) -> str | None:
    with autocommit(engine) as conn:
        token = conn.execute(_EXISTING, {"study_id": study_id, "pid": pid}).scalar()
    return None if token is None else str(token)


def _insert_participant(
    conn: Connection, study_id: int, condition_id: int, params: EntryParams, trials: list[dict[str, Any]], **extra: Any
) -> tuple[str, int]:
    """A new participant at the consent page and their trials (SQLite's claim, and test participants on both
    backends; PostgreSQL's claim does the same in one statement, INSERT_MANY_PG). Returns (token, id)."""
    now = utcnow()
    token = new_token()
    participant_id = conn.execute(
        insert(P)
        .values(
            study_id=study_id,
            condition_id=condition_id,
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
            **extra,
        )
        .returning(P.c.id)
    ).scalar_one()
    conn.execute(insert(T), [{"participant_id": participant_id, **t} for t in trials])
    return token, participant_id


def _claim(engine: Engine, study: Any, params: EntryParams, cutoff: dt.datetime, rng: random.Random) -> str | None:
    """One attempt: claim a slot, create the participant and their trials, give them the slot; one transaction.
    None when no slot is free."""
    if engine.dialect.name == "postgresql":
        return claim_pg(engine, study, [params], cutoff, rng).get(params.pid)
    with engine.connect() as conn:
        conn.execute(slots.WRITER_LOCK, {"b_id": study.id})
        found = conn.execute(slots.PICK, {"study_id": study.id, "cutoff": cutoff}).all()
        slot = min(found, key=lambda r: (r.rank, r.tiebreak), default=None)
        if slot is None:
            conn.rollback()
            return None
        trials = blocks.trials(conn, study, slot.condition_id, slot.rank, rng)
        token, participant_id = _insert_participant(conn, study.id, slot.condition_id, params, trials)
        conn.execute(slots.GIVE, {"b_slot": slot.id, "b_participant": participant_id})
        conn.commit()
        return token


def claim_pg(
    engine: Engine, study: Any, people: list[EntryParams], cutoff: dt.datetime, rng: random.Random
) -> dict[str, str]:
    """_claim on PostgreSQL, for one entry or a batch (app.participants.batch): the lowest free slots, at most one
    per entry (SKIP LOCKED), then every claimed entry's participant, trials and slot in one statement; two round
    trips and the commit, on the pooled connection directly (app.participants.direct). The first len(result)
    entries are claimed (PID -> token); the lowest slots are the ones the same entries one after another take."""
    with direct.for_engine(engine).transaction() as tx:
        found = tx.all(slots.PICK_PG, {"study_id": study.id, "cutoff": cutoff, "n": len(people)})
        taken = sorted(found, key=lambda r: (r.rank, r.tiebreak))[: len(people)]
        if not taken:
            return {}
        cols: dict[str, list[Any]] = {k: [] for k in ("condition", "token", "pid", "psid", "pssid", "slot")}
        trial_cols: dict[str, list[Any]] = {k: [] for k in ("t_token", *_TRIAL_KEYS)}
        tokens: dict[str, str] = {}
        for params, slot in zip(people, taken, strict=False):
            token = tokens[params.pid] = new_token()
            for k, v in (
                ("condition", slot.condition_id), ("token", token), ("pid", params.pid),
                ("psid", params.study_id), ("pssid", params.session_id), ("slot", slot.id),
            ):  # fmt: skip
                cols[k].append(v)
            for t in blocks.block_for(tx, study, slot.condition_id, slot.rank, rng):
                trial_cols["t_token"].append(token)
                for k in _TRIAL_KEYS:
                    trial_cols[k].append(t[k])
        slot_ids = cols.pop("slot")
        tx.run(
            INSERT_MANY_PG,
            {
                "b_study": study.id,
                "b_now": utcnow(),
                "b_slot_token": cols["token"],
                "b_slot": slot_ids,
                **{f"b_{k}": v for k, v in (*cols.items(), *trial_cols.items())},
            },
        )
    return tokens


_TEST_COUNTS = (
    select(C.c.id, C.c.code, func.count(P.c.id))
    .select_from(C.outerjoin(P, (P.c.condition_id == C.c.id) & P.c.is_test.is_(True)))
    .where(C.c.study_id == bindparam("study_id"))
    .group_by(C.c.id, C.c.code)
    .order_by(C.c.id)
)


def _enter_test(engine: Engine, study: Any, params: EntryParams, test: EntryGrant, rng: random.Random) -> str:
    """A test participant: no slot, no target; least-filled among test participants (random tie-break)."""
    with engine.begin() as conn:
        if conn.dialect.name != "postgresql":  # SQLite: the writer lock first, or the INSERT's upgrade may fail
            conn.execute(slots.WRITER_LOCK, {"b_id": study.id})
        counts = [c for c in conn.execute(_TEST_COUNTS, {"study_id": study.id}).all() if test.condition in (None, c[1])]
        if not counts:
            raise BadRequest(f"This study has no condition {test.condition}.", title="Test link not valid")
        least = min(c[2] for c in counts)
        condition_id, _code, n = rng.choice([c for c in counts if c[2] == least])
        trials = blocks.trials(conn, study, condition_id, n, rng)
        token, _ = _insert_participant(conn, study.id, condition_id, params, trials, is_test=True, test_kind=test.kind)
    return token


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
    rng = rng or entry_rng()
    if engine.dialect.name == "postgresql":
        study = direct.for_engine(engine).first(_STUDY_FOR_ENTRY, {"slug": slug, "pid": params.pid})
    else:
        with autocommit(engine) as conn:
            study = conn.execute(_STUDY_FOR_ENTRY, {"slug": slug, "pid": params.pid}).first()
    if study is None:
        raise no_study()
    if study.existing is not None:
        return str(study.existing)  # the same PID again: resume, never a second assignment
    if study.status != StudyStatus.ACTIVE and test is None:  # a preview or pilot may run in any status
        raise not_active(engine, study.id)
    # the study's minimum window width (viewing.check_screen): a new participant only, before assignment
    viewing.check_screen(study.config, screen)
    if test is not None:
        try:
            return _enter_test(engine, study, params, test, rng)
        except IntegrityError:
            token = _existing(engine, study.id, params.pid)
            if token is None:
                raise
            return token
    cutoff = utcnow() - dt.timedelta(minutes=study.timeout_minutes)
    more = True
    while True:
        try:
            token = _claim(engine, study, params, cutoff, rng)
        except IntegrityError:
            # the same PID entered at the same moment elsewhere and won: theirs is the participant
            token = _existing(engine, study.id, params.pid)
            if token is None:
                raise
            return token
        if token is not None:
            return token
        if not more:
            raise full()
        # No free slot: make the next block. If there is none to make (every condition has slots up to its
        # target), claim once more (another entry may have just made the slots this one missed), then it is full.
        more = slots.make_slots(engine, study.id, rng)
