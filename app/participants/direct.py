"""The hot path's PostgreSQL statements, compiled once and run on the pooled psycopg connection directly.

A page view and an answer are one prebuilt Core statement each (app.participants.statements). Run through a
SQLAlchemy `Connection`, each still pays for the connection wrapper, the AUTOCOMMIT execution option, the
compiled-statement look-up and parameter construction, and a `CursorResult` whose metadata asks psycopg to build
its `description`: a profile of the participant walk put that at about 15% of the process's CPU, more than
psycopg's own execution. Here the statement is compiled once for the engine's dialect, its SQL and its constant
parameters are kept (the types' bind processors applied as SQLAlchemy applies them), and each call takes a
connection from the same pool (same checkout events, so the idle ping still applies), runs the SQL in autocommit
and reads plain tuples into a named tuple. A first entry's claim (app.participants.assignment) is several
statements in one transaction: `transaction()` runs them on one pooled connection and commits at the end.

The statements stay the same Core objects (written once, in statements.py); only how they are executed differs.
Errors are SQLAlchemy's: a psycopg error is wrapped as SQLAlchemy would wrap it (`DBAPIError.instance`), and a
disconnect invalidates the pooled connection, so `app.db.is_transient`, the retry and the 503 page behave as on
the SQLAlchemy path.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, exc
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

R = TypeVar("R")


class Compiled:
    """One statement compiled for one dialect: its SQL, constant parameters, required names and row type."""

    def __init__(self, stmt: ClauseElement, engine: Engine) -> None:
        compiled = stmt.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.escaped_bind_names or "POSTCOMPILE" in compiled.string:
            raise ValueError("statement needs its SQL rendered per call; run it through SQLAlchemy")
        if compiled.insert_prefetch or compiled.update_prefetch:  # computed by SQLAlchemy's execution context
            names = sorted(c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch))
            raise ValueError(f"statement leaves Python-side column defaults to SQLAlchemy ({names}); set them")
        self.sql: str = compiled.string
        binds = {name: bp for bp, name in compiled.bind_names.items()}
        # the types' bind processors (an ARRAY's list conversion, a Boolean default's), as SQLAlchemy applies them:
        # once for the constants, on each call for the parameters given
        processors: dict[str, Any] = dict(compiled._bind_processors)
        self.constants = {
            name: processors[name](bp.value) if name in processors else bp.value
            for name, bp in binds.items()
            if not bp.required
        }
        self.required = frozenset(name for name, bp in binds.items() if bp.required)
        self.processors = {name: fn for name, fn in processors.items() if name in self.required}
        names = [col[0] for col in compiled._result_columns]
        self.row: Any = namedtuple("Row", names, rename=True) if names else None  # type: ignore[misc]
        if any(col[3]._cached_result_processor(engine.dialect, None) for col in compiled._result_columns):
            raise ValueError("statement needs result processing; run it through SQLAlchemy")

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        missing = self.required - given.keys()
        if missing:
            raise exc.ArgumentError(f"missing parameters: {sorted(missing)}")
        bound = {**self.constants, **given}
        for name, fn in self.processors.items():
            bound[name] = fn(bound[name])
        return bound


class Direct:
    """Runs compiled statements for one engine, in autocommit, on its pool's connections."""

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)  # not a strong reference: for_engine's cache is keyed by the engine
        self._compiled: dict[int, tuple[ClauseElement, Compiled]] = {}

    @property
    def engine(self) -> Engine:
        engine = self._engine()
        assert engine is not None, "the engine is gone"
        return engine

    def compiled(self, stmt: ClauseElement) -> Compiled:
        hit = self._compiled.get(id(stmt))
        if hit is None or hit[0] is not stmt:
            hit = self._compiled[id(stmt)] = (stmt, Compiled(stmt, self.engine))
        return hit[1]

    def first(self, stmt: ClauseElement, params: Mapping[str, Any]) -> Any:
        """The statement's first row (a named tuple), or None; the statement commits on its own (autocommit)."""
        fairy = _checkout(self.engine)
        try:
            conn = fairy.driver_connection
            conn.autocommit = True  # type: ignore[union-attr]
            try:
                return _execute(self, fairy, stmt, params, _first)
            finally:
                if not conn.closed:  # type: ignore[union-attr]
                    conn.autocommit = False  # type: ignore[union-attr]
        finally:
            _check_in(fairy)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Statements in one transaction on one pooled connection: committed when the block ends, rolled back
        when it raises (the pool's reset on return rolls back whatever a failed block left)."""
        fairy = _checkout(self.engine)
        try:
            tx = Transaction(self, fairy)
            yield tx
            tx.commit()
        finally:
            _check_in(fairy)


class Transaction:
    """One transaction of Direct's: first, all and run take the same statements and parameters as Direct.first."""

    def __init__(self, direct: Direct, fairy: PoolProxiedConnection) -> None:
        self._direct = direct
        self._fairy = fairy

    @property
    def engine(self) -> Engine:
        return self._direct.engine

    def first(self, stmt: ClauseElement, params: Mapping[str, Any]) -> Any:
        return _execute(self._direct, self._fairy, stmt, params, _first)

    def all(self, stmt: ClauseElement, params: Mapping[str, Any]) -> list[Any]:
        return _execute(self._direct, self._fairy, stmt, params, _all)  # type: ignore[no-any-return]

    def run(self, stmt: ClauseElement, params: Mapping[str, Any]) -> None:
        _execute(self._direct, self._fairy, stmt, params, _none)

    def commit(self) -> None:
        _wrapped(self._direct.engine, self._fairy, "COMMIT", None, self._fairy.driver_connection.commit)  # type: ignore[union-attr]


def _first(c: Compiled, cur: Any) -> Any:
    row = cur.fetchone()
    return row if row is None or c.row is None else c.row._make(row)


def _all(c: Compiled, cur: Any) -> list[Any]:
    rows = cur.fetchall()
    return rows if c.row is None else [c.row._make(r) for r in rows]


def _none(c: Compiled, cur: Any) -> None:
    return None


def _checkout(engine: Engine) -> PoolProxiedConnection:
    error = engine.dialect.loaded_dbapi.Error
    try:
        return engine.raw_connection()
    except error as e:  # the server is down or refusing: as Engine.connect() would raise it
        raise exc.DBAPIError.instance(None, None, e, error, dialect=engine.dialect) from e


def _check_in(fairy: PoolProxiedConnection) -> None:
    conn = fairy.driver_connection
    if conn is not None and conn.autocommit:  # type: ignore[attr-defined]
        fairy.invalidate()  # never hand a connection in autocommit back to the pool
    fairy.close()


def _execute(
    direct: Direct, fairy: PoolProxiedConnection, stmt: ClauseElement, params: Mapping[str, Any], fetch: Any
) -> Any:
    c = direct.compiled(stmt)
    bound = c.params(params)

    def run() -> Any:
        with fairy.driver_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(c.sql, bound)
            return fetch(c, cur)

    return _wrapped(direct.engine, fairy, c.sql, bound, run)


def _wrapped(engine: Engine, fairy: PoolProxiedConnection, sql: str, bound: Any, fn: Callable[[], R]) -> R:
    """fn(), with a psycopg error raised as SQLAlchemy raises it; a disconnect invalidates the connection."""
    error = engine.dialect.loaded_dbapi.Error
    try:
        return fn()
    except error as e:
        invalidated = engine.dialect.is_disconnect(e, fairy.dbapi_connection, None)
        if invalidated:
            fairy.invalidate(e)
        raise exc.DBAPIError.instance(
            sql, bound, e, error, connection_invalidated=invalidated, dialect=engine.dialect
        ) from e


_FOR_ENGINE: weakref.WeakKeyDictionary[Engine, Direct] = weakref.WeakKeyDictionary()


def for_engine(engine: Engine) -> Direct:
    """The engine's Direct (its compiled statements), made on first use."""
    d = _FOR_ENGINE.get(engine)
    if d is None:
        d = _FOR_ENGINE[engine] = Direct(engine)
    return d
