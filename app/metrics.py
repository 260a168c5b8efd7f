"""Prometheus metrics in the text exposition format, without a client library.

Each server process counts its requests (by method, route template and status) and their durations (a
histogram) in memory: on the hot path that is one dict update under a lock. A background thread writes the
process's totals to ``<state_dir>/metrics/<pid>.json`` every few seconds; ``/metrics`` (only when
``LPSTUDY_METRICS_TOKEN`` is set, for that bearer token or a logged-in admin) adds up the files of every process
of this installation, so a scrape through any worker of ``serve --workers N`` sees the whole server. Files of
processes that ended stay and keep counting (counters never go down).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FLUSH_S = 5.0


class Metrics:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # (method, route, status) -> [count, sum_s, bucket counts...]
        self._series: dict[tuple[str, str, int], list[float]] = {}
        self._db_unavailable = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the hot path -------------------------------------------------------------------------------------
    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        with self._lock:
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = [0.0] * (2 + len(BUCKETS))
            s[0] += 1
            s[1] += seconds
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    s[2 + i] += 1
                    break

    def db_unavailable(self) -> None:
        with self._lock:
            self._db_unavailable += 1

    # -- per-process snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        with self._lock:
            return {
                "series": [[*k, *v] for k, v in self._series.items()],
                "db_unavailable": self._db_unavailable,
            }

    def flush(self) -> None:
        path = self.directory / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, path)

    def start(self) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(FLUSH_S):
                self.flush()

        self._thread = threading.Thread(target=loop, name="lpstudy-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.flush()

    # -- the exposition -------------------------------------------------------------------------------------
    def exposition(self) -> str:
        self.flush()  # this process's own numbers are current
        totals: dict[tuple[str, str, int], list[float]] = {}
        unavailable = 0
        for f in self.directory.glob("*.json"):
            try:
                snap = json.loads(f.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now: the next scrape has it
            unavailable += int(snap.get("db_unavailable", 0))
            for row in snap.get("series", []):
                key = (str(row[0]), str(row[1]), int(row[2]))
                acc = totals.setdefault(key, [0.0] * (2 + len(BUCKETS)))
                for i, v in enumerate(row[3:]):
                    acc[i] += v
        lines = [
            "# HELP lpstudy_http_requests_total HTTP requests answered, by method, route template and status.",
            "# TYPE lpstudy_http_requests_total counter",
        ]
        for (m, r, st), v in sorted(totals.items()):
            lines.append(f'lpstudy_http_requests_total{{method="{m}",route="{_esc(r)}",status="{st}"}} {int(v[0])}')
        lines += [
            "# HELP lpstudy_http_request_duration_seconds Time from request to the end of the response.",
            "# TYPE lpstudy_http_request_duration_seconds histogram",
        ]
        by_route: dict[tuple[str, str], list[float]] = {}
        for (m, r, _st), v in totals.items():
            acc = by_route.setdefault((m, r), [0.0] * (2 + len(BUCKETS)))
            for i, x in enumerate(v):
                acc[i] += x
        for (m, r), v in sorted(by_route.items()):
            labels = f'method="{m}",route="{_esc(r)}"'
            cum = 0.0
            for i, b in enumerate(BUCKETS):
                cum += v[2 + i]
                lines.append(f'lpstudy_http_request_duration_seconds_bucket{{{labels},le="{b}"}} {int(cum)}')
            lines.append(f'lpstudy_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {int(v[0])}')
            lines.append(f"lpstudy_http_request_duration_seconds_sum{{{labels}}} {v[1]:.6f}")
            lines.append(f"lpstudy_http_request_duration_seconds_count{{{labels}}} {int(v[0])}")
        lines += [
            "# HELP lpstudy_db_unavailable_total Requests answered 503 because the database could not be reached.",
            "# TYPE lpstudy_db_unavailable_total counter",
            f"lpstudy_db_unavailable_total {unavailable}",
            "# HELP lpstudy_metrics_scrape_timestamp_seconds When this exposition was made.",
            "# TYPE lpstudy_metrics_scrape_timestamp_seconds gauge",
            f"lpstudy_metrics_scrape_timestamp_seconds {time.time():.3f}",
        ]
        return "\n".join(lines) + "\n"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
