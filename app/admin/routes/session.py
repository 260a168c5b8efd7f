"""Login and logout. Login is throttled per account and address, and passwords are checked on the hashing thread."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.admin import auth, throttle
from app.admin.deps import AdminFormDep, SessionDep
from app.admin.hashing import pool as hashing_pool
from app.admin.routes._common import see_other
from app.web import render

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
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    auth.check_csrf(auth.read_session(request), csrf_token)
    settings = request.app.state.settings
    address = throttle.client_address(request, settings)
    throttle.check(session, settings, email, address)  # 429 before any hashing
    user = auth.authenticate(session, email, password, hashing=hashing_pool(settings.login_hash_queue))
    if user is None:
        throttle.record_failure(session, settings, email, address)
        session.commit()
        sess = auth.anonymous_session(request)
        response = render(
            request, "admin/login.html", status_code=401, csrf=sess.csrf, error="Wrong email or password."
        )
        auth.write_session(request, response, sess)
        return response
    throttle.clear_account(session, email)
    session.commit()
    response = see_other("/admin")
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
def logout(admin: AdminFormDep, session: SessionDep) -> Response:
    assert admin.user_id is not None
    auth.end_sessions(session, admin.user_id)
    session.commit()
    response = see_other("/admin/login")
    response.delete_cookie(auth.COOKIE, path="/")
    return response
