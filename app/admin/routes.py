"""Admin area: login, logout, and a first overview of studies and recruitment. Thin routes."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.admin import auth
from app.models import Study
from app.studies import service as studies
from app.studies.progress import study_progress
from app.web import get_session, render

router = APIRouter(prefix="/admin")


@router.get("/login")
def login_form(request: Request, error: str | None = None) -> Response:
    sess = auth.anonymous_session(request)
    response = render(request, "admin/login.html", csrf=sess.csrf, error=error)
    auth.write_session(request, response, sess)
    return response


@router.post("/login")
def login(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    csrf_token: str | None = Form(None),
    session: Session = Depends(get_session),
) -> Response:
    auth.check_csrf(auth.read_session(request), csrf_token)
    user = auth.authenticate(session, email, password)
    if user is None:
        sess = auth.anonymous_session(request)
        response = render(
            request, "admin/login.html", status_code=401, csrf=sess.csrf, error="Wrong email or password."
        )
        auth.write_session(request, response, sess)
        return response
    session.commit()
    response = RedirectResponse("/admin", status_code=303)
    # A fresh CSRF token on login (no session fixation).
    auth.write_session(
        request,
        response,
        auth.AdminSession(
            csrf=secrets.token_urlsafe(24), user_id=user.id, email=user.email, version=user.session_version
        ),
    )
    return response


@router.post("/logout")
def logout(
    request: Request,
    csrf_token: str | None = Form(None),
    admin: auth.AdminSession = Depends(auth.require_admin),
    session: Session = Depends(get_session),
) -> Response:
    auth.check_csrf(admin, csrf_token)
    assert admin.user_id is not None
    auth.end_sessions(session, admin.user_id)
    session.commit()
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


@router.get("")
def dashboard(
    request: Request, admin: auth.AdminSession = Depends(auth.require_admin), session: Session = Depends(get_session)
) -> Response:
    rows = []
    for study in studies.list_studies(session):
        rows.append(
            {
                "study": study,
                "counts": studies.condition_counts(session, study),
                "pools": studies.pool_sizes(session, study),
            }
        )
    return render(request, "admin/dashboard.html", admin=admin, rows=rows, csrf=admin.csrf)


@router.get("/studies/{slug}")
def study_detail(
    slug: str,
    request: Request,
    admin: auth.AdminSession = Depends(auth.require_admin),
    session: Session = Depends(get_session),
) -> Response:
    study = studies.get_study(session, slug)
    return render(
        request,
        "admin/study.html",
        admin=admin,
        csrf=admin.csrf,
        study=study,
        counts=studies.condition_counts(session, study),
        pools=studies.pool_sizes(session, study),
        problems=studies.activation_problems(session, study),
        progress=study_progress(session, study),
    )


def _lifecycle(
    action: Callable[[Session, Study], Study],
    slug: str,
    csrf_token: str | None,
    admin: auth.AdminSession,
    session: Session,
) -> Response:
    auth.check_csrf(admin, csrf_token)
    action(session, studies.get_study(session, slug))
    session.commit()
    return RedirectResponse(f"/admin/studies/{slug}", status_code=303)


@router.post("/studies/{slug}/activate")
def activate(
    slug: str,
    csrf_token: str | None = Form(None),
    admin: auth.AdminSession = Depends(auth.require_admin),
    session: Session = Depends(get_session),
) -> Response:
    return _lifecycle(studies.activate_study, slug, csrf_token, admin, session)


@router.post("/studies/{slug}/close")
def close(
    slug: str,
    csrf_token: str | None = Form(None),
    admin: auth.AdminSession = Depends(auth.require_admin),
    session: Session = Depends(get_session),
) -> Response:
    return _lifecycle(studies.close_study, slug, csrf_token, admin, session)
