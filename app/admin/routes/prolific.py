"""Prolific API: submissions beside lpstudy's status, bulk approval and rejection, each after a confirmation page
that lists exactly who is affected. Every write re-reads the submissions first and is refused unless the list the
admin confirmed is still exactly right."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from app.admin import audit
from app.admin.deps import AdminDep, AdminFormDep, SessionDep
from app.admin.routes._common import page, see_other
from app.errors import DomainError
from app.models import Study
from app.prolific_api import MIN_REJECT_MESSAGE, REJECTION_CATEGORIES, check_rejection, client_from_settings
from app.prolific_review import Review, ReviewRow, affected, prolific_study_ids, review
from app.studies import service as studies

router = APIRouter(prefix="/admin")


def _prolific_study(session: SessionDep, study: Study, given: str | None) -> str | None:
    """The Prolific study to show: the one asked for, else the one saved on the set-up panel, else the STUDY_ID
    most real participants arrived with."""
    if given:
        return given.strip().lower()
    if study.prolific_study_id:
        return study.prolific_study_id
    known = prolific_study_ids(session, study)
    return known[0][0] if known else None


def _review(request: Request, session: SessionDep, study: Study, prolific_id: str) -> Review:
    with client_from_settings(request.app.state.settings) as client:
        return review(session, study, prolific_id, client.submissions(prolific_id))


def _fresh_review(request: Request, session: SessionDep, slug: str, study_id: str) -> tuple[Study, str, Review]:
    """The study, the Prolific study id and Prolific's submissions read again now: every confirmation page and
    every write (approve, reject) starts from this, never from what an earlier page showed."""
    study = studies.get_study(session, slug)
    prolific_id = study_id.strip().lower()
    return study, prolific_id, _review(request, session, study, prolific_id)


def _back(slug: str, prolific_id: str, **extra: str) -> str:
    return f"/admin/studies/{slug}/prolific?" + urlencode({"study_id": prolific_id, **extra})


@router.get("/studies/{slug}/prolific")
def submissions(request: Request, slug: str, admin: AdminDep, session: SessionDep) -> Response:
    study = studies.get_study(session, slug)
    settings = request.app.state.settings
    configured = settings.prolific_api_token is not None
    prolific_id = _prolific_study(session, study, request.query_params.get("study_id"))
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
    study, _, rev = _fresh_review(request, session, slug, study_id)
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
    study, prolific_id, rev = _fresh_review(request, session, slug, study_id)
    rows = affected(rev, ids or [])
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


@dataclass(frozen=True)
class RejectionForm:
    """The rejection form's fields (the review step and the send step post the same form)."""

    study_id: str = ""
    submission: str = ""
    category: str = ""
    message: str = ""


def _rejection_form(
    study_id: Annotated[str, Form()] = "",
    submission: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
) -> RejectionForm:
    return RejectionForm(study_id, submission, category, message)


RejectionDep = Annotated[RejectionForm, Depends(_rejection_form)]


def _rejection(
    request: Request, session: SessionDep, slug: str, form: RejectionForm
) -> tuple[Study, str, ReviewRow, dict[str, Any]]:
    """The study, the Prolific id, the submission's row as Prolific says now, and the rejection page's context."""
    study, prolific_id, rev = _fresh_review(request, session, slug, form.study_id)
    row = rev.by_submission(form.submission)
    ctx: dict[str, Any] = {
        "study": study,
        "row": row,
        "prolific_id": prolific_id,
        "categories": REJECTION_CATEGORIES,
        "minimum": MIN_REJECT_MESSAGE,
        "message": form.message,
        "category": form.category,
    }
    return study, prolific_id, row, ctx


def _check_rejectable(row: ReviewRow) -> None:
    if not row.rejectable:
        raise DomainError(
            f"this submission is {row.submission.status if row.submission else 'missing'} on Prolific: only one "
            "awaiting review can be rejected; nothing was sent",
            status_code=409,
        )


@router.get("/studies/{slug}/prolific/reject")
def reject_form(
    request: Request, slug: str, admin: AdminDep, session: SessionDep, study_id: str = "", submission: str = ""
) -> Response:
    *_, ctx = _rejection(request, session, slug, RejectionForm(study_id, submission))
    return page(request, "admin/prolific_reject.html", admin, confirm=False, **ctx)


@router.post("/studies/{slug}/prolific/reject/review")
def reject_review(
    request: Request, slug: str, admin: AdminFormDep, session: SessionDep, form: RejectionDep
) -> Response:
    """Checks the rejection and shows exactly what will be sent; changes nothing."""
    *_, row, ctx = _rejection(request, session, slug, form)
    try:
        check_rejection(form.message, form.category)
        _check_rejectable(row)
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
def reject(request: Request, slug: str, admin: AdminFormDep, session: SessionDep, form: RejectionDep) -> Response:
    check_rejection(form.message, form.category)
    study, prolific_id, row, _ = _rejection(request, session, slug, form)
    _check_rejectable(row)
    with client_from_settings(request.app.state.settings) as client:
        client.reject(form.submission, form.message.strip(), form.category)
    audit.record(
        session,
        admin,
        "prolific.reject",
        study=study,
        target=f"participant {row.pid}",
        details={
            "prolific_study": prolific_id,
            "submission": form.submission,
            "category": form.category,
            "message": form.message.strip(),
        },
    )
    session.commit()
    return see_other(_back(slug, prolific_id, done=f"Rejected the submission of {row.pid} on Prolific."))
