"""Web plumbing shared by routers: templates, the per-request DB session, and small helpers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(ROOT / "templates"))


def _dt(value: dt.datetime | None) -> str:
    """A timestamp as admins read it: UTC, to the second ('' when missing)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _audit_details(details: dict[str, Any] | None) -> str:
    return json.dumps(details, sort_keys=True, ensure_ascii=False) if details else ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _num(value: Any, digits: int = 3) -> str:
    """A number as the analysis gives it, rounded for reading only ('-' when missing)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return (
            f"{value:.{digits}g}"
            if abs(value) < 1e-3 or abs(value) >= 1e4
            else f"{value:.{digits}f}".rstrip("0").rstrip(".")
        )
    return str(value)


templates.env.filters["dt"] = _dt
templates.env.filters["num"] = _num
templates.env.filters["duration"] = _duration
templates.env.filters["audit_details"] = _audit_details


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; the route commits (services only flush)."""
    session = request.app.state.db.sessionmaker()
    try:
        yield session
    finally:
        session.close()


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def public_base_url(request: Request) -> str:
    """Where participants reach this server: LPSTUDY_PUBLIC_BASE_URL if set; else the request's own scheme and
    host, taken from X-Forwarded-Proto/-Host only when LPSTUDY_TRUST_PROXY says a proxy sets them."""
    settings = request.app.state.settings
    if settings.public_base_url:
        return str(settings.public_base_url)
    scheme, host = request.url.scheme, request.headers.get("host") or request.url.netloc
    if settings.trust_proxy:
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip() or scheme
        host = request.headers.get("x-forwarded-host", host).split(",")[0].strip() or host
    if scheme not in ("http", "https"):
        scheme = "https"
    return f"{scheme}://{host}"
