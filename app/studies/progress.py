"""Generation progress of a study and its automatic activation: study rules that read the job queue.

``app.studies.service`` and ``app.jobs.service`` do not import each other in a circle: this module uses both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jobs.service import complete_images, generation_config
from app.models import Job, JobStatus, SourceFailure, SourceFailureStatus, Study, StudyStatus
from app.studies.service import activate_study, activation_problems, pool_sizes


@dataclass(frozen=True)
class ConditionProgress:
    code: str
    done: int  # stimuli in the pool
    failed: int  # source images that failed in this condition (so they are in no pool)
    pending: int  # source images in blocks not finished yet
    reasons: dict[str, int]  # why they failed, with counts


@dataclass(frozen=True)
class StudyProgress:
    slug: str
    status: str
    generated: bool
    target: int | None  # source images the study is to hold (complete triples)
    complete: int  # source images with a stimulus in every condition
    failed: int  # source images replaced because an attack (or the benign check) failed
    surplus: int  # complete, but past the target (a later block finished first)
    pending: int  # source images in unfinished jobs
    exhausted: bool  # the candidates ran out before the target was reached
    jobs_failed: int  # jobs that ended in error after all attempts
    errors: list[str]
    conditions: list[ConditionProgress]
    can_activate: bool
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def source_failures(session: Session, study: Study) -> list[SourceFailure]:
    return list(
        session.scalars(
            select(SourceFailure).where(SourceFailure.study_id == study.id).order_by(SourceFailure.position)
        )
    )


def study_progress(session: Session, study: Study) -> StudyProgress:
    pools = pool_sizes(session, study)
    jobs = list(session.scalars(select(Job).where(Job.study_id == study.id).order_by(Job.id)))
    gen = generation_config(study)
    fails = source_failures(session, study)
    failed = [f for f in fails if f.status == SourceFailureStatus.FAILED]
    pending = 0
    errors = []
    for j in jobs:
        size = int(j.payload.get("size") or j.payload.get("batch_size") or 0)
        if j.status in (JobStatus.PENDING, JobStatus.RUNNING):
            pending += size
        elif j.status == JobStatus.FAILED:
            block = j.payload.get("block", j.payload.get("batch"))
            errors.append(f"job {j.id} (block {block}): {j.last_error}")
    out = []
    for cond in study.conditions:
        mine = [f for f in failed if cond.code in (f.reasons or {})]
        reasons = Counter(str(f.reasons[cond.code]) for f in mine)
        out.append(ConditionProgress(cond.code, pools.get(cond.code, 0), len(mine), pending, dict(reasons)))
    problems = activation_problems(session, study)
    exhausted = any(j.status == JobStatus.DONE and (j.result or {}).get("exhausted") for j in jobs)
    target = int(gen["images"]) if gen and gen.get("images") else None
    complete = len(complete_images(session, study)) if gen else min(pools.values(), default=0)
    return StudyProgress(
        slug=study.slug,
        status=study.status,
        generated=gen is not None,
        target=target,
        complete=complete,
        failed=len(failed),
        surplus=len(fails) - len(failed),
        pending=pending,
        exhausted=exhausted,
        jobs_failed=len(errors),
        errors=errors,
        conditions=out,
        can_activate=not problems,
        problems=problems,
    )


def activate_if_ready(session: Session, study: Study) -> bool:
    """For studies with generation.activate_when_ready: open the study once every pool is complete."""
    gen = generation_config(study)
    if not gen or not gen.get("activate_when_ready") or study.status != StudyStatus.DRAFT:
        return False
    if activation_problems(session, study):
        return False
    activate_study(session, study)
    return True
