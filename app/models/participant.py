from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow


class ParticipantStatus(enum.StrEnum):
    ACTIVE = "active"  # somewhere in the path; timed out is derived from last_seen_at
    COMPLETED = "completed"
    NO_CONSENT = "no_consent"
    FAILED_ATTENTION = "failed_attention"


class Stage(enum.StrEnum):
    CONSENT = "consent"
    INSTRUCTIONS = "instructions"
    TRIALS = "trials"
    DEMOGRAPHICS = "demographics"
    DONE = "done"


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    condition_id: Mapped[int] = mapped_column(ForeignKey("conditions.id", ondelete="CASCADE"), index=True)
    # Opaque capability used in the participant's URLs.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    prolific_pid: Mapped[str] = mapped_column(String(64))
    prolific_study_id: Mapped[str | None] = mapped_column(String(64))
    prolific_session_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default=ParticipantStatus.ACTIVE)
    stage: Mapped[str] = mapped_column(String(16), default=Stage.CONSENT)
    # Index of the current trial (0-based) while stage == trials.
    position: Mapped[int] = mapped_column(default=0)
    attention_failures: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    consented_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    age: Mapped[int | None]
    gender: Mapped[str | None] = mapped_column(String(32))
    student: Mapped[str | None] = mapped_column(String(32))
    employment: Mapped[str | None] = mapped_column(String(32))
    # Test participants (admin previews, `lpstudy bots` pilots) never count toward targets, exports or analysis.
    # test_kind says which: "preview" or "bot"; NULL for a real participant.
    is_test: Mapped[bool] = mapped_column(default=False, server_default=false())
    test_kind: Mapped[str | None] = mapped_column(String(16))
    # Viewing conditions reported by the browser (CSS pixels unless named otherwise); NULL until reported.
    device_pixel_ratio: Mapped[float | None]
    viewport_w: Mapped[int | None]
    viewport_h: Mapped[int | None]
    screen_w: Mapped[int | None]
    screen_h: Mapped[int | None]
    # Rendered size of the first image at each display scale: {"1": [w, h], "2": [w, h], ...} in CSS pixels.
    rendered_sizes: Mapped[dict[str, Any] | None]
    touch: Mapped[bool | None]
    ua_browser: Mapped[str | None] = mapped_column(String(32))
    ua_os: Mapped[str | None] = mapped_column(String(32))

    trials: Mapped[list[Trial]] = relationship(order_by="Trial.position", passive_deletes=True)

    __table_args__ = (
        UniqueConstraint("study_id", "prolific_pid"),
        Index("ix_participants_study_status_seen", "study_id", "status", "last_seen_at"),
        CheckConstraint("status IN ('active', 'completed', 'no_consent', 'failed_attention')", name="status"),
        CheckConstraint("stage IN ('consent', 'instructions', 'trials', 'demographics', 'done')", name="stage"),
    )


class Trial(Base):
    __tablename__ = "trials"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    position: Mapped[int]
    # NULL for an attention check (kind == "attention"), whose expected answer is expected_label.
    stimulus_id: Mapped[int | None] = mapped_column(ForeignKey("stimuli.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="stimulus")
    expected_label: Mapped[int | None]
    shown_at: Mapped[dt.datetime | None]
    answered_at: Mapped[dt.datetime | None]
    response_label: Mapped[int | None]
    confidence: Mapped[int | None]
    # Reaction time measured in the browser (ms); NULL without JavaScript.
    rt_ms: Mapped[int | None]

    __table_args__ = (
        UniqueConstraint("participant_id", "position"),
        CheckConstraint("kind IN ('stimulus', 'attention')", name="kind"),
        CheckConstraint("confidence IS NULL OR (confidence BETWEEN 1 AND 5)", name="confidence"),
        CheckConstraint("response_label IS NULL OR (response_label BETWEEN 0 AND 9)", name="response_label"),
    )
