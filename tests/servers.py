"""Real server processes for the tests that need one: a free port, uvicorn on a database, stopped at the end.

`uvicorn_server(env)` is the usual form (start, wait for /healthz, yield the base URL, stop); `start_uvicorn`,
`wait_http_up` and `stop_server` are its steps, for tests that start several servers or report a failed start
their own way. `lpstudy serve` as a process group (tests/app/test_db_faults.py) keeps its own class.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(url: str, secret_key: str, **extra: str) -> dict[str, str]:
    """This process's environment plus a test server's database, env and secret key (and any `extra`)."""
    return {**os.environ, "LPSTUDY_DATABASE_URL": url, "LPSTUDY_ENV": "test", "LPSTUDY_SECRET_KEY": secret_key,
            **extra}  # fmt: skip


def wait_http_up(proc: subprocess.Popen[bytes], base: str, timeout: float = 60) -> None:
    """Poll GET {base}/healthz until it answers 200; fail with the server's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server {base} did not start:\n{out[-2000:]}")
        time.sleep(0.1)


def start_uvicorn(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`uvicorn app.asgi:app` on a free port of 127.0.0.1 (output to a pipe): (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.asgi:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def uvicorn_server(env: dict[str, str], timeout: float = 60) -> Iterator[str]:
    """A running server's base URL; the server is stopped when the block ends."""
    proc, base = start_uvicorn(env)
    try:
        wait_http_up(proc, base, timeout)
        yield base
    finally:
        stop_server(proc)
