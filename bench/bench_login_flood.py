#!/usr/bin/env python3
"""A participant walk with and without a flood of wrong admin logins, in one run.

Each scenario: a fresh SQLite database (a study with 3 conditions, 10 trials, synthetic stimuli, one admin with
the production argon2 parameters), a fresh `uvicorn app.asgi:app` (one process), then N participants walked by
C threads through every page (entry, consent, instructions, trials, demographics) while F threads post wrong
passwords to /admin/login as fast as the server answers. Printed: the walk's wall time, per-request p50/p95,
and the ratio to the no-flood walk of the same code in the same run.

The flood runs in its own process (its threads would otherwise take the walkers' GIL in this one); it still
shares the machine's cores with the server and the walkers.

Scenarios: `quiet` (no flood), `flood` (16 wrong logins at a time, default throttling: one address, so the
address limit soon answers 429 without hashing; then from memory, after the 1 s refusal pause), `flood, no
refusal pause` (the same with LPSTUDY_LOGIN_REFUSAL_DELAY_S=0: what answering every flood request at once
costs), `flood-unthrottled` (throttling limits set out of reach: every attempt is hashed, as a flood from many
addresses would be; only the hashing thread bounds it), and with
`--before-ref REF` the same quiet/flood pair for the code at REF (its app/, migrations/, templates/, static/
from `git archive`), e.g. fbc584d, before the bound.

  .venv/bin/python bench/bench_login_flood.py [--participants 60] [--concurrency 8] [--flood 16] [--before-ref fbc584d]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SLUG = "flood-bench"
ADMIN, PASSWORD = "bench@example.org", "the right password 123"
STUDY = f"""
slug = "{SLUG}"
title = "Login flood benchmark"
dataset = "mnist"
norm = "l0"
trials_per_participant = 10
conditions = ["CB", "CAI", "CAP"]
participants_per_condition = 100000
timeout_minutes = 60

[completion_codes]
completed = "CBENCHDONE"
no_consent = "CBENCHNOCONS"
failed_attention = "CBENCHFAIL"

