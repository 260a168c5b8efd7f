"""app.participants.direct on a real PostgreSQL: the hot path's statements run on the pooled psycopg connection.

What it must keep from the SQLAlchemy path: the same rows, connections handed back to the pool as SQLAlchemy's
own transactions expect them (not in autocommit), SQLAlchemy's exceptions (so the retry and the 503 page see a
transient error as one), and a dropped connection replaced rather than handed out again.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest
from sqlalchemy import JSON, Integer, String, TypeDecorator, bindparam, create_engine, exc, func, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.pool import NullPool

from app.db import Database, is_transient, normalize_url
from app.models import Participant
from app.models.base import utcnow
from app.participants import assignment, direct, pages, slots
from app.participants import statements as q
from app.participants.slots import SL
from app.participants.tables import P, T
from app.prolific import EntryParams
from tests.app.participants.test_flow import walk_to_trials

pytestmark = [
    pytest.mark.skipif(
        "postgresql" not in os.environ.get("LPSTUDY_TEST_BACKENDS", "sqlite,postgresql"),
        reason="PostgreSQL is not among the test backends",
    ),
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


def _token(client, db: Database, make_study, new_pid) -> str:  # type: ignore[no-untyped-def]
    make_study(db, trials=5)
    url = walk_to_trials(client, "test-study", new_pid())
    return str(url.rsplit("/", 1)[1])


def test_rows_are_the_ones_sqlalchemy_returns(client, db: Database, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    token = _token(client, db, make_study, new_pid)
    run = direct.for_engine(db.engine)
    assert direct.for_engine(db.engine) is run
    old = utcnow() - dt.timedelta(hours=1)
    # the page statement writes (shown_at, last_seen_at) only once, so compare on a statement that only reads
    # first, then check the page statement's writes and row against what the database then holds
    with db.engine.connect() as conn:
        want = conn.execute(q.ANSWER, {"token": token, "position": 0}).first()
    got = run.first(q.ANSWER, {"token": token, "position": 0})
    assert want is not None and got is not None
    assert tuple(got) == tuple(want) and got._fields == tuple(want._mapping.keys())
    assert got.trial_id is not None and got.total == 5

    row = run.first(q.PAGE_PG, {"b_token": token, "b_now": old, "b_touch_before": old})
    assert (row.stage, row.position, row.trial_id, row.total) == ("trials", 0, got.trial_id, 5)
    assert row.last_seen_at.tzinfo is not None  # timestamptz comes back aware, as through SQLAlchemy
    with db.engine.connect() as conn:
        shown = conn.execute(text("SELECT shown_at FROM trials WHERE id = :i"), {"i": row.trial_id}).scalar()
    assert shown == old
    assert run.first(q.PAGE_PG, {"b_token": "no-such-token", "b_now": old, "b_touch_before": old}) is None


def test_connections_go_back_to_the_pool_out_of_autocommit(client, db: Database, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    token = _token(client, db, make_study, new_pid)
    run = direct.for_engine(db.engine)
    run.first(q.ANSWER, {"token": token, "position": 0})
    with pytest.raises(exc.DBAPIError):  # an error inside the statement
        run.first(select(func.sqrt(literal(-1.0))), {})
    # the same pooled connection(s) now run a SQLAlchemy transaction: a rollback must undo its write
    for _ in range(3):
        with db.engine.connect() as conn:
            assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
            tx = conn.begin()
            conn.execute(P.update().where(P.c.token == token).values(age=77))
            tx.rollback()
    with db.session() as s:
        assert s.scalar(select(Participant.age).where(Participant.token == token)) is None


def test_errors_are_sqlalchemy_errors_and_a_dropped_connection_is_replaced(client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    token = _token(client, db, make_study, new_pid)
    run = direct.for_engine(db.engine)
    pid = run.first(select(func.pg_backend_pid()), {})[0]
    other = create_engine(normalize_url(db.settings.database_url), poolclass=NullPool)
    with other.connect() as conn:  # the server drops the pooled connection, as a restart would
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar() is True
    other.dispose()
    with pytest.raises(exc.OperationalError) as caught:
        run.first(q.ANSWER, {"token": token, "position": 0})
    assert caught.value.connection_invalidated and is_transient(caught.value)
    # the dead connection was not put back: the next call gets a live one
    assert run.first(q.ANSWER, {"token": token, "position": 0}).stage == "trials"
    assert run.first(select(func.pg_backend_pid()), {})[0] != pid


def test_missing_parameters_and_statements_it_cannot_run_are_refused(db: Database) -> None:
    run = direct.for_engine(db.engine)
    with pytest.raises(exc.ArgumentError, match="b_token"):
        run.first(q.PAGE_PG, {"b_now": utcnow(), "b_touch_before": utcnow()})
    expanding = select(literal(1)).where(literal(2).in_(bindparam("xs", expanding=True)))  # rendered per call
    with pytest.raises(ValueError, match="rendered per call"):
        run.first(expanding, {"xs": [1, 2]})
    defaulted = P.insert().values(token=bindparam("t")).returning(P.c.id)  # is_test's default is SQLAlchemy's
    with pytest.raises(ValueError, match=r"column defaults.*is_test"):
        run.first(defaulted, {"t": "x"})
    with pytest.raises(ValueError, match="result processing"):
        run.first(select(literal("x", type_=_Upper).label("x")), {})


class _Upper(TypeDecorator[str]):
    impl = String
    cache_ok = True

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        return value.upper()


def test_bind_processors_are_applied_as_sqlalchemy_applies_them(db: Database) -> None:
    run = direct.for_engine(db.engine)
    # JSON and ARRAY parameters are converted by their types' bind processors, given and constant alike
    xs = func.array_to_string(bindparam("xs", type_=ARRAY(Integer)), ",", "null", type_=String)
    doc = select(bindparam("doc", type_=JSON)["a"].as_integer().label("a"), xs.label("xs"))
    row = run.first(doc, {"doc": {"a": 7}, "xs": [1, None, 3]})
    assert tuple(row) == (7, "1,null,3")
    const = select(literal({"b": [1, 2]}, type_=JSON)["b"][1].as_integer().label("b"))
    assert run.first(const, {}).b == 2


def test_a_transaction_commits_when_its_block_ends_and_rolls_back_when_it_raises(
    client, db: Database, make_study, new_pid  # type: ignore[no-untyped-def]
) -> None:
    token = _token(client, db, make_study, new_pid)
    run = direct.for_engine(db.engine)
    set_age = P.update().where(P.c.token == bindparam("t")).values(age=bindparam("a")).returning(P.c.age)
    with run.transaction() as tx:
        assert tx.first(set_age, {"t": token, "a": 41}).age == 41
        with db.engine.connect() as other:  # not visible before the commit
            assert other.execute(select(P.c.age).where(P.c.token == token)).scalar() is None
    with db.engine.connect() as conn:
        assert conn.execute(select(P.c.age).where(P.c.token == token)).scalar() == 41

    with pytest.raises(RuntimeError), run.transaction() as tx:
        tx.run(set_age, {"t": token, "a": 52})
        raise RuntimeError("the caller's own error")
    with pytest.raises(exc.DBAPIError), run.transaction() as tx:
        tx.run(set_age, {"t": token, "a": 63})
        tx.all(select(func.sqrt(literal(-1.0))), {})  # fails inside the transaction
    # neither write is there, and the pooled connections are clean (not in a failed transaction, not autocommit)
    for _ in range(3):
        with db.engine.connect() as conn:
            assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
            assert conn.execute(select(P.c.age).where(P.c.token == token)).scalar() == 41


def test_a_connection_dropped_in_a_transaction_is_replaced(client, db: Database, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    token = _token(client, db, make_study, new_pid)
    run = direct.for_engine(db.engine)
    other = create_engine(normalize_url(db.settings.database_url), poolclass=NullPool)
    with pytest.raises(exc.OperationalError) as caught, run.transaction() as tx:
        pid = tx.first(select(func.pg_backend_pid()), {})[0]
        with other.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar() is True
        tx.first(q.ANSWER, {"token": token, "position": 0})
    other.dispose()
    assert caught.value.connection_invalidated and is_transient(caught.value)
    with run.transaction() as tx:
        assert tx.first(select(func.pg_backend_pid()), {})[0] != pid
        assert [r.stage for r in tx.all(q.ANSWER, {"token": token, "position": 0})] == ["trials"]


def test_entries_on_postgresql_use_the_direct_path(client, db: Database, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    make_study(db, trials=5)
    pid = new_pid()
    first = assignment.enter(db.engine, "test-study", EntryParams(pid, "s", "x"))
    assert assignment.enter(db.engine, "test-study", EntryParams(pid, "s", "x")) == first  # the same PID resumes
    compiled = direct.for_engine(db.engine)._compiled
    assert {id(assignment._STUDY_FOR_ENTRY), id(slots.PICK_PG), id(assignment.INSERT_MANY_PG)} <= set(compiled)
    with db.engine.connect() as conn:
        row = conn.execute(select(P.c.id, P.c.stage, P.c.is_test).where(P.c.token == first)).one()
        held = conn.execute(select(func.count()).select_from(SL).where(SL.c.participant_id == row.id)).scalar()
        trials = conn.execute(select(func.count()).select_from(T).where(T.c.participant_id == row.id)).scalar()
    assert (row.stage, row.is_test, held, trials) == ("consent", False, 1, 5)
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(P).where(P.c.prolific_pid == pid)).scalar_one() == 1


def test_page_view_on_postgresql_uses_the_direct_path(client, db: Database, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    token = _token(client, db, make_study, new_pid)
    state = pages.current_page(db.engine, pages.StudyCache(), token)
    assert state.stage == "trials" and state.trial is not None and state.total_trials == 5
    assert id(q.PAGE_PG) in direct.for_engine(db.engine)._compiled


def test_a_page_view_commits_without_waiting_for_the_flush_and_only_itself(
    client, db: Database, make_study, new_pid  # type: ignore[no-untyped-def]
) -> None:
    token = _token(client, db, make_study, new_pid)
    run = direct.for_engine(db.engine)
    # the page statement reads its setting from the async_commit CTE, which applies to its own transaction only
    assert "FROM p JOIN async_commit ON true" in run.compiled(q.PAGE_PG).sql
    inside = select(func.current_setting("synchronous_commit")).select_from(q._async_commit)
    assert run.first(inside, {})[0] == "off"
    for _ in range(3):  # and on the pooled connections afterwards, through Direct or SQLAlchemy
        assert run.first(select(func.current_setting("synchronous_commit")), {})[0] == "on"
        with db.engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"
    # the page view's write is committed (another connection sees it), and the answer is stored as usual
    old = utcnow() - dt.timedelta(hours=1)
    row = run.first(q.PAGE_PG, {"b_token": token, "b_now": old, "b_touch_before": utcnow()})
    with db.engine.connect() as conn:
        seen = conn.execute(select(P.c.last_seen_at).where(P.c.token == token)).scalar()
        shown = conn.execute(text("SELECT shown_at FROM trials WHERE id = :i"), {"i": row.trial_id}).scalar()
    assert seen == old and shown is not None
