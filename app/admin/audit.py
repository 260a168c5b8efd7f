"""The audit log: every state-changing admin action, recorded in the same transaction as the change itself."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.auth import AdminSession
from app.exports import iso_utc
from app.models import AuditEntry, Study

CSV_COLUMNS = ("at", "admin", "action", "study", "target", "details")


def record(
    session: Session,
    admin: AdminSession,
    action: str,
    *,
    study: Study | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        admin_id=admin.user_id,
        admin_email=admin.email or "unknown",
        action=action,
        study_id=study.id if study else None,
        study_slug=study.slug if study else None,
        target=target[:200] if target else None,
        details=details,
    )
    session.add(entry)
    session.flush()
    return entry


def entries(session: Session, *, study: Study | None = None, limit: int | None = None) -> list[AuditEntry]:
    q = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if study is not None:
        q = q.where(AuditEntry.study_id == study.id)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


def describe(details: dict[str, Any] | None) -> str:
    """Details as compact JSON (the same on the page and in the CSV)."""
    return json.dumps(details, sort_keys=True, ensure_ascii=False) if details else ""


def to_csv(rows: list[AuditEntry]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for e in rows:
        w.writerow([iso_utc(e.at), e.admin_email, e.action, e.study_slug or "", e.target or "", describe(e.details)])
    return buf.getvalue()
