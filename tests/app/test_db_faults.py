"""Riding through faults, with real processes: a private PostgreSQL cluster restarted and stopped under a burst
of participants, a server worker killed with -9, then the whole server killed and started again.

The shared PostgreSQL at 127.0.0.1:5432 is never touched: every test here runs its own cluster (initdb from the
installed PostgreSQL binaries, on a free port, in a temporary folder) and restarts that one. The participants are
asyncio clients that behave like browsers: they answer the page the server shows, follow a 503 page's refresh
after its Retry-After, and reload their page after a dropped connection. Afterwards the database is checked
against what they sent: one participant per PID, every trial answered exactly once with the value sent, the
demographics as sent, and no HTTP 500 at any point.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import create_engine, select, text

from app.config import Settings
from app.db import Database, upgrade
from app.models import Participant, Stimulus, Trial
from tests.servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[2]
TRIALS = 6
GENDERS = ("female", "male", "non-binary", "other")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster: initdb in a temp folder, listening on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="lpstudy-private-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.user = "postgres"
            ids = pwd.getpwnam(self.user)
            os.chown(self.dir, ids.pw_uid, ids.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                "fsync = off\nmax_connections = 100\nshared_buffers = 32MB\n"
            )
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def db_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", *args)

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def close(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        yield pg
    finally:
        pg.close()


def _new_database(pg: PrivatePostgres, name: str) -> str:
    admin = create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = pg.db_url(name)
    upgrade(url)
    return url


class Server:
    """`lpstudy serve --workers N` as a real process group (so that it can be killed whole)."""

    def __init__(self, url: str, workers: int = 2, port: int | None = None) -> None:
        self.url, self.workers = url, workers
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="lpstudy-fault-server-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_http_up) -> None:  # type: ignore[no-untyped-def]
        env = {**os.environ, "LPSTUDY_ENV": "test", "LPSTUDY_SECRET_KEY": "f" * 40, "LPSTUDY_DATABASE_URL": self.url}
        env["PYTHONPATH"] = str(REPO)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--workers", str(self.workers), "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http_up(self.proc, self.base)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.unlink(missing_ok=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# --- the participants -----------------------------------------------------------------------------


def answer_for(pid: str, position: int) -> tuple[int, int]:
    h = sum(ord(c) for c in pid) * 31 + position * 7
    return h % 10, 1 + h % 5


def demographics_for(pid: str) -> dict[str, str]:
    h = sum(ord(c) for c in pid)
    return {"age": str(18 + h % 60), "gender": GENDERS[h % 4], "student": "no", "employment": "other"}


@dataclass
class Stats:
    statuses: Counter = field(default_factory=Counter)
    unavailable_pages: list[str] = field(default_factory=list)
    connection_errors: int = 0
    completed: set[str] = field(default_factory=set)
    acknowledged: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    first_response: float = 0.0
    last_response: float = 0.0


async def _request(session, stats: Stats, method: str, url: str, data=None):  # type: ignore[no-untyped-def]
    """One hop, as a browser does it: (status, location, body). A 503 page is followed after Retry-After to its
    refresh URL; a dropped connection is followed by a reload after a short pause (`None` is returned then, so
    that the caller reloads the participant's page)."""
    import aiohttp

    try:
        async with session.request(method, url, data=data, allow_redirects=False) as r:
            body = await r.text()
            stats.last_response = time.monotonic()
            stats.first_response = stats.first_response or stats.last_response
            stats.statuses[r.status] += 1
            if r.status >= 500 and r.status != 503:
                stats.bad.append(f"{r.status} on {method} {url}: {body[:200]}")
            if r.status == 503:
                doc = HTMLParser(body)
                meta = doc.css_first('meta[http-equiv="refresh"]')
                if r.headers.get("retry-after") is None or meta is None:
                    stats.bad.append(f"503 without Retry-After or refresh on {method} {url}")
                if "continue in a moment" not in doc.css_first("p.message").text():
                    stats.bad.append(f"503 page without the polite message on {method} {url}")
                content = meta.attributes.get("content", "") if meta else ""
                stats.unavailable_pages.append(content)
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                target = content.split("url=", 1)[1] if "url=" in content else url
                base = url.split("/", 3)[:3]
                return await _request(session, stats, "GET", "/".join(base) + target)
            return r.status, r.headers.get("location", ""), body
    except (TimeoutError, aiohttp.ClientError):
        stats.connection_errors += 1
        await asyncio.sleep(0.5)
        return None


async def participant(session, stats: Stats, base: str, slug: str, pid: str, deadline: float) -> None:  # type: ignore[no-untyped-def]
    entry = f"{base}/s/{slug}?PROLIFIC_PID={pid}&STUDY_ID={'a' * 24}&SESSION_ID={pid[::-1]}"
    token = None
    while token is None:
        if time.monotonic() > deadline:
            stats.bad.append(f"{pid}: no entry before the deadline")
            return
        got = await _request(session, stats, "GET", entry)
        if got is None:
            continue
        status, location, _ = got
        if status == 303 and location.startswith("/p/"):
            token = location.rsplit("/", 1)[1]
        else:
            stats.bad.append(f"{pid}: entry answered {status}")
            return
    stats.tokens[pid] = token
    page_url = f"{base}/p/{token}"
    acked = stats.acknowledged.setdefault(pid, {})
    while time.monotonic() < deadline:
        got = await _request(session, stats, "GET", page_url)
        if got is None or got[0] != 200:
            if got is not None:
                stats.bad.append(f"{pid}: page answered {got[0]}")
                return
            continue
        main = HTMLParser(got[2]).css_first("main#page")
        kind, rnd = main.attributes.get("data-page"), int(main.attributes.get("data-round") or 0)
        if kind == "finish":
            stats.completed.add(pid)
            return
        if kind == "consent":
            await _request(session, stats, "POST", f"{page_url}/consent", {"consent": "yes"})
        elif kind == "instructions":
            await _request(session, stats, "POST", f"{page_url}/instructions")
        elif kind == "trial":
            pos = rnd - 1
            label, conf = answer_for(pid, pos)
            sent = await _request(
                session, stats, "POST", f"{page_url}/trial/{pos}", {"label": label, "confidence": conf}
            )
            if sent is not None and sent[0] == 303:
                acked[pos] = (label, conf)
        elif kind == "demographics":
            await _request(session, stats, "POST", f"{page_url}/demographics", demographics_for(pid))
        else:
            stats.bad.append(f"{pid}: unexpected page {kind}")
            return
    stats.bad.append(f"{pid}: not finished before the deadline")


async def burst(
    base_of, slug: str, pids: list[str], concurrency: int, seconds: float, stats: Stats | None = None
) -> Stats:  # type: ignore[no-untyped-def]
    """All pids at once, `concurrency` in flight; base_of(i) picks the server for participant i."""
    import aiohttp

    stats = stats or Stats()
    sem = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(i: int, pid: str) -> None:
        async with sem, aiohttp.ClientSession(timeout=timeout) as session:
            await participant(session, stats, base_of(i), slug, pid, deadline)

    await asyncio.gather(*(one(i, p) for i, p in enumerate(pids)))
    return stats


def check_database(db: Database, slug: str, pids: list[str], stats: Stats) -> None:
    """Against what the clients sent: nothing lost, nothing stored twice, nothing that was not sent."""
    from app.studies.service import get_study

    with db.session() as s:
        study = get_study(s, slug)
        rows = s.execute(select(Participant).where(Participant.study_id == study.id)).scalars().all()
        assert Counter(p.prolific_pid for p in rows) == Counter(pids)  # one participant per PID, no stray ones
        for p in rows:
            assert p.token == stats.tokens[p.prolific_pid]
            assert p.status == "completed" and p.stage == "done", (p.prolific_pid, p.status, p.stage)
            demo = demographics_for(p.prolific_pid)
            assert (str(p.age), p.gender, p.student, p.employment) == (
                demo["age"],
                demo["gender"],
                demo["student"],
                demo["employment"],
            )
            trials = (
                s.execute(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)).scalars().all()
            )
            assert [t.position for t in trials] == list(range(TRIALS))  # no trial row twice or missing
            for t in trials:
                assert t.answered_at is not None  # every answer stored, exactly once (one row, one value)
                assert (t.response_label, t.confidence) == answer_for(p.prolific_pid, t.position)
            for pos, value in stats.acknowledged[p.prolific_pid].items():
                assert (trials[pos].response_label, trials[pos].confidence) == value


