"""create_app(settings): the FastAPI application (no torch anywhere in this process)."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import guard
from app.admin import auth
from app.admin.routes import router as admin_router
from app.config import Settings, get_settings
from app.db import Database, is_transient
from app.errors import DomainError, NotFound, StudyUnavailable, TooManyRequests
from app.http import EdgeMiddleware
from app.metrics import Metrics
from app.participants import routes as participant_routes
from app.participants.viewing import ScreenTooSmall
from app.prolific import completion_url
from app.stimuli import routes as image_routes
from app.web import ROOT, render

log = logging.getLogger("lpstudy")
# The 503 page reloads itself after this many seconds (and says so in Retry-After).
RETRY_AFTER_S = 3
_PARTICIPANT_POST = re.compile(r"^/p/([A-Za-z0-9_\-]+)/")


_PARTICIPANT_PATH = re.compile(r"/p/([A-Za-z0-9_-]{8,64})(?:/|$)")


def _participant_page(request: Request) -> str | None:
    """For an error on a participant's own path, the address of their current page (the server decides it)."""
    m = _PARTICIPANT_PATH.match(request.url.path)
    return f"/p/{m.group(1)}" if m else None


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = (settings or get_settings()).with_secret_key()
    metrics = Metrics(settings.resolved_state_dir() / "metrics") if settings.metrics_token else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with participant_routes.lifespan(app):
            if metrics is not None:
                metrics.start()
            yield
            if metrics is not None:
                metrics.stop()

    app = FastAPI(
        title="lpstudy",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.db = db or Database(settings)
    app.state.metrics = metrics
    guard.install(app)  # NUL bytes are a 400 (inside EdgeMiddleware, so the 400 carries its headers)
    app.add_middleware(EdgeMiddleware, metrics=metrics, access_log=settings.access_log)

    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    app.router.routes.extend(participant_routes.routes)  # plain Starlette routes: the hot path
    app.router.routes.extend(image_routes.routes)
    app.include_router(admin_router)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        return render(
            request,
            "message.html",
            title="lpstudy",
            message="This server runs research studies. Participants arrive through a study link.",
        )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """The process answers (load balancers, container healthchecks): no database round trip."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> dict[str, str]:
        """The database answers too (uptime monitors); 503 while it does not."""
        with app.state.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "database": "ok"}

    if metrics is not None:

        @app.get("/metrics", include_in_schema=False)
        def metrics_page(request: Request) -> Response:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {settings.metrics_token}".encode()):
                with app.state.db.session() as session:  # or a logged-in admin; else NotLoggedIn
                    auth.require_admin(request, session)
            return PlainTextResponse(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(sa_exc.SQLAlchemyError)
    def database_error(request: Request, exc: sa_exc.SQLAlchemyError) -> Response:
        if not is_transient(exc):
            raise exc  # a bug, not an outage: the last-resort 500 (logged with the request id)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0])
        if metrics is not None:
            metrics.db_unavailable()
        refresh_url: str | None = None
        if request.method in ("GET", "HEAD"):
            refresh_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        elif m := _PARTICIPANT_POST.match(request.url.path):
            refresh_url = f"/p/{m.group(1)}"  # back to the participant's current page (the server decides it)
        response = render(
            request, "unavailable.html", status_code=503, retry_after=RETRY_AFTER_S, refresh_url=refresh_url
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(DomainError)
    def domain_error(request: Request, exc: DomainError) -> Response:
        if isinstance(exc, ScreenTooSmall):  # Prolific's "incompatible device" code, when the study has one
            url = completion_url(settings.prolific_complete_url, exc.code) if exc.code else None
            return render(
                request,
                "message.html",
                title=exc.title,
                message=exc.message,
                link_url=url,
                link_text="Return to Prolific (device not suitable)",
                code=exc.code,
                retry_url=str(request.url.remove_query_params("lp_vw")),
                status_code=200,
            )
        if isinstance(exc, StudyUnavailable):
            return render(request, "message.html", title=exc.title, message=exc.message, status_code=200)
        back = None if isinstance(exc, NotFound) else _participant_page(request)
        response = render(
            request,
            "message.html",
            title=exc.title,
            message=exc.message,
            status_code=exc.status_code,
            link_url=back,
            link_text="Back to the study",
        )
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(auth.NotLoggedIn)
    def not_logged_in(request: Request, exc: auth.NotLoggedIn) -> Response:
        if request.method in ("GET", "HEAD"):
            return RedirectResponse("/admin/login", status_code=303)
        return render(
            request, "message.html", title="Not logged in", message="Please log in to the admin area.", status_code=403
        )

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return render(
            request,
            "message.html",
            title="Invalid request",
            message="This address or form is not valid. Nothing was saved.",
            status_code=400,
            link_url=_participant_page(request),
            link_text="Back to the study",
        )

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Page not found", 405: "Not allowed"}
        return render(
            request,
            "message.html",
            title=titles.get(exc.status_code, "Error"),
            message="There is nothing at this address." if exc.status_code == 404 else str(exc.detail),
            status_code=exc.status_code,
        )

    return app
