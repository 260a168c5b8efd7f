"""Request parsing for the participant hot path, without FastAPI's dependency machinery.

The participant routes are plain Starlette routes (app.participants.routes): at a launch burst every request
counts, and FastAPI's per-request dependency solving and form validation cost about as much server CPU as the
database work. What they took from FastAPI is kept here, with the same meaning:
- a form field that is absent *or empty* reads as None (FastAPI's rule for optional Form fields);
- a repeated field reads as its last value (Starlette's multidict rule);
- an integer path parameter that is not one is a 400 "Invalid request" page, as FastAPI's validation error was.
Browsers post these forms url-encoded; multipart bodies are still accepted (through Starlette's parser).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request

from app.errors import BadRequest

# The participant forms are a few hundred bytes; anything much larger is not one of them.
MAX_FORM_BYTES = 64 * 1024
_URLENCODED = "application/x-www-form-urlencoded"


class InvalidRequest(BadRequest):
    """The address or form is not one this server makes (the same page FastAPI's validation errors give)."""

    def __init__(self) -> None:
        super().__init__("This address or form is not valid. Nothing was saved.", title="Invalid request")


def _clean(fields: dict[str, str]) -> dict[str, str | None]:
    return {k: (v if v != "" else None) for k, v in fields.items()}


async def read_form(request: Request) -> dict[str, str | None]:
    """The posted fields, name -> value (None when empty)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == _URLENCODED or not ctype:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise InvalidRequest()
        if not body:
            return {}
        return _clean(dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))
    if ctype == "multipart/form-data":
        form = await request.form(max_files=0, max_fields=64)
        return _clean({k: v for k, v in form.items() if isinstance(v, str)})
    return {}


_INT = re.compile(r"^-?[0-9]{1,10}$")


def int_param(value: str) -> int:
    """A path segment that must be an integer (its range is the service's to check)."""
    if not _INT.match(value):
        raise InvalidRequest()
    return int(value)
