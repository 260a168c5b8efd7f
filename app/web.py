"""Web plumbing shared by routers: templates, the per-request DB session, and small helpers."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.routing import Match, Route
from starlette.types import Scope

from app.db import is_transient

R = TypeVar("R")
log = logging.getLogger("lpstudy.db")
# A transient database error (a restart, a dropped connection) is retried once after this pause.
RETRY_DELAY_S = 1.0
ROOT = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(ROOT / "templates"))
# Templates are read once per process: Jinja's auto_reload would stat every template file on every render (two
# system calls per page on the participant path). Template edits take a server restart (or `--reload`).
templates.env.auto_reload = False


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


_POOLS: dict[tuple[str, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


class HotPool:
    """A bounded thread pool for the participant hot path's database work: one hop per request through
    asyncio's own executor hand-off (cheaper than anyio's to_thread, which the profile of the launch burst put at
    a sixth of the server's CPU), the request's context variables (its request id) carried into the thread, and
    one retry after RETRY_DELAY_S on a transient database error. Only for idempotent work: every participant
    operation is (entry is keyed on the PID, answers are conditional on the participant's position, page views
    only mark things once), and so is reading an image; a second failure goes to the app's 503 page, which
    reloads itself. The pools are per process and shared by every app in it (tests build many apps)."""

    def __init__(self, name: str, size: int) -> None:
        with _POOLS_LOCK:
            pool = _POOLS.get((name, size))
            if pool is None:
                pool = _POOLS[(name, size)] = ThreadPoolExecutor(size, thread_name_prefix=f"lpstudy-{name}")
        self.pool = pool

    async def _once(self, fn: Callable[..., R], args: tuple[Any, ...]) -> R:
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.pool, ctx.run, fn, *args)

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        try:
            return await self._once(fn, args)
        except Exception as e:
            if not is_transient(e):
                raise
            log.warning("transient database error, retrying once: %s", str(e).splitlines()[0])
        await asyncio.sleep(RETRY_DELAY_S)
        return await self._once(fn, args)


class HotRoute(Route):
    """A plain Starlette route for the participant hot path. It names itself in the scope (as FastAPI's routes
    do, for the metrics' route label) and declares the query and form fields it reads, which FastAPI would have
    known from the signature (the fuzz test sends hostile values in each of them)."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: list[str],
        query: tuple[str, ...] = (),
        form: tuple[str, ...] = (),
    ) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.query_names = query
        self.form_names = form

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child
