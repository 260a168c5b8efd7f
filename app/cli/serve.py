"""Long-running commands: `lpstudy worker` (the stimulus queue), `serve` (production) and `demo`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from app.cli import common
from app.db import Database, upgrade
from app.logs import configure_logging

log = logging.getLogger("lpstudy")


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
        common.fail(f"--device must be one of {', '.join(DEVICES)}, not {device!r}", 2)
    s = common.settings(database_url)
    db = common.open_db(s=s)  # a missing database: one line, before any logging is set up
    configure_logging(s.log_level, s.log_format)
    try:
        w = Worker(db, device=device, lease_s=lease_seconds, poll_s=poll_seconds)
    except (RuntimeError, ValueError) as exc:
        common.fail(str(exc), 2)
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

    s = common.settings(database_url)
    common.open_db(s=s).dispose()
    if workers == 1:
        common.require_free_port(host, port)
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

    s = common.settings(database_url)
    if data_dir is not None:
        common.require_dir(data_dir)
        s = s.model_copy(update={"data_dir": data_dir})
    common.require_free_port(host, port)
    common.open_db(s=s, create=True).dispose()  # a bad URL: one line, nothing created
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


def mount(cli: typer.Typer) -> None:
    cli.command("worker")(worker)
    cli.command("serve")(serve)
    cli.command("demo")(demo)
