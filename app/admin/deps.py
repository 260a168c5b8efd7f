"""Shared dependencies of the admin routes, as `Annotated` aliases.

``AdminDep``: a logged-in admin (strangers are redirected to the login page, or refused with 403 on POST).
``AdminFormDep``: the same, plus a valid CSRF token in the form; every state-changing admin route takes it.
``StimulusId``, ``FormIds``: database ids from the URL or a form, bounded to the columns' range.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Path
from pydantic import Field
from sqlalchemy.orm import Session

from app.admin.auth import AdminSession, check_csrf, require_admin
from app.web import get_session

SessionDep = Annotated[Session, Depends(get_session)]
AdminDep = Annotated[AdminSession, Depends(require_admin)]
# Database ids in URLs and forms: within the INTEGER columns' range (a larger one is a 400, not PostgreSQL's 500).
DB_ID_MAX = 2**31 - 1
StimulusId = Annotated[int, Path(ge=1, le=DB_ID_MAX)]
FormIds = Annotated[list[Annotated[int, Field(ge=1, le=DB_ID_MAX)]] | None, Form()]


def require_admin_form(admin: AdminDep, csrf_token: Annotated[str | None, Form()] = None) -> AdminSession:
    check_csrf(admin, csrf_token)
    return admin


AdminFormDep = Annotated[AdminSession, Depends(require_admin_form)]