async def until_responses(stats: Stats, n: int) -> None:
    """Wait until the burst has had n responses (so that a fault lands in its middle, however slow the machine)."""
    while sum(stats.statuses.values()) < n:
        await asyncio.sleep(0.05)


def _pids(n: int, tag: str) -> list[str]:
    """n Prolific-style ids (24 hex digits), distinct per tag (a hex string)."""
    return [f"{tag}{i:06x}".ljust(24, "0") for i in range(n)]


def _study(db: Database, make_study, slug: str) -> str:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug=slug, trials=TRIALS, pool=TRIALS + 2, target=1000)
    db.dispose()  # the test's own connections would not survive the restart: open new ones for the check
    return slug


# --- the tests ----------------------------------------------------------------------------------


def test_restarting_postgresql_during_a_burst_gives_no_500(private_pg, make_study, wait_http_up) -> None:  # type: ignore[no-untyped-def]
    url = _new_database(private_pg, "faults_restart")
    db = Database(Settings(env="test", database_url=url, secret_key="f" * 40))
    slug = _study(db, make_study, "restart-burst")
    server = Server(url)
    server.start(wait_http_up)
    pids = _pids(200, "a1")
    try:

        async def scenario() -> Stats:
            task = asyncio.create_task(burst(lambda i: server.base, slug, pids, 200, 240, live))
            await until_responses(live, 1200)  # under way: entries, pages and answers in flight
            window[0] = time.monotonic()
            await asyncio.to_thread(private_pg.restart)
            window[1] = time.monotonic()
            return await task

        window = [0.0, 0.0]
        live = Stats()

        stats = asyncio.run(scenario())
        # after recovery: a fresh group of participants sees no error at all
        after = asyncio.run(burst(lambda i: server.base, slug, _pids(20, "a2"), 20, 120))
    finally:
        log = server.output()
        server.stop()
    print(
        f"restart: statuses {dict(stats.statuses)}, 503 pages {len(stats.unavailable_pages)}, "
        f"connection errors {stats.connection_errors}"
    )
    assert stats.bad == [] and stats.statuses[500] == 0
    assert stats.first_response < window[0] and stats.last_response > window[1] + 1  # the restart was mid-burst
    assert "transient database error, retrying once" in log  # requests did hit the outage, and rode through it
    assert stats.completed == set(pids)
    assert after.bad == [] and set(after.statuses) <= {200, 303} and after.connection_errors == 0
    check_database(db, slug, pids + _pids(20, "a2"), _merge(stats, after))
    db.dispose()


