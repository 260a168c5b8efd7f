"""The generation job queue, as seen from the web app and CLI: enqueue and progress. No torch here.

Claiming, leases and running live in workers/queue.py and workers/runner.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.models import Condition, Job, JobStatus, Stimulus, Study

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


@dataclass(frozen=True)
class ConditionProgress:
    code: str
    done: int  # stimuli in the pool
    failed: int  # source images whose attack failed (never in the pool)
    skipped: int  # source images the model misclassifies (not attacked)
    pending: int  # source images in jobs not finished yet
    jobs_failed: int  # jobs that ended in error after all attempts
    errors: list[str]


@dataclass(frozen=True)
class StudyProgress:
    slug: str
    status: str
    generated: bool
    conditions: list[ConditionProgress]
    can_activate: bool
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _job_images(job: Job) -> int:
    p = job.payload
    start = p["batch"] * p["batch_size"]
    return max(0, min(p["batch_size"], p["images"] - start))


def study_progress(session: Session, study: Study) -> StudyProgress:
    from app.studies.service import activation_problems

    pools = dict(
        session.execute(
            select(Condition.code, func.count(Stimulus.id))
            .join(Stimulus, Stimulus.condition_id == Condition.id, isouter=True)
            .where(Condition.study_id == study.id)
            .group_by(Condition.code)
        ).all()
    )
    jobs = list(session.scalars(select(Job).where(Job.study_id == study.id).order_by(Job.id)))
    out = []
    for cond in study.conditions:
        mine = [j for j in jobs if j.condition_id == cond.id]
        failed = sum(len((j.result or {}).get("failed", [])) for j in mine if j.status == JobStatus.DONE)
        skipped = sum(len((j.result or {}).get("skipped", [])) for j in mine if j.status == JobStatus.DONE)
        pending = sum(_job_images(j) for j in mine if j.status in (JobStatus.PENDING, JobStatus.RUNNING))
        bad = [j for j in mine if j.status == JobStatus.FAILED]
        errors = [f"job {j.id} (batch {j.payload['batch']}): {j.last_error}" for j in bad]
        out.append(ConditionProgress(cond.code, pools.get(cond.code, 0), failed, skipped, pending, len(bad), errors))
    problems = activation_problems(session, study)
    return StudyProgress(
        slug=study.slug,
        status=study.status,
        generated=generation_config(study) is not None,
        conditions=out,
        can_activate=not problems,
        problems=problems,
    )


def unfinished_jobs(session: Session, study: Study) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.study_id == study.id, Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
        )
        or 0
    )


def activate_if_ready(session: Session, study: Study) -> bool:
    """For studies with generation.activate_when_ready: open the study once every pool is complete."""
    from app.models import StudyStatus
    from app.studies.service import activate_study, activation_problems

    gen = generation_config(study)
    if not gen or not gen.get("activate_when_ready") or study.status != StudyStatus.DRAFT:
        return False
    if activation_problems(session, study):
        return False
    activate_study(session, study)
    return True
