"""The ``lpstudy`` command: one entry point for every task. Torch-based commands import workers lazily."""

from __future__ import annotations

import getpass
import logging
import sys
from pathlib import Path

import typer

from app import cli_pilot, clitools
from app.db import Database, upgrade
from app.errors import DomainError
from app.logs import configure_logging

cli = typer.Typer(
    cls=clitools.LpstudyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="lpstudy: human perception studies of adversarial examples.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
study_app = typer.Typer(no_args_is_help=True, help="Create and manage studies.")
stimuli_app = typer.Typer(no_args_is_help=True, help="Stimulus pools: import, export, make.")
admin_app = typer.Typer(no_args_is_help=True, help="Admin users.")
cli.add_typer(db_app, name="db")
cli.add_typer(study_app, name="study")
cli.add_typer(stimuli_app, name="stimuli")
cli.add_typer(admin_app, name="admin")

log = logging.getLogger("lpstudy")


_settings = clitools.settings
_fail = clitools.fail


def _db(database_url: str | None = None) -> Database:
    """The configured database, checked (exists, reachable, migrated) before anything touches it."""
    return clitools.open_db(database_url)


# --- db ------------------------------------------------------------------------------------------


def _check_revision(revision: str) -> None:
    """An unknown revision is a one-line error before anything is opened or created."""
    from alembic.script import ScriptDirectory

    from app.db import MIGRATIONS_DIR

    if revision in ("head", "heads", "base") or any(ch in revision for ch in "+-@:"):
        return
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    known = sorted(r.revision for r in script.walk_revisions())
    if revision not in known:
        _fail(f"unknown revision {revision!r}; this lpstudy has {', '.join(known)} (or head, base)")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head"), database_url: str | None = typer.Option(None)) -> None:
    """Apply migrations (alembic upgrade)."""
    from app.dbcheck import shown

    _check_revision(revision)
    s = _settings(database_url)
    clitools.open_db(s=s, create=True).dispose()  # a bad or unreachable URL: one line, nothing created
    upgrade(s.database_url, revision)
    typer.echo(f"Database at {shown(s.database_url).split('@')[-1]} is at revision {revision}.")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(...), database_url: str | None = typer.Option(None)) -> None:
    """Revert migrations down to REVISION (e.g. 'base')."""
    from app.db import downgrade

    _check_revision(revision)
    s = _settings(database_url)
    clitools.open_db(s=s, migrated=False).dispose()
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

    s = _settings(database_url)
    bar = tqdm(unit="page", desc="backup", file=sys.stderr, disable=not s.is_sqlite)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        how = backup_database(s.database_url, out, progress)
    except DomainError as exc:
        _fail(exc.message)
    finally:
        bar.close()
    typer.echo(f"Backed up {s.database_url.split('@')[-1]} to {out} ({how}).")


# --- study ---------------------------------------------------------------------------------------


@study_app.command("create")
def study_create(
    config: Path = typer.Option(..., "--config", help="The study's TOML file."),
    database_url: str | None = typer.Option(None),
) -> None:
    """Create a study from a TOML config (kept verbatim with the study)."""
    from app.studies.service import create_study

    if not config.is_file():
        _fail(f"{config}: no such file")
    try:
        source = config.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(f"{config}: not UTF-8 text")
    db = _db(database_url)
    try:
        with db.session() as s:
            study = create_study(s, source, filename=str(config))
            typer.echo(f"Created study '{study.slug}' ({', '.join(c.code for c in study.conditions)}); status draft.")
    except DomainError as exc:
        _fail(exc.message)


@study_app.command("list")
def study_list(database_url: str | None = typer.Option(None)) -> None:
    """List studies with their status and per-condition counts."""
    from app.participants.pilots import count_test_participants
    from app.studies.service import condition_counts, list_studies, pool_sizes

    db = _db(database_url)
    with db.session() as s:
        studies = list_studies(s)
        if not studies:
            typer.echo("No studies.")
        for st in studies:
            typer.echo(f"{st.slug}\t{st.status}\t{st.dataset}/{st.norm}\t{st.title}")
            pools = pool_sizes(s, st)
            for c in condition_counts(s, st):
                typer.echo(
                    f"  {c.code}: stimuli {pools.get(c.code, 0)}, target {c.target}, active {c.active}, "
                    f"completed {c.completed}, timed out {c.timed_out}"
                )
            tests = count_test_participants(s, st)
            if tests.total:
                typer.echo(f"  test participants (not counted): {tests.preview} preview, {tests.bot} bot")


