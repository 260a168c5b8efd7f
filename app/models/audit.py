from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class AuditEntry(Base):
    """One state-changing admin action: who, when, what, on which study and object, with its details.

    The admin's email is copied so that the entry still names them after the account is gone."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    admin_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id", ondelete="SET NULL"))
    admin_email: Mapped[str] = mapped_column(String(254))
    # e.g. "study.activate", "stimulus.exclude", "prolific.approve"
    action: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="SET NULL"))
    # Kept verbatim: the study may be deleted later.
    study_slug: Mapped[str | None] = mapped_column(String(64))
    # What the action was applied to ("stimulus 12", "3 participants", ...).
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any] | None]

    __table_args__ = (Index("ix_audit_log_study_id_at", "study_id", "at"),)


class LoginFailure(Base):
    """A failed admin login, counted per account and per client address to throttle guessing."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    account: Mapped[str] = mapped_column(String(254))
    address: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_login_failures_account_at", "account", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )
