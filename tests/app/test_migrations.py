"""Alembic migrations on both backends: up, down, up again; models and migrations agree; WAL; psycopg 3."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import Database, downgrade, make_engine, normalize_url, upgrade
from app.models import Base
from tests.databases import new_pg_database

BACKENDS = [b for b in os.environ.get("LPSTUDY_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
# Every table the models declare; the core tables must be among them.
TABLES = set(Base.metadata.tables)
CORE_TABLES = {"admin_users", "studies", "conditions", "stimuli", "participants", "trials"}


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, never-migrated database: a new SQLite file, or a uniquely named PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with new_pg_database("lpstudy_mig_") as url:
        yield url


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _diff(url: str) -> list:  # type: ignore[type-arg]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_a_fresh_database(fresh_url: str) -> None:
    assert _tables(fresh_url) == set()
    upgrade(fresh_url)
    assert _tables(fresh_url) == TABLES | {"alembic_version"}
    assert _revision(fresh_url) is not None
    assert _diff(fresh_url) == []

    downgrade(fresh_url, "base")
    assert _tables(fresh_url) - {"alembic_version"} == set()
    assert _revision(fresh_url) is None

    upgrade(fresh_url)
    assert _tables(fresh_url) == TABLES | {"alembic_version"}
    assert _diff(fresh_url) == []
    # and the schema is usable: the app's Database can write and read through it
    db = Database(Settings(env="test", database_url=fresh_url, secret_key="s" * 40))
    try:
        with db.session() as s:
            s.execute(
                text("INSERT INTO admin_users (email, password_hash, created_at) VALUES ('a@b.c', 'h', :t)"),
                {"t": "2024-01-01T00:00:00+00:00"},
            )
        with db.session() as s:
            assert s.execute(text("SELECT email FROM admin_users")).scalar_one() == "a@b.c"
    finally:
        db.dispose()


def test_models_and_migrations_agree(db_url: str) -> None:
    """Autogenerate finds nothing to do: a model change without a migration fails here."""
    assert _diff(db_url) == []
    assert CORE_TABLES <= TABLES <= _tables(db_url)


def test_compare_would_notice_a_missing_migration(db_url: str) -> None:
    """The check above is not vacuous: an extra model column shows up as a difference."""
    from sqlalchemy import Column, Integer, MetaData, Table

    md = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(md)
    Table("admin_users", md, Column("extra_column", Integer), extend_existing=True)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), md)
    finally:
        engine.dispose()
    assert any(d[0] == "add_column" and d[3].name == "extra_column" for d in diff), diff


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    db = Database(Settings(env="test", database_url=url, secret_key="s" * 40))
    try:
        with db.session() as s:
            assert s.execute(text("PRAGMA journal_mode")).scalar_one().lower() == "wal"
            assert s.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
            assert s.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000
    finally:
        db.dispose()
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"


def test_sqlite_creates_the_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "x.db"
    upgrade(f"sqlite:///{path}")
    assert path.is_file()


@pytest.mark.parametrize(
    "given",
    ["postgresql://u:p@h:5432/d", "postgresql+psycopg2://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"],
)
def test_postgresql_urls_are_normalised_to_psycopg3(given: str) -> None:
    u = make_url(normalize_url(given))
    assert (u.get_backend_name(), u.get_driver_name()) == ("postgresql", "psycopg")
    # everything but the driver is kept, password included
    assert (u.username, u.password, u.host, u.port, u.database) == ("u", "p", "h", 5432, "d")


def test_sqlite_urls_are_left_alone() -> None:
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert normalize_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"


def test_engine_for_a_driverless_postgresql_url_uses_psycopg3() -> None:
    engine = make_engine("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL backend disabled")
@pytest.mark.parametrize("fresh_url", ["postgresql"], indirect=True)
def test_driverless_postgresql_url_migrates_and_connects(fresh_url: str) -> None:
    bare = fresh_url.replace("postgresql+psycopg://", "postgresql://")
    upgrade(bare)
    assert _revision(bare) is not None
    db = Database(Settings(env="test", database_url=bare, secret_key="s" * 40))
    try:
        assert db.engine.dialect.driver == "psycopg"
        with db.session() as s:
            assert s.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        db.dispose()
