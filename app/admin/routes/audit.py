"""The audit log: every state-changing admin action, on a page and as CSV."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.admin import audit
from app.admin.deps import AdminDep, SessionDep
from app.admin.routes._common import csv_download, page
from app.studies import service as studies

router = APIRouter(prefix="/admin")


@router.get("/audit")
def audit_log(request: Request, admin: AdminDep, session: SessionDep) -> Response:
    return page(request, "admin/audit.html", admin, entries=audit.entries(session, limit=500), study=None)


@router.get("/audit.csv")
def audit_csv(admin: AdminDep, session: SessionDep) -> Response:
    return csv_download(audit.to_csv(audit.entries(session)), "lpstudy-audit-log.csv")


@router.get("/studies/{slug}/audit")
def study_audit(slug: str, request: Request, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    return page(request, "admin/audit.html", admin, entries=audit.entries(session, study=study), study=study)


@router.get("/studies/{slug}/audit.csv")
def study_audit_csv(slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    return csv_download(audit.to_csv(audit.entries(session, study=study)), f"{slug}-audit-log.csv")