[texts]
consent = "Benchmark."
instructions = "Benchmark."
"""


def setup(db_url: str) -> None:
    """Run inside the code under test (its PYTHONPATH): migrate, create the study and the admin."""
    import numpy as np

    from app.admin.auth import create_user
    from app.config import Settings
    from app.db import Database, upgrade
    from app.stimuli.service import add_stimulus
    from app.studies.service import activate_study, create_study

    upgrade(db_url)
    db = Database(Settings(database_url=db_url))
    rng = np.random.default_rng(0)
    with db.session() as s:
        study = create_study(s, STUDY)
        for cond in study.conditions:
            for i in range(30):
                px = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
                add_stimulus(s, study, cond, image_index=i, label=i % 10, pixels=px, extra={"l0": 1})
        s.flush()
        activate_study(s, study)
        create_user(s, ADMIN, PASSWORD)
    db.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def walk_one(base: str, latencies: list[float]) -> None:
    pid = "".join(random.choice("0123456789abcdef") for _ in range(24))
    with httpx.Client(base_url=base, follow_redirects=False, timeout=120) as c:

        def req(method: str, url: str, **kw):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            r = c.request(method, url, **kw)
            latencies.append(time.perf_counter() - t)
            if r.status_code >= 400:
                raise RuntimeError(f"{method} {url}: {r.status_code}")
            return r

        url = req("GET", f"/s/{SLUG}", params={"PROLIFIC_PID": pid}).headers["location"]
        req("GET", url)
        req("POST", f"{url}/consent", data={"consent": "yes"})
        req("GET", url)
        req("POST", f"{url}/instructions")
        for _ in range(20):
            page = req("GET", url).text
            m = re.search(r'id="trial-form"[^>]*action="([^"]+)"', page) or re.search(
                r'action="([^"]+)"[^>]*id="trial-form"', page
            )
            if not m:
                break
            img = re.search(r'src="(/img/[^"]+)"', page)
            if img:
                req("GET", img.group(1))
            req("POST", m.group(1), data={"label": "3", "confidence": "4"})
        demo = {"age": "30", "gender": "female", "student": "no", "employment": "other"}
        req("POST", f"{url}/demographics", data=demo)


def flood(base: str, stop: threading.Event, counts: dict[int, int]) -> None:
    with httpx.Client(base_url=base, follow_redirects=False, timeout=120) as c:
        while not stop.is_set():
            try:
                form = c.get("/admin/login").text
                token = re.search(r'name="csrf_token" value="([^"]+)"', form)
                r = c.post(
                    "/admin/login",
                    data={
                        "email": f"u{random.randrange(10**6)}@example.org",
                        "password": "wrong",
                        "csrf_token": token.group(1) if token else "",
                    },
                )
                counts[r.status_code] = counts.get(r.status_code, 0) + 1
            except httpx.HTTPError:
                counts[0] = counts.get(0, 0) + 1


def flood_process(base: str, flooders: int, stop, out) -> None:  # type: ignore[no-untyped-def]
    """The flood in its own process (as an attacker's would be on its own machine): its threads do not take the
    walkers' GIL in the benchmark process, only the machine's cores."""
    inner, counts = threading.Event(), {}  # type: ignore[var-annotated]
    threads = [threading.Thread(target=flood, args=(base, inner, counts)) for _ in range(flooders)]
    for t in threads:
        t.start()
    stop.wait()
    inner.set()
    for t in threads:
        t.join()
    out.put(counts)


def scenario(
    name: str,
    tree: Path,
    args: argparse.Namespace,
    flooders: int,
    unthrottled: bool,
    extra_env: dict | None = None,  # type: ignore[type-arg]
) -> dict:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.db"
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "LPSTUDY_DATABASE_URL": db_url,
            "LPSTUDY_SECRET_KEY": "b" * 48,
            "LPSTUDY_ENV": "development",
            "LPSTUDY_LOG_LEVEL": "WARNING",
        }
        env.update(extra_env or {})
        if unthrottled:
            env.update(LPSTUDY_LOGIN_MAX_FAILURES_ACCOUNT="100000000", LPSTUDY_LOGIN_MAX_FAILURES_ADDRESS="100000000")
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--setup", db_url], env=env, check=True, cwd=tree
        )
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.asgi:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=tree,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{name}: server did not start")
                time.sleep(0.2)
            ctx = multiprocessing.get_context("fork")
            stop, out = ctx.Event(), ctx.Queue()
            flooder = ctx.Process(target=flood_process, args=(base, flooders, stop, out)) if flooders else None
            if flooder:
                flooder.start()
            if flooders:
                time.sleep(2)  # let the flood build up
            latencies: list[float] = []
            todo = list(range(args.participants))
            lock = threading.Lock()
            errors: list[str] = []

            def worker() -> None:
                while True:
                    with lock:
                        if not todo:
                            return
                        todo.pop()
                    try:
                        walk_one(base, latencies)
                    except Exception as exc:  # noqa: BLE001 - reported below
                        errors.append(str(exc))

            t0 = time.perf_counter()
            walkers = [threading.Thread(target=worker) for _ in range(args.concurrency)]
            for t in walkers:
                t.start()
            for t in walkers:
                t.join()
            wall = time.perf_counter() - t0
            stop.set()
            counts = out.get(timeout=120) if flooder else {}
            if flooder:
                flooder.join(30)
        finally:
            os.killpg(server.pid, 15)
            server.wait(10)
    lat = sorted(latencies)
    return {
        "name": name,
        "wall_s": wall,
        "p50_ms": 1000 * statistics.median(lat),
        "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
        "requests": len(lat),
        "errors": len(errors),
        "logins": dict(sorted(counts.items())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", help=argparse.SUPPRESS)
    p.add_argument("--participants", type=int, default=60)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--flood", type=int, default=16)
    p.add_argument("--before-ref", default=None)
    args = p.parse_args()
    if args.setup:
        setup(args.setup)
        return
    runs = []
    with tempfile.TemporaryDirectory() as old:
        trees = [("now", REPO)]
        if args.before_ref:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.before_ref, "app", "migrations", "templates", "static"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            trees.append((args.before_ref, Path(old)))
        for label, tree in trees:
            quiet = scenario(f"{label}: quiet", tree, args, 0, False)
            runs.append((quiet, quiet))
            runs.append((scenario(f"{label}: flood x{args.flood}", tree, args, args.flood, False), quiet))
            if label == "now":
                runs.append(
                    (scenario(f"{label}: flood x{args.flood}, unthrottled", tree, args, args.flood, True), quiet)
                )
                nopause = {"LPSTUDY_LOGIN_REFUSAL_DELAY_S": "0"}
                runs.append(
                    (
                        scenario(
                            f"{label}: flood x{args.flood}, no refusal pause", tree, args, args.flood, False, nopause
                        ),
                        quiet,
                    )
                )
    print(f"{args.participants} participants, {args.concurrency} at a time; {os.cpu_count()} CPUs")  # noqa: T201
    print("| scenario | walk (s) | vs quiet | p50 (ms) | p95 (ms) | requests | errors | login answers |")  # noqa: T201
    print("|---|---|---|---|---|---|---|---|")  # noqa: T201
    for r, ref in runs:
        print(
            f"| {r['name']} | {r['wall_s']:.1f} | {r['wall_s'] / ref['wall_s']:.2f}x | {r['p50_ms']:.0f} | "  # noqa: T201
            f"{r['p95_ms']:.0f} | {r['requests']} | {r['errors']} | {r['logins']} |"
        )


if __name__ == "__main__":
    main()
