"""create_app(settings): the FastAPI application (no torch anywhere in this process)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.admin import auth
from app.admin.routes import router as admin_router
from app.config import Settings, get_settings
from app.db import Database
from app.errors import DomainError, StudyUnavailable, TooManyRequests
from app.participants.routes import router as participant_router
from app.participants.viewing import ScreenTooSmall
from app.prolific import completion_url
from app.stimuli.routes import router as image_router
from app.web import ROOT, render

log = logging.getLogger("lpstudy")


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="lpstudy", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.db = db or Database(settings)

    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    app.include_router(participant_router)
    app.include_router(image_router)
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
        return {"status": "ok"}

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
        response = render(
            request, "message.html", title=exc.title, message=exc.message, status_code=exc.status_code
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
            message="This address or form is not valid.",
            status_code=400,
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
