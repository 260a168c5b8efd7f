"""`lpstudy db backup`: a consistent copy of a live database, while the study runs.

SQLite: the online backup API (sqlite3.Connection.backup), page by page, so writers are not blocked for long and
the copy is one consistent snapshot; it is written beside the target and renamed into place. PostgreSQL:
``pg_dump --format=custom`` (one consistent snapshot, restored with ``pg_restore``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

from app.errors import BadRequest

PAGES_PER_STEP = 1024


def backup_database(url: str, out: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """Write a backup of the database at `url` to `out`; returns how it was made. Raises BadRequest."""
    if out.exists():
        raise BadRequest(f"{out} already exists; choose a new file name (a backup never overwrites anything)")
    if not out.parent.is_dir():
        raise BadRequest(f"{out.parent}: no such folder")
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite(u.database or "", out, progress)
    if u.get_backend_name() == "postgresql":
        return _postgres(u, out)
    raise BadRequest(f"cannot back up a {u.get_backend_name()} database")


def _sqlite(path: str, out: Path, progress: Callable[[int, int], None] | None) -> str:
    if not path or path == ":memory:" or not Path(path).is_file():
        raise BadRequest(f"{path or 'an in-memory database'}: no SQLite database file to back up")
    tmp = out.with_name(f".{out.name}.partial")
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(
            dst, pages=PAGES_PER_STEP, progress=(lambda _st, rem, tot: progress(tot - rem, tot)) if progress else None
        )
        dst.close()
        os.replace(tmp, out)
    finally:
        src.close()
        dst.close()
        tmp.unlink(missing_ok=True)
    return "SQLite online backup"


def _postgres(u, out: Path) -> str:  # type: ignore[no-untyped-def]
    exe = shutil.which("pg_dump")
    if exe is None:
        raise BadRequest("pg_dump is not installed (Debian: apt-get install postgresql-client)")
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = u.password
    cmd = [exe, "--format=custom", "--no-owner", "--file", str(out), "--dbname", u.database or "postgres"]
    for flag, value in (("--host", u.host), ("--port", u.port), ("--username", u.username)):
        if value:
            cmd += [flag, str(value)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        raise BadRequest(
            f"pg_dump failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        )
    return "pg_dump --format=custom (restore with pg_restore)"
