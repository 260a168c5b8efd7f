"""Results out: `lpstudy export` (tidy CSVs), `analyze`, `report` (one HTML file) and `package` (Psych-DS)."""

from __future__ import annotations

from pathlib import Path

import typer

from app.cli import common
from app.errors import DomainError


def export(
    study: str = typer.Option(..., "--study"),
    out: Path = typer.Option(..., "--out"),
    include_test: bool = typer.Option(
        False, "--include-test", help="Also export test participants (previews, bots), with is_test and test_kind."
    ),
    database_url: str | None = typer.Option(None),
) -> None:
    """Write trials.csv and participants.csv (tidy; loads unchanged in pandas and R). Real participants only."""
    from app.exports import export_results

    common.output_dir(out)
    with common.study_session(database_url, study) as (s, st):
        n_t, n_p = export_results(s, st, out, include_test=include_test)
    typer.echo(f"Wrote {n_t} trials and {n_p} participants to {out}.")


def _out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        common.fail(f"{out}: exists and is not a folder")


def analyze_cmd(
    slug: str = typer.Argument(..., help="The study's slug."),
    as_json: bool = typer.Option(False, "--json", help="The whole result as JSON (keys in docs/analysis.md)."),
    include_test: bool = typer.Option(False, "--include-test", help="Count test participants (previews, bots)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the tables (CSV) and figures (SVG) here."),
    no_mixed: bool = typer.Option(False, "--no-mixed", help="Skip the mixed-effects model (the slowest part)."),
    database_url: str | None = typer.Option(None),
) -> None:
    """Analyse a study's results: the paper's Fig. 3 and its statistics, and metrics judged against humans."""
    import json

    from app.analysis.service import analyze_study
    from app.analysis.text import summary_text

    if out is not None:
        _out_dir(out)
    db = common.open_db(database_url)
    try:
        with db.session() as s:
            _data, result = analyze_study(s, slug, include_test=include_test, mixed=False if no_mixed else None)
    except DomainError as exc:
        common.fail(exc.message)
    if out is not None:
        from app.analysis.tables import write_outputs

        try:
            files = write_outputs(result, out)
        except OSError as exc:
            common.fail(f"cannot write to {out}: {exc.strerror or exc}")
        typer.echo(f"Wrote {len(files)} files to {out}.", err=True)
    typer.echo(json.dumps(result, indent=2) if as_json else summary_text(result))


def report_cmd(
    slug: str = typer.Argument(..., help="The study's slug."),
    out: Path = typer.Option(..., "--out", help="The HTML file to write (e.g. report.html)."),
    include_test: bool = typer.Option(False, "--include-test", help="Count test participants (previews, bots)."),
    no_mixed: bool = typer.Option(False, "--no-mixed", help="Skip the mixed-effects model (the slowest part)."),
    database_url: str | None = typer.Option(None),
) -> None:
    """One self-contained HTML report: design, exclusions, every table and figure, the study config verbatim."""
    from app.analysis.report import render_report
    from app.analysis.service import analyze_study

    if out.is_dir():
        common.fail(f"{out}: is a folder; give a file name such as {out / 'report.html'}")
    if not out.parent.is_dir():
        common.fail(f"{out.parent}: no such folder")
    db = common.open_db(database_url)
    try:
        with db.session() as s:
            data, result = analyze_study(s, slug, include_test=include_test, mixed=False if no_mixed else None)
    except DomainError as exc:
        common.fail(exc.message)
    try:
        out.write_text(render_report(data, result), encoding="utf-8")
    except OSError as exc:
        common.fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"Wrote {out} ({result['sample']['total']['included']} participants analysed).")


def package_cmd(
    slug: str = typer.Argument(..., help="The study's slug."),
    out: Path = typer.Option(..., "--out", help="The folder to write the Psych-DS dataset into."),
    include_test: bool = typer.Option(False, "--include-test", help="Also write test participants (marked)."),
    database_url: str | None = typer.Option(None),
) -> None:
    """A Psych-DS data package: trials, participants and stimuli tables, a data dictionary, the config."""
    from app.analysis.package import write_package
    from app.analysis.service import study_data

    _out_dir(out)
    db = common.open_db(database_url)
    try:
        with db.session() as s:
            data = study_data(s, slug)
    except DomainError as exc:
        common.fail(exc.message)
    try:
        counts = write_package(data, out, include_test=include_test)
    except OSError as exc:
        common.fail(f"cannot write to {out}: {exc.strerror or exc}")
    typer.echo(
        f"Wrote a Psych-DS dataset to {out}: {counts['trials']} trials, {counts['participants']} participants, "
        f"{counts['stimuli']} stimuli."
    )


def mount(cli: typer.Typer) -> None:
    cli.command("export")(export)
    cli.command("analyze")(analyze_cmd)
    cli.command("report")(report_cmd)
    cli.command("package")(package_cmd)
