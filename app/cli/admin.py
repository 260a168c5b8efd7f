"""`lpstudy admin`: admin users of the dashboard."""

from __future__ import annotations

import getpass
import sys

import typer

from app.cli import common
from app.errors import DomainError

admin_app = typer.Typer(no_args_is_help=True, help="Admin users.")


@admin_app.command("create-user")
def admin_create_user(
    email: str,
    database_url: str | None = typer.Option(None),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
) -> None:
    """Create an admin user; asks for the password (stored as an argon2 hash)."""
    from app.admin.auth import create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            common.fail("the passwords do not match")
    db = common.open_db(database_url)
    try:
        with db.session() as s:
            create_user(s, email, password)
    except DomainError as exc:
        common.fail(exc.message)
    typer.echo(f"Admin user {email.strip().lower()} created.")


def mount(cli: typer.Typer) -> None:
    cli.add_typer(admin_app, name="admin")
