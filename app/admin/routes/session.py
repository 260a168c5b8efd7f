"""Login and logout. Login is throttled per account and address, and passwords are checked on the hashing thread.

Both login routes are async so that a refusal this process already knows about (login_gate.py) is answered on the
event loop, before any form parsing, CSRF check, thread or database query: a flood of wrong passwords then costs
little more than its own requests. Everything else runs in a worker thread, as the sync routes do."""

from __future__ import annotations

import secrets
from typing import NoReturn

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.admin import auth, login_gate, throttle
from app.admin.deps import AdminFormDep, SessionDep
from app.admin.hashing import HashingPool
from app.admin.hashing import pool as hashing_pool
from app.admin.routes._common import see_other
from app.errors import TooManyRequests
from app.web import render

router = APIRouter(prefix="/admin")


def _form_page(request: Request, status_code: int = 200, error: str | None = None) -> Response:
    sess = auth.anonymous_session(request)
    response = render(request, "admin/login.html", status_code=status_code, csrf=sess.csrf, error=error)
    auth.write_session(request, response, sess)
    return response


async def _refuse_from_memory(gate: login_gate.LoginGate, exc: TooManyRequests) -> NoReturn:
    """The refusal, after the gate's pause; the app's TooManyRequests handler renders it (429, Retry-After)."""
    await gate.pause(exc.retry_after)
    raise exc


@router.get("/login")
async def login_form(request: Request, error: str | None = None) -> Response:
    address = throttle.client_address(request, request.app.state.settings)
    gate = login_gate.gate(request)
    if refused := gate.refusal(login_gate.address_key(address)):
        await _refuse_from_memory(gate, refused)  # this address may not log in yet: no form
    return _form_page(request, error=error)


def _check_password(request: Request, hashing: HashingPool, email: str, password: str, address: str) -> Response:
    """The authoritative part, in a worker thread: the database throttle, the password, the failure record."""
    settings = request.app.state.settings
    with request.app.state.db.sessionmaker() as session:
        throttle.check(session, settings, email, address)  # 429 before any hashing
        user = auth.authenticate(session, email, password, hashing=hashing)
        if user is None:
            throttle.record_failure(session, settings, email, address)
            session.commit()
            return _form_page(request, status_code=401, error="Wrong email or password.")
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


@router.post("/login")
async def login(request: Request) -> Response:
    settings = request.app.state.settings
    gate = login_gate.gate(request)
    address = throttle.client_address(request, settings)
    if refused := gate.refusal(login_gate.address_key(address)):
        await _refuse_from_memory(gate, refused)
    form = await request.form(max_files=0, max_fields=16)
    fields = {k: v if isinstance(v, str) else "" for k, v in form.items()}
    email, password = fields.get("email", ""), fields.get("password", "")
    if refused := gate.refusal(login_gate.account_key(email)):
        await _refuse_from_memory(gate, refused)
    auth.check_csrf(auth.read_session(request), fields.get("csrf_token"))
    hashing = hashing_pool(settings.login_hash_queue)
    if hashing.waiting >= hashing.queue:  # the hashing thread would refuse it: say so before any database work
        await _refuse_from_memory(gate, hashing.busy())
    try:
        return await anyio.to_thread.run_sync(_check_password, request, hashing, email, password, address)
    except login_gate.LoginThrottled as exc:
        gate.learn(exc, address, email)
        raise


@router.post("/logout")
def logout(admin: AdminFormDep, session: SessionDep) -> Response:
    assert admin.user_id is not None
    auth.end_sessions(session, admin.user_id)
    session.commit()
    response = see_other("/admin/login")
    response.delete_cookie(auth.COOKIE, path="/")
    return response
