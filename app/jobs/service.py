"""The generation job queue, as seen from the web app and CLI: enqueue and count jobs. No torch here.

Claiming, leases and running live in workers/generation/queue.py and workers/generation/runner.py.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.models import Job, JobStatus, Study

DEFAULT_MODELS = {"mnist": "mnist-default", "cifar10": "cifar10-default"}
DEFAULT_JUDGES = {"mnist": "mnist-second", "cifar10": None}


def generation_config(study: Study) -> dict[str, Any] | None:
    return study.config.get("generation")


def enqueue_generation(session: Session, study: Study, conditions: list[str] | None = None) -> list[Job]:
    """Jobs for every batch of every (chosen) condition that has no unfinished job yet. Idempotent."""
    gen = generation_config(study)
    if gen is None:
        raise Conflict(
            f"study '{study.slug}' has no [generation] table in its config: its stimuli are imported, not generated"
        )
    chosen = [c for c in study.conditions if conditions is None or c.code in conditions]
    unknown = set(conditions or []) - {c.code for c in study.conditions}
    if unknown:
        raise Conflict(f"study '{study.slug}' has no condition(s) {', '.join(sorted(unknown))}")
    n_batches = math.ceil(gen["images"] / gen["batch_size"])
    jobs = []
    for cond in chosen:
        busy = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.condition_id == cond.id, Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
        )
        if busy:
            continue
        # A regeneration replaces earlier finished jobs of this condition; stimuli already made are kept
        # (the worker skips images that already have one).
        session.execute(delete(Job).where(Job.condition_id == cond.id))
        for k in range(n_batches):
            jobs.append(
                Job(
                    study_id=study.id,
                    condition_id=cond.id,
                    kind="generate",
                    payload={
                        "dataset": study.dataset,
                        "norm": study.norm,
                        "condition": cond.code,
                        "model": gen.get("model") or DEFAULT_MODELS[study.dataset],
                        "second_model": gen.get("second_model") or DEFAULT_JUDGES[study.dataset],
                        "seed": gen["seed"],
                        "images": gen["images"],
                        "batch": k,
                        "batch_size": gen["batch_size"],
                    },
                    status=JobStatus.PENDING,
                    attempts=0,
                    max_attempts=gen["max_attempts"],
                )
            )
    session.add_all(jobs)
    session.flush()
    return jobs


def has_jobs(session: Session, study: Study) -> bool:
    return session.scalar(select(Job.id).where(Job.study_id == study.id).limit(1)) is not None


def unfinished_jobs(session: Session, study: Study) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.study_id == study.id, Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
        )
        or 0
    )
