#!/usr/bin/env python3
"""300 simultaneous first entries: entry latency (p50/p95/p99/max) and the balance they leave, for one or more
versions of lpstudy's code in the same run (`lpstudy serve --workers 2`-equivalent uvicorn, PostgreSQL).

  .venv/bin/python bench/load/bench_entry.py --n 300 [--before REF] [--repeats 1]

Each version gets a fresh database with the benchmark study (bench/load/make_study.py), one server with W
workers, and N clients that all send their entry GET at the same moment (one connection each, like separate
browsers). After the burst: one participant per PID, counts per condition (balanced within +-1?), and the server
CPU per entry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PG = os.environ.get("PG", "postgresql://postgres@127.0.0.1:5432")
PY = str(REPO / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def psql(sql: str) -> None:
    subprocess.run(["psql", "-q", f"{PG}/postgres", "-c", sql], check=True, capture_output=True)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (from /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    out = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    for p in set(out) | {str(pid)}:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except (OSError, IndexError):
            pass
    return total


async def burst(base: str, slug: str, pids: list[str]) -> list[tuple[int, float]]:
    import aiohttp

    go = asyncio.Event()

    async def one(pid: str) -> tuple[int, float]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            await go.wait()
            t0 = time.perf_counter()
            async with s.get(
                f"{base}/s/{slug}",
                params={"PROLIFIC_PID": pid, "STUDY_ID": "a" * 24, "SESSION_ID": pid[::-1]},
                allow_redirects=False,
            ) as r:
                await r.read()
                return r.status, time.perf_counter() - t0

    tasks = [asyncio.create_task(one(p)) for p in pids]
    await asyncio.sleep(0.5)
    go.set()
    return await asyncio.gather(*tasks)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_one(name: str, code: Path, n: int, workers: int, tag: str, profile: str | None = None) -> dict:
    db = f"lpstudy_bench_entry_{tag}"
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    psql(f"CREATE DATABASE {db}")
    url = f"{PG}/{db}"
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "LPSTUDY_DATABASE_URL": url,
        "LPSTUDY_ENV": "development",  # as `lpstudy serve` runs (not "test": the app skips its start-up work)
        "LPSTUDY_SECRET_KEY": "b" * 40,
    }
    subprocess.run([PY, "-c", f"from app.db import upgrade; upgrade({url!r})"], env=env, check=True, cwd=code)
    subprocess.run(
        [PY, str(REPO / "bench/load/make_study.py"), "--database-url", url, "--pool", "100"],
        env=env,
        check=True,
        capture_output=True,
        cwd=code,
    )
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-entry-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "uvicorn",
            "app.asgi:app",
            "--workers",
            str(workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-keep-alive",
            "75",
        ],
        env=env,
        cwd=code,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(240):
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.25)
    time.sleep(1.0)
    pids = [f"{tag[:6]:0<6}{i:018x}"[:24] for i in range(n)]
    pids = [p if all(c in "0123456789abcdef" for c in p) else f"{i:024x}" for i, p in enumerate(pids)]
    spies = []
    if profile:  # py-spy on each of this server's worker processes, for the burst
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        for k in kids:
            spies.append(
                subprocess.Popen(
                    [
                        str(REPO / ".venv/bin/py-spy"),
                        "record",
                        "-p",
                        k,
                        "-r",
                        "250",
                        "-f",
                        "raw",
                        "--nonblocking",
                        "-o",
                        f"{profile}.{name}.{k}.txt",
                        "-d",
                        "30",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(1.0)
    cpu0 = tree_cpu(proc.pid)
    t0 = time.perf_counter()
    results = asyncio.run(burst(base, "bench", pids))
    wall = time.perf_counter() - t0
    cpu = tree_cpu(proc.pid) - cpu0
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        spy.wait(30)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    import psycopg

    with psycopg.connect(url) as c:
        counts = dict(
            c.execute(
                "SELECT c.code, count(p.id) FROM conditions c LEFT JOIN participants p ON p.condition_id = c.id "
                "GROUP BY c.code ORDER BY c.code"
            ).fetchall()
        )
        dup = c.execute("SELECT count(*) - count(DISTINCT prolific_pid) FROM participants").fetchone()[0]
        total = c.execute("SELECT count(*) FROM participants").fetchone()[0]
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    lat = [t for s, t in results if s == 303]
    out = {
        "name": name,
        "n": n,
        "workers": workers,
        "ok": len(lat),
        "errors": n - len(lat),
        "p50_ms": round(pct(lat, 0.5) * 1000, 1) if lat else None,
        "p95_ms": round(pct(lat, 0.95) * 1000, 1) if lat else None,
        "p99_ms": round(pct(lat, 0.99) * 1000, 1) if lat else None,
        "max_ms": round(max(lat) * 1000, 1) if lat else None,
        "wall_s": round(wall, 2),
        "server_cpu_ms_per_entry": round(cpu / n * 1000, 2),
        "counts": counts,
        "balanced": max(counts.values()) - min(counts.values()) <= 1,
        "participants": total,
        "duplicate_pids": dup,
        "load1": os.getloadavg()[0],
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--before", help="a git ref to measure too, in the same run")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--profile", help="py-spy raw output prefix (one file per server worker)")
    args = ap.parse_args()
    versions = [("lpstudy", REPO)]
    if args.before:
        d = Path(tempfile.mkdtemp(prefix="bench-entry-before-"))
        subprocess.run(
            f"git -C {REPO} archive {args.before} app templates static migrations | tar -x -C {d}",
            shell=True,
            check=True,
        )
        versions.insert(0, (f"lpstudy-before({args.before})", d))
    for r in range(args.repeats):
        for i, (name, code) in enumerate(versions):
            run_one(name, code, args.n, args.workers, f"r{r}v{i}", args.profile)


if __name__ == "__main__":
    main()
