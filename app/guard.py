"""NUL bytes are a 400: a small ASGI middleware around the app (inside app.http.EdgeMiddleware).

A NUL byte anywhere in the path, the query string or a url-encoded form body is refused before any route runs:
no page of lpstudy takes one, and PostgreSQL rejects NUL in text, which used to surface as a 500. (Errors that
escape every handler are EdgeMiddleware's last-resort 500 page.)
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("lpstudy")
MAX_FORM_SCAN = 1 << 20  # url-encoded bodies up to 1 MiB are checked for NUL (larger ones: the routes refuse them)


def _page(title: str, message: str) -> bytes:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{title}</title><link rel="stylesheet" href="/static/css/site.css"></head>'
        f'<body><main id="page" class="page" data-page="message" data-round="0"><h1>{title}</h1>'
        f'<p class="message">{message}</p></main></body></html>'
    ).encode()


BAD_NUL = _page(
    "Invalid request",
    "This address or form contains a NUL character, which no page here accepts. Nothing was saved. "
    "Please go back and try again.",
)


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
        query: bytes = scope.get("query_string", b"")
        nul_in_path = "\x00" in scope.get("path", "") or b"\x00" in raw_path or b"%00" in raw_path
        if nul_in_path or b"\x00" in query or b"%00" in query:
            await _respond(send, 400, BAD_NUL)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if scope.get("method") == "POST" and ctype == b"application/x-www-form-urlencoded":
            body, more = b"", True
            messages: list[Message] = []
            while more:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_FORM_SCAN:
                    break
            if b"%00" in body or b"\x00" in body:
                await _respond(send, 400, BAD_NUL)
                return
            pending = list(messages)

            async def replay() -> Message:
                return pending.pop(0) if pending else await receive()

            receive = replay

        await self.app(scope, receive, send)


def install(app: Any) -> None:
    app.add_middleware(Guard)
