"""What every `lpstudy` command shares: settings, opening a checked database, and one-line errors.

A user's mistake (a bad, unreachable or unmigrated database, a missing file, an unknown slug) ends the command
with `Error: <what is wrong; what to run instead>` on stderr and exit code 1, never a traceback, and creates
nothing. `LpstudyGroup` is the last line of defence for errors a command did not catch itself.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer._click import Context
from typer._click import exceptions as cx  # typer vendors click: its exceptions are these
from typer.core import TyperGroup

from app.config import Settings
from app.db import Database
from app.dbcheck import DatabaseProblem, check_database
from app.errors import DomainError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.models import Study


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def settings(database_url: str | None = None) -> Settings:
    from pydantic import ValidationError

    try:
        s = Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "LPSTUDY_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else "settings"
        fail(f"{name}: {err['msg']} (got {err.get('input')!r})")
    except Exception as exc:  # InsecureConfiguration and the like
        fail(one_line(exc))
    if database_url:
        s = s.model_copy(update={"database_url": database_url})
    return s


def open_db(
    database_url: str | None = None, *, create: bool = False, migrated: bool | None = None, s: Settings | None = None
) -> Database:
    """The configured database, checked first (exists, reachable, migrated to head unless `migrated=False`).
    `create=True` (db upgrade and demo only) lets a missing SQLite file be created."""
    s = s or settings(database_url)
    try:
        check_database(s.database_url, must_exist=not create, migrated=not create if migrated is None else migrated)
    except DatabaseProblem as exc:
        fail(exc.message)
    return Database(s)


@contextmanager
def study_session(database_url: str | None, slug: str) -> Iterator[tuple[Session, Study]]:
    """One unit of work on the study SLUG in the checked database: commits when the block succeeds; a domain
    error (unknown slug, a refused transition, a bad file) anywhere in it is one `Error:` line, nothing saved."""
    from app.studies.service import get_study

    db = open_db(database_url)
    try:
        with db.session() as session:
            yield session, get_study(session, slug)
    except DomainError as exc:
        fail(exc.message)


def require_dir(path: Path, what: str = "folder") -> None:
    if not path.exists():
        fail(f"{path}: no such {what}")
    if not path.is_dir():
        fail(f"{path}: not a folder")


def output_dir(path: Path) -> None:
    """An output folder: may be missing (it is created) or an existing folder; not a file."""
    if path.exists() and not path.is_dir():
        fail(f"{path} is a file; --out takes a folder")


def require_free_port(host: str, port: int) -> None:
    """Refuse early (before anything is set up) when the address is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        fail(f"cannot listen on {host!r}: {exc.strerror}; use --host 127.0.0.1 or 0.0.0.0")
    family, _type, _proto, _name, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port")


class LpstudyGroup(TyperGroup):
    """The root command group: turns the errors a command let through into one line and exit code 1."""

    def invoke(self, ctx: Context) -> Any:
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        try:
            return super().invoke(ctx)
        except DatabaseProblem as exc:
            fail(exc.message)
        except DomainError as exc:
            fail(exc.message)
        except DBAPIError as exc:
            fail(f"database error: {one_line(exc.orig) if exc.orig is not None else one_line(exc)}")
        except SQLAlchemyError as exc:
            fail(f"database error: {one_line(exc)}")
        except OSError as exc:
            if exc.filename is None:
                raise
            fail(f"{exc.filename}: {exc.strerror or one_line(exc)}")
        except Exception as exc:
            from alembic.util import CommandError

            if isinstance(exc, CommandError):
                fail(one_line(exc))
            raise

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Usage errors (a missing option, a bad value) in one line too, instead of a box."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except cx.NoArgsIsHelpError as exc:
            sys.exit(exc.exit_code)  # the help was printed as the error was made
        except cx.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "lpstudy"
            typer.echo(f"Error: {exc.format_message()} (see: {where} --help)", err=True)
            sys.exit(exc.exit_code)
        except cx.ClickException as exc:
            typer.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)
