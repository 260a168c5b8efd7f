"""`lpstudy db backup` on both backends: a live database copied while it is in use, restorable, bad input refused."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app.cli import cli
from app.models import Participant


def test_backup_of_a_live_database_has_every_row(db, settings, make_study, new_pid, client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=3)
    for _ in range(5):
        client.get(f"/s/{slug}", params={"PROLIFIC_PID": new_pid()})
    out = tmp_path / "backup.dump"
    r = CliRunner().invoke(cli, ["db", "backup", str(out), "--database-url", settings.database_url])
    assert r.exit_code == 0, r.output
    assert f"to {out}" in r.output and out.stat().st_size > 0
    if settings.is_sqlite:
        with sqlite3.connect(out) as c:
            assert c.execute("SELECT count(*) FROM participants").fetchone()[0] == 5
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return
    if shutil.which("pg_restore") is None:
        pytest.skip("pg_restore not installed")
    # restore into a fresh database and count
    name = f"lpstudy_restore_{uuid.uuid4().hex[:8]}"
    admin_url = make_url(settings.database_url).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        u = make_url(settings.database_url)
        subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "-h",
                u.host or "127.0.0.1",
                "-p",
                str(u.port or 5432),
                "-U",
                u.username or "postgres",
                "-d",
                name,
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        restored = create_engine(make_url(settings.database_url).set(database=name))
        with restored.connect() as c:
            assert c.scalar(select(func.count()).select_from(Participant.__table__)) == 5
        restored.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_backup_refuses_to_overwrite_or_write_nowhere(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    existing = tmp_path / "old.dump"
    existing.write_bytes(b"keep me")
    for target, message in ((existing, "already exists"), (tmp_path / "no" / "such" / "x.db", "no such folder")):
        r = CliRunner().invoke(cli, ["db", "backup", str(target), "--database-url", settings.database_url])
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
    assert existing.read_bytes() == b"keep me"
    r = CliRunner().invoke(
        cli, ["db", "backup", str(tmp_path / "x"), "--database-url", f"sqlite:///{tmp_path}/none.db"]
    )
    assert r.exit_code == 1 and "no SQLite database file" in r.output
