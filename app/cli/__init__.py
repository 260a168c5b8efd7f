"""The ``lpstudy`` command: one entry point for every task, one module per command group.

common.py      what every command shares: settings, a checked database, one-line errors (LpstudyGroup)
db.py          lpstudy db upgrade | downgrade | backup
study.py       lpstudy study create | list | activate | close | status | regenerate
stimuli.py     lpstudy stimuli import | export (and `make`, from workers/)
analysis.py    lpstudy export | analyze | report | package
admin.py       lpstudy admin create-user
participants.py  lpstudy bots, lpstudy participants delete-test
serve.py       lpstudy worker | serve | demo

Torch-based commands (`data`, `models`, `stimuli make`) live in workers/ and import torch only inside their
functions; they are mounted here when workers/ can be imported.
"""

from __future__ import annotations

import typer

from app.cli import admin, analysis, common, db, participants, serve, stimuli, study

cli = typer.Typer(
    cls=common.LpstudyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="lpstudy: human perception studies of adversarial examples.",
)


def _mount_worker_commands() -> None:
    """Commands implemented in workers/ (modules that import torch only inside their functions)."""
    try:
        from workers.data.cli import app as data_app

        cli.add_typer(data_app, name="data", help="Datasets: fetch MNIST and CIFAR-10.")
    except ImportError:
        pass
    try:
        from workers.models.cli import app as models_app

        cli.add_typer(models_app, name="models", help="Robust models: train, eval, list, export.")
    except ImportError:
        pass
    stimuli.mount_make()


# The order of mounting is the order of `lpstudy --help`: commands first, then groups, each as mounted here.
for _part in (db, study, stimuli, admin, analysis, serve):
    _part.mount(cli)
_mount_worker_commands()
participants.mount(cli)


def main() -> None:
    cli()


__all__ = ["cli", "main"]
