"""The prebuilt SQL of the page state machine, in its two dialects.

A page view is one SELECT that joins the participant, the current trial and its stimulus, then at most two
conditional UPDATEs, in autocommit (each UPDATE is a single statement, atomic on its own). An answer is that
SELECT plus two UPDATEs in one transaction. On PostgreSQL both are single statements with data-modifying CTEs
(`PAGE_PG`, `ANSWER_ONE_PG`); an answer whose label or confidence is malformed is only read (`ANSWER`), to say why.
Statements are built once at import, so their SQL and cache keys are computed once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, case, exists, func, literal_column, select, true, update

from app.models import Stage
from app.participants.tables import ST, TRIALS, P, S, T


def trial_count() -> Any:
    t2 = T.alias("t2")
    return select(func.count()).select_from(t2).where(t2.c.participant_id == P.c.id).correlate(P).scalar_subquery()


# SQLite: the participant, the trial at their position and its stimulus, and (on trial pages) the number of
# trials.
PAGE = (
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
        case((P.c.stage == TRIALS, trial_count()), else_=None).label("total"),
        P.c.test_kind,
    )
    .select_from(
        P.outerjoin(
            T, and_(P.c.stage == TRIALS, T.c.participant_id == P.c.id, T.c.position == P.c.position)
        ).outerjoin(S, S.c.id == T.c.stimulus_id)
    )
    .where(P.c.token == bindparam("token"))
)


# SQLite: the page view's and the answer's UPDATEs as separate statements.
TOUCH = (
    update(P).where(P.c.id == bindparam("b_id")).values(last_seen_at=bindparam("b_now", type_=P.c.last_seen_at.type))
)
SHOWN = (
    update(T)
    .where(T.c.id == bindparam("b_id"), T.c.shown_at.is_(None))
    .values(shown_at=bindparam("b_now", type_=T.c.shown_at.type))
)


def _touched() -> Any:
    """last_seen_at after an answer: `b_now` when it is older than `b_touch_before` (tables.TOUCH_INTERVAL_S),
    else as it was."""
    ts = P.c.last_seen_at.type
    stale = P.c.last_seen_at < bindparam("b_touch_before", type_=ts)
    return case((stale, bindparam("b_now", type_=ts)), else_=P.c.last_seen_at)


ADVANCE_TRIAL = (
    update(P)
    .where(P.c.id == bindparam("b_id"), P.c.stage == TRIALS, P.c.position == bindparam("b_pos"))
    .values(
        position=bindparam("b_next", type_=P.c.position.type),
        stage=bindparam("b_stage", type_=P.c.stage.type),
        attention_failures=P.c.attention_failures + bindparam("b_fail", type_=P.c.attention_failures.type),
        last_seen_at=_touched(),
    )
)
STORE_ANSWER = (
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
    select(P.c.id, P.c.study_id, P.c.stage, P.c.status, P.c.position, P.c.last_seen_at, P.c.test_kind)
    .where(P.c.token == bindparam("b_token"))  # not "token": a parameter named like a column joins the UPDATEs' SET
    .cte("p")
)
_t2 = T.alias("t2")
# A page view's writes (shown_at, last_seen_at) commit without waiting for the WAL flush: set_config(..., true)
# turns synchronous_commit off for this statement's own transaction only. They are not answers: an answer commits
# synchronously, and as the WAL is written in order, its flush makes every earlier page view durable too; what a
# crash of the database server can lose is a page view of the last ~0.6 s (3 x wal_writer_delay), and then
# shown_at is set again by the next view of that page, or by the answer (STORE_ANSWER, ANSWER_ONE_PG: coalesce).
# A page view was one of a trial's two WAL flushes.
_async_commit = select(func.set_config("synchronous_commit", "off", True).label("off")).cte("async_commit")
PAGE_PG = (
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
                _p.c.stage == TRIALS,
                select(func.count())
                .select_from(_t2)
                .where(_t2.c.participant_id == _p.c.id)
                .correlate(_p)
                .scalar_subquery(),
            ),
            else_=None,
        ).label("total"),
        _p.c.test_kind,
    )
    .select_from(
        _p.join(_async_commit, true())  # referenced, or PostgreSQL would not evaluate it
        .outerjoin(T, and_(_p.c.stage == TRIALS, T.c.participant_id == _p.c.id, T.c.position == _p.c.position))
        .outerjoin(S, S.c.id == T.c.stimulus_id)
    )
    # mark the current trial shown (once), and refresh last_seen_at when it is older than TOUCH_INTERVAL_S
    .add_cte(
        update(T)
        .where(
            T.c.participant_id == _p.c.id,
            T.c.position == _p.c.position,
            _p.c.stage == TRIALS,
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


# The participant and the trial at the position the answer is for, with the number of trials (both dialects).
ANSWER = (
    select(
        P.c.id,
        P.c.study_id,
        P.c.stage,
        P.c.position,
        T.c.id.label("trial_id"),
        T.c.kind,
        T.c.expected_label,
        trial_count().label("total"),
    )
    .select_from(P.outerjoin(T, and_(T.c.participant_id == P.c.id, T.c.position == bindparam("position"))))
    .where(P.c.token == bindparam("token"))
)


STAGE_OF = select(P.c.stage).where(P.c.token == bindparam("token"))
DEMOGRAPHICS = select(P.c.id, P.c.study_id, P.c.stage, P.c.attention_failures).where(P.c.token == bindparam("token"))


# PostgreSQL: an answer in one statement, SELECT and both UPDATEs, for a label and confidence already known to be
# well-formed (app.participants.answers checks the label against the study here: `b_label < n_labels`). The
# participant moves only if they are in their trials at `b_pos`, that trial exists and the label is one of the
# study's; the answer is stored only if they moved and it was not stored before. The row is the participant and
# trial as they were before the statement (one snapshot), with `advanced` 1 or 0, so a refusal can be explained.
_pa = (
    select(P.c.id, P.c.study_id, P.c.stage, P.c.position)
    .where(P.c.token == bindparam("b_token"))
    .cte("pa")
)
_pid = select(_pa.c.id).scalar_subquery()
_ta = (
    select(T.c.id, T.c.kind, T.c.expected_label)
    .where(T.c.participant_id == _pid, T.c.position == bindparam("b_pos"))
    .cte("ta")
)
_t3 = T.alias("t3")
_n_trials = select(func.count()).select_from(_t3).where(_t3.c.participant_id == _pid).scalar_subquery()
_n_labels = (
    select(func.json_array_length(ST.c.labels))
    .where(ST.c.id == select(_pa.c.study_id).scalar_subquery())
    .scalar_subquery()
)
_label = bindparam("b_label", type_=T.c.response_label.type)
_moved = (
    update(P)
    .where(
        P.c.id == _pa.c.id,
        P.c.stage == TRIALS,
        P.c.position == bindparam("b_pos"),
        _ta.c.id.is_not(None),
        _label < _n_labels,
    )
    .values(
        position=bindparam("b_pos") + 1,
        stage=case((bindparam("b_pos") + 1 >= _n_trials, Stage.DEMOGRAPHICS.value), else_=TRIALS),
        attention_failures=P.c.attention_failures
        + case((and_(_ta.c.kind == "attention", _ta.c.expected_label.is_distinct_from(_label)), 1), else_=0),
        last_seen_at=_touched(),
    )
    .returning(P.c.id)
    .cte("moved")
)
_stored = (
    update(T)
    .where(T.c.id == _ta.c.id, T.c.answered_at.is_(None), exists(select(_moved.c.id)))
    .values(
        response_label=_label,
        confidence=bindparam("b_conf", type_=T.c.confidence.type),
        rt_ms=bindparam("b_rt", type_=T.c.rt_ms.type),
        answered_at=bindparam("b_now", type_=_NOW),
        shown_at=func.coalesce(T.c.shown_at, bindparam("b_now", type_=_NOW)),
    )
    .returning(T.c.id)
    .cte("stored")
)
ANSWER_ONE_PG = (
    select(
        _pa.c.id,
        _pa.c.study_id,
        _pa.c.stage,
        _pa.c.position,
        _ta.c.id.label("trial_id"),
        _ta.c.kind,
        _n_labels.label("n_labels"),
        select(func.count()).select_from(_moved).scalar_subquery().label("advanced"),
    )
    .select_from(_pa.outerjoin(_ta, literal_column("true")))
    .add_cte(_stored)
)
