"""Prolific API: submissions beside lpstudy's status, bulk approval and rejection, each after a confirmation page
that lists exactly who is affected. Every write re-reads the submissions first and is refused unless the list the
admin confirmed is still exactly right."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.admin import audit
from app.admin.deps import AdminDep, AdminFormDep, SessionDep
from app.admin.routes._common import page, see_other
from app.errors import DomainError
from app.models import Study
from app.prolific_api import MIN_REJECT_MESSAGE, REJECTION_CATEGORIES, check_rejection, client_from_settings
from app.prolific_review import Review, affected, prolific_study_ids, review
from app.studies import service as studies

router = APIRouter(prefix="/admin")


def _prolific_study(request: Request, session: SessionDep, study: Study, given: str | None) -> str | None:
    if given:
        return given.strip().lower()
    known = prolific_study_ids(session, study)
    return known[0][0] if known else None


def _review(request: Request, session: SessionDep, study: Study, prolific_id: str) -> Review:
    with client_from_settings(request.app.state.settings) as client:
        return review(session, study, prolific_id, client.submissions(prolific_id))


def _back(slug: str, prolific_id: str, **extra: str) -> str:
    return f"/admin/studies/{slug}/prolific?" + urlencode({"study_id": prolific_id, **extra})


@router.get("/studies/{slug}/prolific")
def submissions(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    settings = request.app.state.settings
    configured = settings.prolific_api_token is not None
    prolific_id = _prolific_study(request, session, study, request.query_params.get("study_id"))
    ctx: dict[str, Any] = {
        "study": study,
        "configured": configured,
        "prolific_id": prolific_id,
        "known": prolific_study_ids(session, study),
        "done": request.query_params.get("done"),
        "rev": None,
        "error": None,
    }
    if configured and prolific_id:
        try:
            ctx["rev"] = _review(request, session, study, prolific_id)
        except DomainError as exc:
            ctx["error"] = exc.message
    return page(request, "admin/prolific.html", admin, **ctx)


@router.get("/studies/{slug}/prolific/approve")
def confirm_approve(request: Request, slug: str, admin: AdminDep, session: SessionDep, study_id: str = "") -> Response:
    study = studies.get_study(session, slug)
    rev = _review(request, session, study, study_id.strip().lower())
    return page(request, "admin/prolific_approve.html", admin, study=study, rev=rev, rows=rev.approvable)


@router.post("/studies/{slug}/prolific/approve")
def approve(
    request: Request,
    slug: str,
    admin: AdminFormDep,
    session: SessionDep,
    study_id: Annotated[str, Form()] = "",
    ids: Annotated[list[str] | None, Form()] = None,
) -> Response:
    study = studies.get_study(session, slug)
    prolific_id = study_id.strip().lower()
    rows = affected(_review(request, session, study, prolific_id), ids or [])
    with client_from_settings(request.app.state.settings) as client:
        client.bulk_approve(prolific_id, [r.submission.id for r in rows if r.submission])
    audit.record(
        session,
        admin,
        "prolific.approve",
        study=study,
        target=f"{len(rows)} submissions",
        details={"prolific_study": prolific_id, "participants": [r.pid for r in rows], "submissions": ids},
    )
    session.commit()
    return see_other(_back(slug, prolific_id, done=f"Approved {len(rows)} submission(s) on Prolific."))


@router.get("/studies/{slug}/prolific/reject")
def reject_form(
    request: Request, slug: str, admin: AdminDep, session: SessionDep, study_id: str = "", submission: str = ""
) -> Response:
    study = studies.get_study(session, slug)
    row = _review(request, session, study, study_id.strip().lower()).by_submission(submission)
    return page(
        request,
        "admin/prolific_reject.html",
        admin,
        study=study,
        row=row,
        prolific_id=study_id.strip().lower(),
        categories=REJECTION_CATEGORIES,
        minimum=MIN_REJECT_MESSAGE,
        message="",
        category="",
        confirm=False,
    )


@router.post("/studies/{slug}/prolific/reject/review")
def reject_review(
    request: Request,
    slug: str,
    admin: AdminFormDep,
    session: SessionDep,
    study_id: Annotated[str, Form()] = "",
    submission: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
) -> Response:
    """Checks the rejection and shows exactly what will be sent; changes nothing."""
    study = studies.get_study(session, slug)
    prolific_id = study_id.strip().lower()
    row = _review(request, session, study, prolific_id).by_submission(submission)
    ctx: dict[str, Any] = {
        "study": study,
        "row": row,
        "prolific_id": prolific_id,
        "categories": REJECTION_CATEGORIES,
        "minimum": MIN_REJECT_MESSAGE,
        "message": message,
        "category": category,
    }
    try:
        check_rejection(message, category)
        if not row.rejectable:
            raise DomainError(
                f"this submission is {row.submission.status if row.submission else 'missing'} on "
                "Prolific: only one awaiting review can be rejected",
                status_code=409,
            )
    except DomainError as exc:
        return page(
            request,
            "admin/prolific_reject.html",
            admin,
            status_code=exc.status_code,
            error=exc.message,
            confirm=False,
            **ctx,
        )
    return page(request, "admin/prolific_reject.html", admin, confirm=True, **ctx)


@router.post("/studies/{slug}/prolific/reject")
def reject(
    request: Request,
    slug: str,
    admin: AdminFormDep,
    session: SessionDep,
    study_id: Annotated[str, Form()] = "",
    submission: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
) -> Response:
    study = studies.get_study(session, slug)
    prolific_id = study_id.strip().lower()
    check_rejection(message, category)
    row = _review(request, session, study, prolific_id).by_submission(submission)
    if not row.rejectable:
        raise DomainError("this submission is no longer awaiting review on Prolific; nothing was sent", status_code=409)
    with client_from_settings(request.app.state.settings) as client:
        client.reject(submission, message.strip(), category)
    audit.record(
        session,
        admin,
        "prolific.reject",
        study=study,
        target=f"participant {row.pid}",
        details={
            "prolific_study": prolific_id,
            "submission": submission,
            "category": category,
            "message": message.strip(),
        },
    )
    session.commit()
    return see_other(_back(slug, prolific_id, done=f"Rejected the submission of {row.pid} on Prolific."))
