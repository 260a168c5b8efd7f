"""Job claiming with leases, on PostgreSQL (FOR UPDATE SKIP LOCKED) and SQLite (one writer at a time).

No torch here: the queue is plain SQL, so it is tested without a model.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.models import Job, JobStatus
from app.models.base import utcnow

log = logging.getLogger(__name__)


def _claimable(now: dt.datetime):  # type: ignore[no-untyped-def]
    return or_(
        Job.status == JobStatus.PENDING,
        (Job.status == JobStatus.RUNNING) & (Job.lease_expires_at < now),
    )


def claim(session: Session, worker_id: str, lease_s: float) -> Job | None:
    """Claim the oldest claimable job and commit the claim. Returns None when the queue is empty.

    A job whose lease expired after its last attempt is marked failed instead of being claimed.
    """
    pg = session.get_bind().dialect.name == "postgresql"
    while True:
        now = utcnow()
        stmt = select(Job).where(_claimable(now)).order_by(Job.id).limit(1)
        if pg:
            stmt = stmt.with_for_update(skip_locked=True)
        job = session.scalar(stmt)
        if job is None:
            session.rollback()
            return None
        was_running = job.status == JobStatus.RUNNING
        if job.attempts >= job.max_attempts:
            # Its worker died (lease expired) on the last allowed attempt.
            result = session.execute(
                update(Job)
                .where(Job.id == job.id, _claimable(now))
                .values(
                    status=JobStatus.FAILED,
                    finished_at=now,
                    locked_by=None,
                    last_error=(job.last_error or "")
                    + f"\nworker {job.locked_by} stopped renewing its lease (attempt {job.attempts} "
                    f"of {job.max_attempts}); giving up",
                )
                .execution_options(synchronize_session=False)
            )
            session.commit()
            continue
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, _claimable(now))
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                locked_by=worker_id,
                lease_expires_at=now + dt.timedelta(seconds=lease_s),
                heartbeat_at=now,
                started_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()  # another worker took it between our SELECT and UPDATE (SQLite)
            continue
        session.commit()
        session.refresh(job)
        if was_running:
            log.warning("job %s: lease expired, taken over by %s (attempt %s)", job.id, worker_id, job.attempts)
        return job


def heartbeat(session: Session, job_id: int, worker_id: str, lease_s: float) -> bool:
    """Extend the lease; False if the job is no longer ours (then stop working on it)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id, Job.status == JobStatus.RUNNING)
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_s), heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish(session: Session, job_id: int, worker_id: str, result: dict) -> bool:  # type: ignore[type-arg]
    """Mark done inside the caller's transaction (which also holds the stimuli). False: lease lost."""
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id, Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.DONE, finished_at=utcnow(), result=result, locked_by=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1  # type: ignore[attr-defined]


def fail(session: Session, job_id: int, worker_id: str, error: str) -> str | None:
    """Record a failed attempt: back to pending, or failed after max_attempts. Commits."""
    job = session.get(Job, job_id)
    if job is None or job.locked_by != worker_id or job.status != JobStatus.RUNNING:
        session.rollback()
        return None
    final = job.attempts >= job.max_attempts
    job.status = JobStatus.FAILED if final else JobStatus.PENDING
    job.last_error = error[-4000:]
    job.locked_by = None
    job.lease_expires_at = None
    if final:
        job.finished_at = utcnow()
    session.commit()
    return job.status


def finish_result(session: Session, job_id: int, result: dict) -> None:  # type: ignore[type-arg]
    """Store the final result summary of a job already marked done in this transaction."""
    session.execute(
        update(Job).where(Job.id == job_id).values(result=result).execution_options(synchronize_session=False)
    )
