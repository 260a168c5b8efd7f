"""Small helpers shared by the admin route modules."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from app.admin.auth import AdminSession
from app.web import render


def page(request: Request, name: str, admin: AdminSession, status_code: int = 200, **context: Any) -> Response:
    """Render an admin page: every page gets the admin (for the header) and the CSRF token (for its forms)."""
    return render(request, name, status_code=status_code, admin=admin, csrf=admin.csrf, **context)


def see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def csv_download(text: str, filename: str) -> Response:
    return Response(
        content=text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
