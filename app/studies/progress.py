"""Generation progress of a study and its automatic activation: study rules that read the job queue.

``app.studies.service`` and ``app.jobs.service`` do not import each other in a circle: this module uses both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.service import generation_config
from app.models import Condition, Job, JobStatus, Stimulus, Study, StudyStatus
from app.studies.service import activate_study, activation_problems


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
    pools = dict(
        session.execute(
            select(Condition.code, func.count(Stimulus.id))
            .join(Stimulus, (Stimulus.condition_id == Condition.id) & Stimulus.excluded_at.is_(None), isouter=True)
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


def activate_if_ready(session: Session, study: Study) -> bool:
    """For studies with generation.activate_when_ready: open the study once every pool is complete."""
    gen = generation_config(study)
    if not gen or not gen.get("activate_when_ready") or study.status != StudyStatus.DRAFT:
        return False
    if activation_problems(session, study):
        return False
    activate_study(session, study)
    return True
