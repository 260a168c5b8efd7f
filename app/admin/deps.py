"""Shared dependencies of the admin routes, as `Annotated` aliases.

``AdminDep``: a logged-in admin (strangers are redirected to the login page, or refused with 403 on POST).
``AdminFormDep``: the same, plus a valid CSRF token in the form; every state-changing admin route takes it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form
from sqlalchemy.orm import Session

from app.admin.auth import AdminSession, check_csrf, require_admin
from app.web import get_session

SessionDep = Annotated[Session, Depends(get_session)]
AdminDep = Annotated[AdminSession, Depends(require_admin)]


def require_admin_form(admin: AdminDep, csrf_token: Annotated[str | None, Form()] = None) -> AdminSession:
    check_csrf(admin, csrf_token)
    return admin


AdminFormDep = Annotated[AdminSession, Depends(require_admin_form)]
