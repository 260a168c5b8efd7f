"""`lpstudy db`: apply and revert migrations, back up the live database."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from app.cli import common
from app.db import upgrade
from app.errors import DomainError

db_app = typer.Typer(no_args_is_help=True, help="Database schema.")


def _check_revision(revision: str) -> None:
    """An unknown revision is a one-line error before anything is opened or created."""
    from alembic.script import ScriptDirectory

    from app.db import MIGRATIONS_DIR

    if revision in ("head", "heads", "base") or any(ch in revision for ch in "+-@:"):
        return
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    known = sorted(r.revision for r in script.walk_revisions())
    if revision not in known:
        common.fail(f"unknown revision {revision!r}; this lpstudy has {', '.join(known)} (or head, base)")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head"), database_url: str | None = typer.Option(None)) -> None:
    """Apply migrations (alembic upgrade)."""
    from app.dbcheck import shown

    _check_revision(revision)
    s = common.settings(database_url)
    common.open_db(s=s, create=True).dispose()  # a bad or unreachable URL: one line, nothing created
    upgrade(s.database_url, revision)
    typer.echo(f"Database at {shown(s.database_url).split('@')[-1]} is at revision {revision}.")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(...), database_url: str | None = typer.Option(None)) -> None:
    """Revert migrations down to REVISION (e.g. 'base')."""
    from app.db import downgrade

    _check_revision(revision)
    s = common.settings(database_url)
    common.open_db(s=s, migrated=False).dispose()
    downgrade(s.database_url, revision)
    typer.echo(f"Database downgraded to {revision}.")


@db_app.command("backup")
def db_backup(
    out: Path = typer.Argument(..., help="The backup file to write (must not exist yet)."),
    database_url: str | None = typer.Option(None),
) -> None:
    """Back up the live database: SQLite's online backup, or pg_dump (custom format) for PostgreSQL."""
    from tqdm import tqdm

    from app.backup import backup_database

    s = common.settings(database_url)
    bar = tqdm(unit="page", desc="backup", file=sys.stderr, disable=not s.is_sqlite)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        how = backup_database(s.database_url, out, progress)
    except DomainError as exc:
        common.fail(exc.message)
    finally:
        bar.close()
    typer.echo(f"Backed up {s.database_url.split('@')[-1]} to {out} ({how}).")


def mount(cli: typer.Typer) -> None:
    cli.add_typer(db_app, name="db")