def _study_action(slug: str, action: str, database_url: str | None) -> None:
    from app.studies import service

    db = _db(database_url)
    try:
        with db.session() as s:
            st = service.get_study(s, slug)
            getattr(service, f"{action}_study")(s, st)
            typer.echo(f"Study '{slug}' is now {st.status}.")
    except DomainError as exc:
        _fail(exc.message)


@study_app.command("activate")
def study_activate(slug: str, database_url: str | None = typer.Option(None)) -> None:
    """Open a study to participants (needs full stimulus pools)."""
    _study_action(slug, "activate", database_url)


@study_app.command("close")
def study_close(slug: str, database_url: str | None = typer.Option(None)) -> None:
    """Stop taking new participants; those in progress can finish."""
    _study_action(slug, "close", database_url)


@study_app.command("status")
def study_status(
    slug: str,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    database_url: str | None = typer.Option(None),
) -> None:
    """Stimulus generation progress per condition (done, failed, pending) and whether the study can be activated."""
    import json
    from dataclasses import asdict

    from app.participants.pilots import count_test_participants
    from app.studies.progress import study_progress
    from app.studies.service import condition_counts, get_study

    db = _db(database_url)
    try:
        with db.session() as s:
            study = get_study(s, slug)
            prog = study_progress(s, study)
            counts = condition_counts(s, study)
            tests = count_test_participants(s, study)
    except DomainError as exc:
        _fail(exc.message)
    if as_json:
        recruitment = {"conditions": [asdict(c) for c in counts], "test": {"preview": tests.preview, "bot": tests.bot}}
        typer.echo(json.dumps({**prog.as_dict(), "recruitment": recruitment}, indent=2))
        return
    typer.echo(f"{prog.slug}: {prog.status}; stimuli {'generated by the worker' if prog.generated else 'imported'}")
    if prog.generated:
        line = f"  source images: {prog.complete} of {prog.target} complete (a stimulus in every condition)"
        line += f", {prog.failed} replaced after a failed attempt, {prog.pending} in unfinished jobs"
        typer.echo(line + (f", {prog.surplus} surplus" if prog.surplus else ""))
        if prog.exhausted:
            typer.echo("  the candidate images ran out before the study was complete")
    for c in prog.conditions:
        typer.echo(f"  {c.code}: pool {c.done}, failed {c.failed}")
        for reason, count in sorted(c.reasons.items(), key=lambda kv: -kv[1]):
            typer.echo(f"    {count} x {reason}")
    if prog.jobs_failed:
        typer.echo(f"  failed jobs: {prog.jobs_failed}")
        for e in prog.errors:
            typer.echo(f"    error: {e.splitlines()[0]}")
    if prog.status == "draft":
        typer.echo("Can be activated." if prog.can_activate else "Cannot be activated yet: " + "; ".join(prog.problems))
    else:
        typer.echo(f"The study is {prog.status}.")
    typer.echo("Participants (real only):")
    for cc in counts:
        typer.echo(
            f"  {cc.code}: completed {cc.completed} of {cc.target}, active {cc.active}, timed out {cc.timed_out}, "
            f"no consent {cc.no_consent}, failed attention {cc.failed_attention}"
        )
    if tests.total:
        typer.echo(f"  test participants (not counted): {tests.preview} preview, {tests.bot} bot")


@study_app.command("regenerate")
def study_regenerate(
    slug: str,
    condition: list[str] = typer.Option(
        None, "--condition", help="Refused: every source image gets a stimulus in each condition, so all are made."
    ),
    database_url: str | None = typer.Option(None),
) -> None:
    """Resume generation: retry failed jobs and top up (source images already in the study are kept)."""
    from app.jobs.service import enqueue_generation
    from app.studies.service import get_study

    db = _db(database_url)
    try:
        with db.session() as s:
            jobs = enqueue_generation(s, get_study(s, slug), condition or None)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"Enqueued {len(jobs)} job(s) for '{slug}'.")


# --- stimuli -------------------------------------------------------------------------------------


@stimuli_app.command("import")
def stimuli_import(
    directory: Path = typer.Argument(..., help="Folder with manifest.csv and the PNGs."),
    study: str = typer.Option(..., "--study"),
    database_url: str | None = typer.Option(None),
) -> None:
    """Import stimuli from DIR/manifest.csv (condition,image_index,label,path + metric columns). All or nothing."""
    from app.stimuli.service import import_stimuli
    from app.studies.service import get_study

    clitools.require_dir(directory)
    db = _db(database_url)
    try:
        with db.session() as s:
            counts = import_stimuli(s, get_study(s, study), directory)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo("Imported " + ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) + f" stimuli into '{study}'.")


