"""Web plumbing shared by routers: templates, the per-request DB session, and small helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(ROOT / "templates"))


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; the route commits (services only flush)."""
    session = request.app.state.db.sessionmaker()
    try:
        yield session
    finally:
        session.close()


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status_code)
