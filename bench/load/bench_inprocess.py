#!/usr/bin/env python3
"""In-process participant walks against the ASGI app: server CPU per request without HTTP or a separate client.

  .venv/bin/python bench/load/bench_inprocess.py [--n 60] [--conc 20] [--before REF] [--profile out.prof]

Each version (this tree, and with --before the app/, templates/, static/, migrations/ of REF from `git archive`)
runs in its own process: a fresh PostgreSQL database with the benchmark study (make_study.py), the app from
create_app, and N participants (C at a time) walked through every page by calling the ASGI app directly
(entry, consent, instructions, 25 x trial GET + image + POST, demographics, finish). Printed per version: requests,
wall time, and the process's CPU per request (the event loop and the database threads together; PostgreSQL's own
CPU is not in it); then the ratio. This is where the participant path's CPU went from 1.03 to 0.56 ms per request
(BENCHMARKS.md, issue 12). The walker's own parsing is a few percent of the total.
"""

import argparse
import asyncio
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=60)
ap.add_argument("--conc", type=int, default=20)
ap.add_argument("--profile")
ap.add_argument("--code", default=str(Path(__file__).resolve().parents[2]))
ap.add_argument("--before", help="a git ref to measure too, in the same run")
ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
ap.add_argument("--db", default="lpstudy_prof")
args = ap.parse_args()
if not args.child:
    versions = [("now", args.code)]
    tmp = None
    if args.before:
        tmp = tempfile.TemporaryDirectory()
        repo = Path(args.code)
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", args.before, "app", "templates", "static", "migrations"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp.name], input=archive, check=True)
        (Path(tmp.name) / "bench").symlink_to(repo / "bench")
        versions.insert(0, (f"before ({args.before})", tmp.name))
    cpu = {}
    for name, code in versions:
        cmd = [sys.executable, __file__, "--child", "--code", code, "--n", str(args.n), "--conc", str(args.conc)]
        out = subprocess.run(
            cmd, check=True, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=code)
        ).stdout
        line = out.strip().splitlines()[-1]
        print(f"{name}: {line}")
        cpu[name] = float(line.rsplit("CPU ", 1)[1].split()[0])
    if len(cpu) == 2:
        (b, vb), (a, va) = cpu.items()
        print(f"CPU per request {b} / {a}: {vb / va:.2f}x")
    sys.exit(0)
sys.path.insert(0, args.code)
PG = "postgresql://postgres@127.0.0.1:5432"
subprocess.run(
    [
        "psql",
        "-q",
        f"{PG}/postgres",
        "-c",
        f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)",
        "-c",
        f"CREATE DATABASE {args.db}",
    ],
    check=True,
)
url = f"{PG}/{args.db}"
subprocess.run(
    [sys.executable, f"{args.code}/bench/load/make_study.py", "--database-url", url],
    check=True,
    capture_output=True,
    env=dict(os.environ, PYTHONPATH=args.code),
)
os.environ["LPSTUDY_DATABASE_URL"] = url
os.environ.setdefault("LPSTUDY_ENV", "production")
os.environ.setdefault("LPSTUDY_SECRET_KEY", "x" * 48)
from app.config import Settings  # noqa: E402 - after the environment is set
from app.main import create_app  # noqa: E402

app = create_app(Settings())


async def call(method, path, query=b"", body=b""):
    headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/120")]
    if body:
        headers += [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "root_path": "",
    }
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    out = {"status": 0, "headers": [], "body": b""}

    async def send(m):
        if m["type"] == "http.response.start":
            out["status"] = m["status"]
            out["headers"] = m["headers"]
        else:
            out["body"] += m.get("body", b"")

    await app(scope, receive, send)
    return out


def loc(r):
    for k, v in r["headers"]:
        if k == b"location":
            return v.decode()


counts = {}


async def walk(i):
    pid = secrets.token_hex(12)
    r = await call("GET", "/s/bench", f"PROLIFIC_PID={pid}&STUDY_ID={'a' * 24}&SESSION_ID={'b' * 24}".encode())
    assert r["status"] == 303, r
    page = loc(r)
    tok = page.split("/p/")[1]
    steps = 1
    while True:
        r = await call("GET", page)
        steps += 1
        assert r["status"] == 200, (r["status"], r["body"][:300])
        html = r["body"].decode()
        m = re.search(r'data-page="([a-z_]+)"', html)
        kind = m.group(1)
        if kind == "consent":
            body = b"consent=yes&dpr=1&vw=1200&vh=800&sw=1920&sh=1080&touch=0"
            act = f"/p/{tok}/consent"
        elif kind == "instructions":
            body = b""
            act = f"/p/{tok}/instructions"
        elif kind == "trial":
            act = re.search(r'action="([^"]+)"', html).group(1)
            img = re.search(r'src="(/img/[^"]+)"', html)
            if img:
                ri = await call("GET", img.group(1))
                steps += 1
                assert ri["status"] == 200
            body = b"label=3&confidence=4&rt_ms="
        elif kind == "demographics":
            body = b"age=30&gender=female&student=no&employment=full-time"
            act = f"/p/{tok}/demographics"
        else:
            break
        r = await call("POST", act, body=body)
        steps += 1
        assert r["status"] == 303, (kind, r["status"], r["body"][:500])
    return steps


async def main():
    sem = asyncio.Semaphore(args.conc)

    async def one(i):
        async with sem:
            return await walk(i)

    await walk(-1)  # warm
    t0 = time.perf_counter()
    c0 = time.process_time()
    steps = await asyncio.gather(*(one(i) for i in range(args.n)))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    n = sum(steps)
    print(
        f"{args.n} walks, {n} requests, wall {wall:.2f}s, {n / wall:.0f} req/s, process CPU {cpu * 1000 / n:.3f} ms/req"
    )


if args.profile:
    import cProfile

    pr = cProfile.Profile()
    pr.enable()
    asyncio.run(main())
    pr.disable()
    pr.dump_stats(args.profile)
else:
    import uvloop

    uvloop.run(main())
