"""Check a database URL before a command uses it: parseable, reachable, migrated. Never creates anything.

Each problem is a `DatabaseProblem` whose message is one line saying what is wrong and what to run instead; the
CLI prints it and exits non-zero. Only `lpstudy db upgrade` and `lpstudy demo` may create a database, so every
other command checks with `must_exist=True` before it opens one (SQLite would otherwise create an empty file).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from app.db import MIGRATIONS_DIR, normalize_url

DEMO_DATABASE_URL = "sqlite:///var/lpstudy-demo.db"
URL_HELP = "use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname"


class DatabaseProblem(Exception):
    """What is wrong with a database, and what to run instead, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def shown(url: str | URL) -> str:
    """The URL as it may be printed (password hidden)."""
    try:
        u = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return str(url)
    return u.render_as_string(hide_password=True)


def parse(url: str) -> URL:
    try:
        u = make_url(normalize_url(url))
    except (ArgumentError, ValueError):
        raise DatabaseProblem(f"{url!r} is not a database URL; {URL_HELP}") from None
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseProblem(f"{shown(u)}: lpstudy supports SQLite and PostgreSQL only; {URL_HELP}")
    if u.get_backend_name() == "sqlite" and (not u.database or u.database == ":memory:"):
        raise DatabaseProblem(f"{shown(u)} is an in-memory database that holds nothing; {URL_HELP}")
    if u.get_backend_name() == "postgresql" and not u.database:
        raise DatabaseProblem(f"{shown(u)} names no database; {URL_HELP}")
    return u


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads))


def _upgrade_hint(url: str) -> str:
    return f"lpstudy db upgrade --database-url {shown(url)}"


def _sqlite_file(u: URL, url: str, must_exist: bool) -> None:
    path = Path(u.database or "")
    if path.is_dir():
        raise DatabaseProblem(f"{path} is a folder, not an SQLite database file; {URL_HELP}")
    if path.exists() or not must_exist:
        return  # db upgrade and demo create a missing file (and its folder)
    where = f"folder {path.parent} does not exist" if not path.parent.exists() else "no such file"
    hint = f"create it with: {_upgrade_hint(url)}"
    if url == "sqlite:///lpstudy.db" and Path("var/lpstudy-demo.db").exists():
        hint = f"the demo's database is --database-url {DEMO_DATABASE_URL}; or {hint}"
    raise DatabaseProblem(f"no database at {path} ({where}); {hint}")


def _connect_problem(exc: DBAPIError, u: URL) -> DatabaseProblem:
    orig = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]
    low = orig.lower()
    where = f"{u.host or 'localhost'}:{u.port or 5432}"
    if u.get_backend_name() == "sqlite":
        if "not a database" in low or "malformed" in low:
            return DatabaseProblem(f"{u.database} is not an SQLite database ({orig}); {URL_HELP}")
        return DatabaseProblem(f"cannot open SQLite database {u.database}: {orig}")
    if "does not exist" in low and "database" in low:
        return DatabaseProblem(
            f"PostgreSQL at {where} has no database '{u.database}'; create it (createdb -h {u.host or 'localhost'} "
            f"-U {u.username or 'postgres'} {u.database}), then run: {_upgrade_hint(str(u))}"
        )
    if "authentication failed" in low or "password" in low:
        return DatabaseProblem(f"PostgreSQL at {where} refused user '{u.username}': {orig}")
    return DatabaseProblem(
        f"cannot connect to PostgreSQL at {where} ({orig}); is the server running? Check --database-url or "
        "LPSTUDY_DATABASE_URL"
    )


def check_database(url: str, *, must_exist: bool = True, migrated: bool = True) -> None:
    """Raise DatabaseProblem unless `url` is usable. must_exist=False: it may be created (db upgrade, demo)."""
    u = parse(url)
    if u.get_backend_name() == "sqlite":
        _sqlite_file(u, url, must_exist)
        if not Path(u.database or "").exists():
            return  # to be created by the caller
        # Read-only and immutable, so that checking writes nothing (no WAL switch, no -wal or -shm files).
        u = u.set(database=f"file:{Path(u.database or '').resolve()}?mode=ro&immutable=1", query={"uri": "true"})
        connect_args: dict = {}
    else:
        connect_args = {"connect_timeout": 5}
    try:
        engine = create_engine(u, poolclass=NullPool, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseProblem(f"{shown(u)}: no database driver for it ({exc}); {URL_HELP}") from None
    try:
        with engine.connect() as conn:
            if not migrated:
                conn.execute(text("SELECT 1"))
                return
            if not inspect(conn).has_table("alembic_version"):
                n = len(inspect(conn).get_table_names())
                state = "is empty" if n == 0 else f"has {n} tables but no lpstudy schema"
                raise DatabaseProblem(f"the database at {shown(url)} {state}; run: {_upgrade_hint(url)}")
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError as exc:
        raise _connect_problem(exc, make_url(normalize_url(url))) from None
    except SQLAlchemyError as exc:
        raise DatabaseProblem(f"{shown(url)}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    head = head_revision()
    have = ",".join(sorted(current)) or "none"
    if have != head:
        from alembic.script import ScriptDirectory

        known = {s.revision for s in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
        if all(r in known for r in current):
            raise DatabaseProblem(
                f"the database at {shown(url)} is at revision {have}, this lpstudy needs {head}; run: "
                f"{_upgrade_hint(url)}"
            )
        raise DatabaseProblem(
            f"the database at {shown(url)} is at revision {have}, which this lpstudy does not know (made by a newer "
            "version?); update lpstudy"
        )
