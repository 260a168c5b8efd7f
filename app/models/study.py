from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.design import CONDITIONS
from app.models.base import Base, utcnow

if TYPE_CHECKING:
    from app.models.stimulus import Stimulus


class StudyStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"  # takes no new participants; those already in the study can finish
    CLOSED = "closed"


CONDITION_CODES = CONDITIONS  # the check constraint below spells them out (migrations are static)


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    dataset: Mapped[str] = mapped_column(String(32))
    norm: Mapped[str] = mapped_column(String(8))
    labels: Mapped[list[Any]]
    trials_per_participant: Mapped[int]
    scales: Mapped[list[Any]]
    timeout_minutes: Mapped[int]
    code_completed: Mapped[str] = mapped_column(String(64))
    code_no_consent: Mapped[str] = mapped_column(String(64))
    code_failed_attention: Mapped[str] = mapped_column(String(64))
    # Attention checks: {"positions": [..], ...} or None when disabled.
    attention: Mapped[dict[str, Any] | None]
    consent_text: Mapped[str] = mapped_column(Text)
    instructions_text: Mapped[str] = mapped_column(Text)
    # The TOML text the study was created from, verbatim, for reproduction and preregistration.
    config_source: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=StudyStatus.DRAFT)
    # Bumped by every assignment on SQLite: the UPDATE takes SQLite's one writer lock before a slot is picked.
    # (PostgreSQL claims slots with FOR UPDATE SKIP LOCKED and does not touch it.)
    assignment_seq: Mapped[int] = mapped_column(Integer, default=0)
    # The study's id on Prolific (24 hex characters, lower case), set on the set-up panel; None until then.
    prolific_study_id: Mapped[str | None] = mapped_column(String(24), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    conditions: Mapped[list[Condition]] = relationship(
        back_populates="study", order_by="Condition.id", cascade="all, delete-orphan"
    )

    __table_args__ = (CheckConstraint("status IN ('draft', 'active', 'paused', 'closed')", name="status"),)

    def condition(self, code: str) -> Condition | None:
        return next((c for c in self.conditions if c.code == code), None)


class Condition(Base):
    __tablename__ = "conditions"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(8))
    target: Mapped[int]

    study: Mapped[Study] = relationship(back_populates="conditions")
    stimuli: Mapped[list[Stimulus]] = relationship(back_populates="condition", passive_deletes=True)

    __table_args__ = (
        UniqueConstraint("study_id", "code"),
        CheckConstraint("code IN ('CB', 'CAI', 'CAP')", name="code"),
    )