def _merge(a: Stats, b: Stats) -> Stats:
    a.tokens.update(b.tokens)
    a.acknowledged.update(b.acknowledged)
    return a


def test_database_down_gives_a_polite_503_that_retries_then_recovers(private_pg, make_study, wait_http_up) -> None:  # type: ignore[no-untyped-def]
    url = _new_database(private_pg, "faults_down")
    db = Database(Settings(env="test", database_url=url, secret_key="f" * 40))
    slug = _study(db, make_study, "down")
    server = Server(url, workers=1)
    server.start(wait_http_up)
    import httpx

    try:
        with httpx.Client(base_url=server.base, follow_redirects=False, timeout=30) as c:
            loc = c.get(f"/s/{slug}", params={"PROLIFIC_PID": "d" * 24}).headers["location"]
            c.post(f"{loc}/consent", data={"consent": "yes"})
            c.post(f"{loc}/instructions")
            with db.session() as s:
                image = f"/img/{s.scalar(select(Stimulus.public_id))}"
            db.dispose()
            private_pg.stop()
            try:
                for method, path, data, refresh in (
                    ("GET", loc, None, loc),
                    ("POST", f"{loc}/trial/0", {"label": "3", "confidence": "2"}, loc),
                    ("GET", f"/s/{slug}?PROLIFIC_PID={'e' * 24}", None, f"/s/{slug}?PROLIFIC_PID={'e' * 24}"),
                    ("GET", image, None, image),
                ):
                    t0 = time.monotonic()
                    r = c.request(method, path, data=data)
                    assert r.status_code == 503, (method, path, r.status_code, r.text[:300])
                    assert r.headers["retry-after"].isdigit() and r.headers["cache-control"] == "no-store"
                    assert "content-security-policy" in r.headers
                    doc = HTMLParser(r.text)
                    assert doc.css_first("h1").text() == "One moment, please"
                    assert "The study will continue in a moment" in doc.css_first("p.message").text()
                    meta = doc.css_first('meta[http-equiv="refresh"]').attributes["content"]
                    assert meta == f"{r.headers['retry-after']};url={refresh}", meta
                    if not path.startswith("/admin"):
                        assert time.monotonic() - t0 >= 0.9  # retried once before giving up
            finally:
                private_pg.start()
            # the pool recovers by itself: the same participant goes on, nothing restarted
            deadline = time.monotonic() + 30
            while (r := c.get(loc)).status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert r.status_code == 200 and HTMLParser(r.text).css_first("main#page").attributes["data-page"] == "trial"
            assert c.post(f"{loc}/trial/0", data={"label": "3", "confidence": "2"}).status_code == 303
            assert c.get(image).status_code == 200
    finally:
        server.stop()
    with db.session() as s:
        t = s.scalar(select(Trial).join(Participant).where(Participant.prolific_pid == "d" * 24, Trial.position == 0))
        assert (t.response_label, t.confidence) == (3, 2)
        assert s.scalar(select(Participant.id).where(Participant.prolific_pid == "e" * 24)) is None
    db.dispose()