@stimuli_app.command("export")
def stimuli_export(
    study: str = typer.Option(..., "--study"),
    out: Path = typer.Option(..., "--out"),
    database_url: str | None = typer.Option(None),
) -> None:
    """Write every stimulus as a PNG at native size plus manifest.csv with its metrics."""
    from app.stimuli.service import export_stimuli
    from app.studies.service import get_study

    clitools.output_dir(out)
    db = _db(database_url)
    try:
        with db.session() as s:
            n = export_stimuli(s, get_study(s, study), out)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"Wrote {n} stimuli and manifest.csv to {out}.")


@cli.command("export")
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
    from app.studies.service import get_study

    clitools.output_dir(out)
    db = _db(database_url)
    try:
        with db.session() as s:
            n_t, n_p = export_results(s, get_study(s, study), out, include_test=include_test)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"Wrote {n_t} trials and {n_p} participants to {out}.")


# --- analysis ------------------------------------------------------------------------------------


def _out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        _fail(f"{out}: exists and is not a folder")


@cli.command("analyze")
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
    db = _db(database_url)
    try:
        with db.session() as s:
            _data, result = analyze_study(s, slug, include_test=include_test, mixed=False if no_mixed else None)
    except DomainError as exc:
        _fail(exc.message)
    if out is not None:
        from app.analysis.tables import write_outputs

        try:
            files = write_outputs(result, out)
        except OSError as exc:
            _fail(f"cannot write to {out}: {exc.strerror or exc}")
        typer.echo(f"Wrote {len(files)} files to {out}.", err=True)
    typer.echo(json.dumps(result, indent=2) if as_json else summary_text(result))


@cli.command("report")
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
        _fail(f"{out}: is a folder; give a file name such as {out / 'report.html'}")
    if not out.parent.is_dir():
        _fail(f"{out.parent}: no such folder")
    db = _db(database_url)
    try:
        with db.session() as s:
            data, result = analyze_study(s, slug, include_test=include_test, mixed=False if no_mixed else None)
    except DomainError as exc:
        _fail(exc.message)
    try:
        out.write_text(render_report(data, result), encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"Wrote {out} ({result['sample']['total']['included']} participants analysed).")


@cli.command("package")
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
    db = _db(database_url)
    try:
        with db.session() as s:
            data = study_data(s, slug)
    except DomainError as exc:
        _fail(exc.message)
    try:
        counts = write_package(data, out, include_test=include_test)
    except OSError as exc:
        _fail(f"cannot write to {out}: {exc.strerror or exc}")
    typer.echo(
        f"Wrote a Psych-DS dataset to {out}: {counts['trials']} trials, {counts['participants']} participants, "
        f"{counts['stimuli']} stimuli."
    )


# --- admin ---------------------------------------------------------------------------------------


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
            _fail("the passwords do not match")
    db = _db(database_url)
    try:
        with db.session() as s:
            create_user(s, email, password)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"Admin user {email.strip().lower()} created.")


# --- worker ------------------------------------------------------------------------------------


