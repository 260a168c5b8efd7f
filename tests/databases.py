"""Throw-away PostgreSQL databases for tests that need their own (beside the shared, truncated one in conftest)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("LPSTUDY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def new_pg_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty (never migrated) database named `prefix` + a random suffix; dropped at the end,
    even with connections still open."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
