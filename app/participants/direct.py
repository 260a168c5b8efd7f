"""The hot path's PostgreSQL statements, compiled once and run on the pooled psycopg connection directly.

A page view and an answer are one prebuilt Core statement each (app.participants.statements). Run through a
SQLAlchemy `Connection`, each still pays for the connection wrapper, the AUTOCOMMIT execution option, the
compiled-statement look-up and parameter construction, and a `CursorResult` whose metadata asks psycopg to build
its `description`: a profile of the participant walk put that at about 15% of the process's CPU, more than
psycopg's own execution. Here the statement is compiled once for the engine's dialect, its SQL and its constant
parameters are kept, and each call takes a connection from the same pool (same checkout events, so the idle
ping still applies), runs the SQL in autocommit and reads plain tuples into a named tuple.

The statements stay the same Core objects (written once, in statements.py); only how they are executed differs.
Errors are SQLAlchemy's: a psycopg error is wrapped as SQLAlchemy would wrap it (`DBAPIError.instance`), and a
disconnect invalidates the pooled connection, so `app.db.is_transient`, the retry and the 503 page behave as on
the SQLAlchemy path.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, exc
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class Compiled:
    """One statement compiled for one dialect: its SQL, constant parameters, required names and row type."""

    def __init__(self, stmt: ClauseElement, engine: Engine) -> None:
        compiled = stmt.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled._bind_processors or compiled.escaped_bind_names or "POSTCOMPILE" in compiled.string:
            raise ValueError("statement needs bind processing; run it through SQLAlchemy")  # not on the hot path
        self.sql: str = compiled.string
        binds = {name: bp for bp, name in compiled.bind_names.items()}
        self.constants = {name: bp.value for name, bp in binds.items() if not bp.required}
        self.required = frozenset(name for name, bp in binds.items() if bp.required)
        names = [col[0] for col in compiled._result_columns]
        self.row: Any = namedtuple("Row", names, rename=True) if names else None  # type: ignore[misc]
        if any(col[3]._cached_result_processor(engine.dialect, None) for col in compiled._result_columns):
            raise ValueError("statement needs result processing; run it through SQLAlchemy")

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        missing = self.required - given.keys()
        if missing:
            raise exc.ArgumentError(f"missing parameters: {sorted(missing)}")
        return {**self.constants, **given}


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
        """The statement's first row (a named tuple), or None."""
        engine = self.engine
        c = self.compiled(stmt)
        bound = c.params(params)
        error = engine.dialect.loaded_dbapi.Error
        try:
            fairy = engine.raw_connection()
        except error as e:  # the server is down or refusing: as Engine.connect() would raise it
            raise exc.DBAPIError.instance(None, None, e, error, dialect=engine.dialect) from e
        try:
            row = _run(fairy.driver_connection, c.sql, bound)
        except error as e:
            invalidated = engine.dialect.is_disconnect(e, fairy.dbapi_connection, None)
            if invalidated:
                fairy.invalidate(e)
            raise exc.DBAPIError.instance(
                c.sql, bound, e, error, connection_invalidated=invalidated, dialect=engine.dialect
            ) from e
        finally:
            conn = fairy.driver_connection
            if conn is not None and conn.autocommit:  # type: ignore[attr-defined]
                fairy.invalidate()  # never hand a connection in autocommit back to the pool
            fairy.close()
        if row is None or c.row is None:
            return row
        return c.row._make(row)


def _run(conn: Any, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """One statement in autocommit on a psycopg connection, which is left as the pool expects it (not in
    autocommit: SQLAlchemy's own connections begin transactions implicitly)."""
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()  # type: ignore[no-any-return]
    finally:
        if not conn.closed:
            conn.autocommit = False


_FOR_ENGINE: weakref.WeakKeyDictionary[Engine, Direct] = weakref.WeakKeyDictionary()


def for_engine(engine: Engine) -> Direct:
    """The engine's Direct (its compiled statements), made on first use."""
    d = _FOR_ENGINE.get(engine)
    if d is None:
        d = _FOR_ENGINE[engine] = Direct(engine)
    return d