@cli.command("worker")
def worker(
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    once: bool = typer.Option(False, "--once", help="Exit when the queue is empty."),
    concurrency: int = typer.Option(1, min=1, max=32, help="Jobs run at the same time in this process."),
    lease_seconds: float = typer.Option(
        120.0, min=1.0, help="A job whose worker stops renewing its lease for this long is taken up again."
    ),
    poll_seconds: float = typer.Option(2.0, min=0.05),
    database_url: str | None = typer.Option(None),
) -> None:
    """Claim stimulus-generation jobs from the database queue and run them (torch; CUDA when available)."""
    from sqlalchemy import func, select
    from tqdm import tqdm

    from app.design import DEVICES
    from app.models import Job, JobStatus
    from workers.generation.runner import Worker

    if device not in DEVICES:
        _fail(f"--device must be one of {', '.join(DEVICES)}, not {device!r}", 2)
    s = _settings(database_url)
    db = clitools.open_db(s=s)  # a missing database: one line, before any logging is set up
    configure_logging(s.log_level, s.log_format)
    try:
        w = Worker(db, device=device, lease_s=lease_seconds, poll_s=poll_seconds)
    except (RuntimeError, ValueError) as exc:
        _fail(str(exc), 2)
    with db.session() as session:
        pending = (
            session.scalar(
                select(func.count()).select_from(Job).where(Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
            )
            or 0
        )
    typer.echo(f"Worker {w.worker_id} on {w.device}; {pending} job(s) queued.", err=True)
    bar = tqdm(total=pending, unit="job", desc="stimulus jobs", file=sys.stderr)

    def progress(job: Job) -> None:
        bar.update(1)
        bar.set_postfix_str(f"last: job {job.id} {job.status}")

    try:
        n = w.run(once=once, concurrency=concurrency, progress=progress)
    finally:
        bar.close()
    typer.echo(f"Processed {n} job(s).", err=True)


# --- serve and demo ------------------------------------------------------------------------------


@cli.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, min=1, max=64, help="uvicorn worker processes"),
    timeout_keep_alive: int = typer.Option(
        75, min=1, help="Seconds an idle keep-alive connection stays open; keep it above a participant's think time."
    ),
    forwarded_allow_ips: str = typer.Option(
        "127.0.0.1",
        envvar="FORWARDED_ALLOW_IPS",
        help="Proxies whose X-Forwarded-Proto/For are trusted (comma-separated, or '*' behind a private network); "
        "https through them turns on HSTS and secure cookies.",
    ),
    database_url: str | None = typer.Option(None),
) -> None:
    """Run the web server against the configured database (production entry point)."""
    import os

    import uvicorn

    s = _settings(database_url)
    clitools.open_db(s=s).dispose()
    if workers == 1:
        clitools.require_free_port(host, port)
    if database_url:
        os.environ["LPSTUDY_DATABASE_URL"] = database_url
    configure_logging(s.log_level, s.log_format)
    if not s.secret_key:
        path = s.secret_key_path()
        s.with_secret_key()  # made once here, so that the workers all read the same file
        log.warning("No LPSTUDY_SECRET_KEY set: admin sessions are signed with this installation's key in %s", path)
    uvicorn.run(
        "app.asgi:app",
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_keep_alive=timeout_keep_alive,
        log_level=s.log_level.lower(),
        log_config=None,  # configure_logging's handlers (the workers set them up in app.asgi)
    )


@cli.command("demo")
def demo(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000, min=1, max=65535),
    database_url: str = typer.Option("sqlite:///var/lpstudy-demo.db"),
    data_dir: Path | None = typer.Option(None, help="Folder with MNIST (default: LPSTUDY_DATA_DIR)"),
    worker_device: str = typer.Option("auto", help="Device for the background worker: auto, cpu or cuda"),
) -> None:
    """Set up the demo (database, the paper's L0 study, a background worker) and serve it at once.

    Prints the participant and admin links; participants can begin as soon as the worker has filled the pools.
    """
    import os
    import subprocess

    import uvicorn

    from app.demo.service import ensure_demo_study, prepare_demo_data, random_prolific_id, reset_demo_admin
    from app.main import create_app

    s = _settings(database_url)
    if data_dir is not None:
        clitools.require_dir(data_dir)
        s = s.model_copy(update={"data_dir": data_dir})
    clitools.require_free_port(host, port)
    clitools.open_db(s=s, create=True).dispose()  # a bad URL: one line, nothing created
    configure_logging("WARNING", s.log_format)
    upgrade(s.database_url)
    demo_data, source = prepare_demo_data(Path(s.data_dir), Path("var/demo-data"))
    typer.echo(f"Demo stimuli: {source}")
    db = Database(s)
    with db.session() as session:
        study, _created = ensure_demo_study(session, fallback=demo_data != Path(s.data_dir))
        email, password = reset_demo_admin(session)
        slug = study.slug
    env = dict(os.environ, LPSTUDY_DATABASE_URL=s.database_url, LPSTUDY_DATA_DIR=str(demo_data))
    log_path = Path("var/demo-worker.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("a")
    worker_proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--device", worker_device],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    typer.echo(
        f"Worker started (pid {worker_proc.pid}, log {log_path}); progress: lpstudy study status {slug} "
        f"--database-url {s.database_url}"
    )
    base = f"http://{host}:{port}"
    pid, sid, sess = random_prolific_id(), random_prolific_id(), random_prolific_id()
    typer.echo(f"Participant link: {base}/s/{slug}?PROLIFIC_PID={pid}&STUDY_ID={sid}&SESSION_ID={sess}")
    typer.echo(f"Admin link: {base}/admin/login")
    typer.echo(f"Admin login: {email} / {password}")
    sys.stdout.flush()
    try:
        uvicorn.run(
            create_app(s, db),
            host=host,
            port=port,
            access_log=False,
            log_level="warning",
            timeout_keep_alive=75,
            log_config=None,
        )
    finally:
        worker_proc.terminate()
        try:
            worker_proc.wait(10)
        except subprocess.TimeoutExpired:
            worker_proc.kill()
        log_file.close()


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
    try:
        from workers.generation.cli import make

        stimuli_app.command("make")(make)
    except ImportError:
        pass


_mount_worker_commands()
cli_pilot.mount(cli)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
