"""The edge of every HTTP response, as one pure ASGI middleware (no per-request objects on the hot path).

- Security headers on every response, participant and admin alike: a strict Content-Security-Policy (no inline
  script or style anywhere, nothing may frame lpstudy), X-Content-Type-Options, Referrer-Policy,
  X-Frame-Options, Cross-Origin-Opener-Policy, Permissions-Policy, and HSTS when the request came over https
  (directly, or through a proxy that uvicorn trusts with ``--forwarded-allow-ips``).
- HEAD on every GET route: answered as the GET, without the body (uptime monitors use HEAD).
- A request id: the client's ``X-Request-ID`` when it is a sane token, else a fresh one; echoed in the response
  and put on every log record of the request (app.logs).
- Metrics and an access log line, when enabled.
- A last resort for errors nobody handled: a plain HTML 500 page that still carries the headers (and is logged
  once, with the request id), never Starlette's bare "Internal Server Error".
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from typing import Any

from app.logs import REQUEST_ID
from app.metrics import Metrics

log = logging.getLogger("lpstudy.http")
access = logging.getLogger("lpstudy.access")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")
_NAMES = {k for k, _ in SECURITY_HEADERS} | {HSTS[0], b"x-request-id"}
_REQUEST_ID_OK = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_ERROR_PAGE = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Something went wrong</title>'
    b'<link rel="stylesheet" href="/static/css/site.css"></head><body><main id="page" class="page" '
    b'data-page="error" data-round="0"><h1>Something went wrong</h1><p class="message">The server could not '
    b"answer this request. Please try again in a moment.</p></main></body></html>"
)


_RID_RANDOM = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _RID_RANDOM.seed(os.urandom(16)))  # forked workers: their own ids


def _new_request_id() -> bytes:
    """16 hex digits. A correlation id, not a secret: drawn from a PRNG seeded once per process from the OS,
    because an os.urandom call per request (secrets.token_hex) cost ~0.07 ms on this VM, a tenth of the
    participant path's CPU per request. A forked worker reseeds, so workers never share a sequence."""
    return b"%016x" % _RID_RANDOM.getrandbits(64)


class EdgeMiddleware:
    def __init__(self, app: Any, *, metrics: Metrics | None = None, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = dict(scope, method="GET")
        rid_b = b""
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                if _REQUEST_ID_OK.match(v):
                    rid_b = v
                break
        if not rid_b:
            rid_b = _new_request_id()
        rid = rid_b.decode()
        token = REQUEST_ID.set(rid)
        extra: list[tuple[bytes, bytes]] = [*SECURITY_HEADERS, (b"x-request-id", rid_b)]
        if scope.get("scheme") == "https":
            extra.append(HSTS)
        status = 0
        t0 = time.perf_counter()

        async def send_edge(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or ())
                own = {k.lower() for k, _ in headers if k.lower() in _NAMES}
                headers.extend(h for h in extra if h[0] not in own)
                message = {**message, "headers": headers}
            elif head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(scope, receive, send_edge)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope.get("path"))
            if status == 0:
                await send_edge(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(_ERROR_PAGE)).encode()),
                        ],
                    }
                )
                await send_edge({"type": "http.response.body", "body": _ERROR_PAGE})
            status = status or 500
        finally:
            REQUEST_ID.reset(token)
        if self.metrics is not None or self.access_log:
            elapsed = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static/") else "other")
            method = "HEAD" if head else scope["method"]
            if self.metrics is not None:
                self.metrics.observe(method, template, status, elapsed)
            if self.access_log:
                access.info(
                    "%s %s %d %.1fms",
                    method,
                    scope["path"],
                    status,
                    elapsed * 1000,
                    extra={"request_id": rid, "status": status, "route": template, "ms": round(elapsed * 1000, 1)},
                )
