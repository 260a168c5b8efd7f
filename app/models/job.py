from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Base):
    """A unit of stimulus generation: a block of a study's source images, attacked in every condition.

    Claimed with a lease; a worker that dies stops renewing it and the job is taken up again once it
    expires. Results are written in the same transaction that marks the job done.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    # Older jobs made one condition; a block job (payload version 2) covers every condition and has none.
    condition_id: Mapped[int | None] = mapped_column(ForeignKey("conditions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), default="generate")
    # app.contracts.JobPayload as JSON
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    locked_by: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # app.contracts.BlockSummary as JSON: complete, failed and surplus image indices, seconds, device, worker
    result: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_jobs_status_id", "status", "id"),
        CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="status"),
    )


class MlModel(Base):
    """A model stimuli were made against, registered with its card (accuracy, recipe, sha256)."""

    __tablename__ = "ml_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    # name@sha256-prefix, as recorded in stimuli.model_ref
    model_id: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    dataset: Mapped[str | None] = mapped_column(String(32))
    spec: Mapped[str] = mapped_column(Text)
    card: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SourceFailureStatus(enum.StrEnum):
    FAILED = "failed"  # an attack (or the benign check) failed in at least one condition
    SURPLUS = "surplus"  # complete, but the study already held its number of source images


class SourceFailure(Base):
    """A source image that did not enter the study, and why: kept for the status and the exports.

    ``reasons`` maps each failed condition to its reason; ``metrics`` holds the failed attempts' metrics per
    condition (their best images are not kept).
    """

    __tablename__ = "source_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    image_index: Mapped[int]
    # Place of the image in the study's seeded candidate order.
    position: Mapped[int]
    label: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("study_id", "image_index"),
        CheckConstraint("status IN ('failed', 'surplus')", name="status"),
    )