def test_killing_a_server_worker_then_the_whole_server_loses_nothing(private_pg, make_study, wait_http_up) -> None:  # type: ignore[no-untyped-def]
    url = _new_database(private_pg, "faults_kill")
    db = Database(Settings(env="test", database_url=url, secret_key="f" * 40))
    slug = _study(db, make_study, "kill-burst")
    server = Server(url)
    server.start(wait_http_up)
    pids = _pids(150, "b1")
    try:

        async def scenario() -> Stats:
            task = asyncio.create_task(burst(lambda i: server.base, slug, pids, 150, 300, live))
            await until_responses(live, 800)
            victims = await asyncio.to_thread(server_children, server)
            assert victims, "no uvicorn worker process found"
            os.kill(victims[0], signal.SIGKILL)  # one worker, mid-burst
            await until_responses(live, 1600)
            await asyncio.to_thread(server.kill)  # then the whole server
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.start, wait_http_up)  # and start it again, same port
            return await task

        live = Stats()
        stats = asyncio.run(scenario())
        after = asyncio.run(burst(lambda i: server.base, slug, _pids(20, "b2"), 20, 120))
    finally:
        out = server.output()
        server.stop()
    print(f"kill: statuses {dict(stats.statuses)}, connection errors {stats.connection_errors}")
    assert stats.bad == [] and stats.statuses[500] == 0, (stats.bad[:5], out[-2000:])
    assert stats.connection_errors > 0  # the kills really cut requests off
    assert stats.completed == set(pids)
    assert after.bad == [] and set(after.statuses) <= {200, 303} and after.connection_errors == 0
    check_database(db, slug, pids + _pids(20, "b2"), _merge(stats, after))
    db.dispose()


def server_children(server: Server) -> list[int]:
    assert server.proc is not None
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
    workers = []
    for p in out:
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "resource_tracker" not in cmd:
            workers.append(int(p))
    return workers
