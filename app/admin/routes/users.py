"""Admin accounts: the list, and creation by another admin (the CLI's `lpstudy admin create-user` does the same)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.admin import audit, auth
from app.admin.deps import AdminDep, AdminFormDep, SessionDep
from app.admin.routes._common import page, see_other
from app.errors import DomainError

router = APIRouter(prefix="/admin")


@router.get("/users")
def users(request: Request, admin: AdminDep, session: SessionDep, created: str | None = None) -> Response:
    return page(request, "admin/users.html", admin, users=auth.list_users(session), created=created)


@router.post("/users")
def create_user(
    request: Request,
    admin: AdminFormDep,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    password2: Annotated[str, Form()] = "",
) -> Response:
    try:
        if password != password2:
            raise DomainError("the two passwords do not match", status_code=400)
        user = auth.create_user(session, email, password)
    except DomainError as exc:
        session.rollback()
        return page(
            request,
            "admin/users.html",
            admin,
            status_code=exc.status_code,
            users=auth.list_users(session),
            error=exc.message,
            email=email,
        )
    audit.record(session, admin, "admin.create", target=user.email)
    session.commit()
    return see_other(f"/admin/users?created={user.email}")
