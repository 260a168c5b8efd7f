"""`lpstudy analyze` speed on a study of 1,000 participants x 25 answers (issue #9: under 5 s on one core,
bootstrap included).

Part 1, from the database: the study is written to a fresh SQLite file, then `lpstudy analyze SLUG --json` runs
in a subprocess pinned to one core (whole command: interpreter start, imports, loading, analysis, JSON), and
in-process the load and the analysis are timed apart. Reference in the same run: one SQL query for the answers
and per-user accuracy with numpy (the floor any analysis pays); the table gives the ratio to it.
Part 2, the analysis alone on synthetic data in three sizes, with 100 and 2000 bootstrap resamples. The
mixed-effects model is timed on a paper-sized study (201 participants): above 8,000 answers analyze skips it.
Times are process CPU seconds (robust to other load on a shared machine) and wall seconds.

    .venv/bin/python bench/bench_analysis.py            # prints a table for BENCHMARKS.md
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import dataclasses  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

from app.analysis import analyze  # noqa: E402
from app.analysis.synthetic import PAPER, ConditionSpec, synthetic_study  # noqa: E402
from app.studies.schema import Analysis  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


STUDY = """
slug = "bench-analysis"
title = "Benchmark"
dataset = "mnist"
norm = "l0"
trials_per_participant = 25
participants_per_condition = 400
[completion_codes]
completed = "C1DONE"
no_consent = "C1NO"
failed_attention = "C1FAIL"
[texts]
consent = "c"
instructions = "i"
"""


def _sized(conditions: dict[str, ConditionSpec], n: int) -> dict[str, ConditionSpec]:
    """The same conditions with n participants in all (CB takes the remainder)."""
    per = n // 3
    return {c: ConditionSpec(per + (n - 3 * per if c == "CB" else 0), v.accuracy, v.confidence)
            for c, v in conditions.items()}  # fmt: skip


def build_db(path: str, n: int) -> str:
    """A SQLite study with n participants x 25 answers (plus 2 attention checks each), written with Core inserts."""
    import numpy as np
    from sqlalchemy import insert

    from app.config import Settings
    from app.db import Database, upgrade
    from app.models import Participant, Trial
    from app.stimuli.service import add_stimulus
    from app.studies.service import create_study

    url = f"sqlite:///{path}"
    upgrade(url)
    spec = PAPER["l0"]
    big = dataclasses.replace(spec, conditions=_sized(spec.conditions, n))
    data = synthetic_study(big, seed=2, extra_excluded=False)
    db = Database(Settings(env="test", database_url=url, secret_key="b" * 40))
    rng = np.random.default_rng(0)
    with db.session() as s:
        study = create_study(s, STUDY)
        cond = {c.code: c for c in study.conditions}
        sid = {}
        for st in data.stimuli:
            px = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            row = add_stimulus(s, study, cond[st.condition], image_index=st.image_index, label=st.label, pixels=px,
                               extra=st.metrics)  # fmt: skip
            s.flush()
            sid[st.id] = row.id
        pid = {}
        for p in data.participants:
            pid[p.key] = s.execute(insert(Participant).values(
                study_id=study.id, condition_id=cond[p.condition].id, token=p.key[:32], prolific_pid=p.key,
                status=p.status, stage="done", started_at=p.started_at, last_seen_at=p.finished_at,
                finished_at=p.finished_at, age=p.age, gender=p.gender, student=p.student, employment=p.employment,
                attention_failures=p.attention_failures).returning(Participant.id)).scalar_one()  # fmt: skip
        rows = [{"participant_id": pid[t.participant], "position": t.position, "kind": t.kind,
                 "stimulus_id": sid.get(t.stimulus_id) if t.stimulus_id else None,
                 "expected_label": t.truth if t.kind == "attention" else None, "response_label": t.response,
                 "confidence": t.confidence, "rt_ms": t.rt_ms, "answered_at": data.participants[0].finished_at}
                for t in data.trials]  # fmt: skip
        s.execute(insert(Trial), rows)
    db.dispose()
    return url


def reference(url: str) -> None:
    """The floor: one query for the answers, per-user accuracy with numpy."""
    import numpy as np
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as c:
        rows = c.execute(text(
            "SELECT t.participant_id, t.response_label = s.label FROM trials t JOIN stimuli s ON s.id = t.stimulus_id"
            " WHERE t.kind = 'stimulus' AND t.response_label IS NOT NULL")).all()  # fmt: skip
    a = np.array(rows, dtype=float)
    _, inv = np.unique(a[:, 0], return_inverse=True)
    (np.bincount(inv, weights=a[:, 1]) / np.bincount(inv)).mean()
    eng.dispose()


def bench_db(n: int = 1000) -> None:
    import subprocess
    import sys
    import tempfile

    from sqlalchemy.orm import Session

    from app.analysis.service import analyze_study
    from app.db import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        url = build_db(f"{tmp}/bench.db", n)
        ref_cpu, ref_wall = timed(lambda: reference(url))
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        import resource

        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "app.cli", "analyze", "bench-analysis",
                               "--json", "--database-url", url], env=env, capture_output=True, text=True)  # fmt: skip
        cli_wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        engine = make_engine(url)
        with Session(engine) as s:
            from app.analysis.service import study_data

            load_cpu, load_wall = timed(lambda: study_data(s, "bench-analysis"))
            all_cpu, all_wall = timed(lambda: analyze_study(s, "bench-analysis"))
        engine.dispose()
    print(f"From the database (SQLite), {n} participants x 25 answers, bootstrap 2000:")
    print("| step | CPU s | wall s | x reference (CPU) |")
    print("|---|---|---|---|")
    print(f"| reference: one query + per-user accuracy (numpy) | {ref_cpu:.2f} | {ref_wall:.2f} | 1.0 |")
    print(f"| load_study (the loader) | {load_cpu:.2f} | {load_wall:.2f} | {load_cpu / ref_cpu:.1f} |")
    print(f"| load + analyze (in process) | {all_cpu:.2f} | {all_wall:.2f} | {all_cpu / ref_cpu:.1f} |")
    print(f"| `lpstudy analyze SLUG --json` (whole command, one core) | {cli_cpu:.2f} | {cli_wall:.2f} | "
          f"{cli_cpu / ref_cpu:.1f} |")  # fmt: skip
    print()


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    spec = PAPER["l0"]
    print(f"# {time.strftime('%Y-%m-%d')} | {cpu_name()} | python {platform.python_version()} | one core")
    print()
    bench_db()
    print("The analysis alone (synthetic data in memory):")
    print("| participants x answers | bootstrap resamples | mixed model | CPU s | wall s |")
    print("|---|---|---|---|---|")
    for n in (201, 1000, 3000):
        big = dataclasses.replace(spec, conditions=_sized(spec.conditions, n))
        for resamples in (100, 2000):
            data = synthetic_study(big, seed=1, extra_excluded=False, options=Analysis(bootstrap_resamples=resamples))
            cpu, wall = timed(lambda data=data: analyze(data, mixed=False))
            print(f"| {n} x 25 | {resamples} | off | {cpu:.2f} | {wall:.2f} |")
    data = synthetic_study(spec, seed=1, extra_excluded=False)
    cpu, wall = timed(lambda: analyze(data, mixed=True))
    print(f"| 201 x 25 (the paper's L0) | 2000 | on | {cpu:.2f} | {wall:.2f} |")


if __name__ == "__main__":
    main()
