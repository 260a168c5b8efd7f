"""`lpstudy stimuli`: import and export stimulus pools; `make` comes from workers/ when torch is installed."""

from __future__ import annotations

from pathlib import Path

import typer

from app.cli import common

stimuli_app = typer.Typer(no_args_is_help=True, help="Stimulus pools: import, export, make.")


@stimuli_app.command("import")
def stimuli_import(
    directory: Path = typer.Argument(..., help="Folder with manifest.csv and the PNGs."),
    study: str = typer.Option(..., "--study"),
    database_url: str | None = typer.Option(None),
) -> None:
    """Import stimuli from DIR/manifest.csv (condition,image_index,label,path + metric columns). All or nothing."""
    from app.stimuli.service import import_stimuli

    common.require_dir(directory)
    with common.study_session(database_url, study) as (s, st):
        counts = import_stimuli(s, st, directory)
    typer.echo("Imported " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) + f" stimuli into '{study}'.")


@stimuli_app.command("export")
def stimuli_export(
    study: str = typer.Option(..., "--study"),
    out: Path = typer.Option(..., "--out"),
    database_url: str | None = typer.Option(None),
) -> None:
    """Write every stimulus as a PNG at native size plus manifest.csv with its metrics."""
    from app.stimuli.service import export_stimuli

    common.output_dir(out)
    with common.study_session(database_url, study) as (s, st):
        n = export_stimuli(s, st, out)
    typer.echo(f"Wrote {n} stimuli and manifest.csv to {out}.")


def mount(cli: typer.Typer) -> None:
    cli.add_typer(stimuli_app, name="stimuli")


def mount_make() -> None:
    """`stimuli make` is implemented in workers/ (a module that imports torch only inside its functions)."""
    try:
        from workers.generation.cli import make

        stimuli_app.command("make")(make)
    except ImportError:
        pass
