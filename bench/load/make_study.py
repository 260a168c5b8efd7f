#!/usr/bin/env python3
"""Create, fill and activate the benchmark study in a migrated lpstudy database (run with lpstudy's venv).

Three conditions (CB, CAI, CAP), 25 trials, no attention checks, targets far above the number of participants,
and a pool of real MNIST test digits per condition when the data is there (LPSTUDY_DATA_DIR or ../shared/data),
else synthetic 28x28 images. The images' content does not matter for the load; nobody sees them.

  .venv/bin/python bench/load/make_study.py --database-url postgresql://postgres@127.0.0.1:5432/lpstudy_bench_1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

STUDY = """
slug = "{slug}"
title = "Load benchmark"
dataset = "mnist"
norm = "l0"
trials_per_participant = {trials}
conditions = ["CB", "CAI", "CAP"]
participants_per_condition = {target}
timeout_minutes = 60

[completion_codes]
completed = "CBENCHDONE"
no_consent = "CBENCHNOCONS"
failed_attention = "CBENCHFAIL"

[texts]
consent = "This is a load benchmark. Nobody takes part."
instructions = "Pick a label and a confidence for every image."
"""


def digits(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    env = os.environ.get("LPSTUDY_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            try:
                from workers.data.datasets import load_mnist

                images, labels = load_mnist(cand, "test")
                return images[:n], labels[:n], f"MNIST test digits from {cand}"
            except Exception:  # noqa: BLE001
                continue
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), np.arange(n) % 10, "synthetic images"


def widen_student_column(db) -> None:  # type: ignore[no-untyped-def]
    """Work around a schema bug so the run measures throughput, and say so loudly.

    participants.student is VARCHAR(16) but the form offers 'prefer-not-to-say' (17 characters): PostgreSQL
    refuses it (a 500 on the demographics POST) where SQLite does not check lengths. Until a migration widens
    the column, the benchmark database gets it widened here. A no-op once the schema is fixed.
    """
    from sqlalchemy import text

    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.begin() as c:
        n = c.scalar(
            text(
                "SELECT character_maximum_length FROM information_schema.columns "
                "WHERE table_name = 'participants' AND column_name = 'student'"
            )
        )
        if n is not None and n < len("prefer-not-to-say"):
            c.execute(text("ALTER TABLE participants ALTER COLUMN student TYPE VARCHAR(32)"))
            print(
                f"WARNING: participants.student is VARCHAR({n}), too short for 'prefer-not-to-say'; "
                "widened to VARCHAR(32) in this benchmark database only (schema bug, fix with a migration)",
                file=sys.stderr,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--slug", default="bench")
    ap.add_argument("--trials", type=int, default=25)
    ap.add_argument("--pool", type=int, default=100, help="stimuli per condition")
    ap.add_argument("--target", type=int, default=100000, help="participants per condition")
    args = ap.parse_args()

    from app.config import Settings
    from app.db import Database, upgrade
    from app.stimuli.service import add_stimulus
    from app.studies.service import activate_study, create_study

    upgrade(args.database_url)
    db = Database(Settings(env="test", database_url=args.database_url, secret_key="x" * 40))
    widen_student_column(db)
    images, labels, source = digits(3 * args.pool)
    with db.session() as s:
        study = create_study(s, STUDY.format(slug=args.slug, trials=args.trials, target=args.target))
        for k, cond in enumerate(study.conditions):
            for i in range(args.pool):
                j = k * args.pool + i
                add_stimulus(s, study, cond, image_index=j, label=int(labels[j]), pixels=images[j], extra={})
        s.flush()
        activate_study(s, study)
    db.dispose()
    print(f"study '{args.slug}': 3 conditions x {args.pool} stimuli ({source}), {args.trials} trials")


if __name__ == "__main__":
    main()
