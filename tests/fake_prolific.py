"""A fake Prolific API on 127.0.0.1 (a real HTTP server in a thread) that follows the documented endpoints:

* ``GET  /api/v1/studies/{id}/submissions/`` -> ``{"results": [...], "_links": {"next": {"href": ...}}, "meta"}``
  (``page_size`` per page, like Prolific's pagination);
* ``POST /api/v1/submissions/bulk-approve/`` ``{"study_id", "submission_ids"}``: every id must be a submission of
  that study awaiting review, else 400 and nothing changes;
* ``POST /api/v1/submissions/{id}/transition/`` ``{"action": "REJECT", "message" (>= 100 chars),
  "rejection_category"}`` -> the submission, now REJECTED.

``Authorization: Token <token>`` is required (401 otherwise). ``fail`` queues forced answers
(``(status, headers)``) for the next requests, to test 403, 404, 429 and 5xx; ``requests`` records every request.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CATEGORIES = {"TOO_QUICKLY", "TOO_SLOWLY", "FAILED_INSTRUCTIONS", "INCOMP_LONGITUDINAL", "FAILED_CHECK", "LOW_EFFORT",
              "MALINGERING", "NO_CODE", "BAD_CODE", "NO_DATA", "UNSUPP_DEVICE", "OTHER"}  # fmt: skip


def new_id() -> str:
    return secrets.token_hex(12)


@dataclass
class FakeProlific:
    token: str = "fake-token-" + "x" * 20
    page_size: int = 2
    studies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[str, str, Any, str | None]] = field(default_factory=list)
    url: str = ""

    def add(self, study_id: str, participant_id: str, status: str = "AWAITING REVIEW", code: str | None = None) -> str:
        sid = new_id()
        self.studies.setdefault(study_id, []).append(
            {
                "id": sid,
                "participant_id": participant_id,
                "status": status,
                "started_at": "2026-12-01T10:00:00Z",
                "completed_at": None if status == "ACTIVE" else "2026-12-01T10:10:00Z",
                "has_siblings": False,
                "study_code": code,
                "return_requested": None,
            }  # fmt: skip
        )
        return sid

    def status_of(self, participant_id: str) -> str | None:
        for subs in self.studies.values():
            for s in subs:
                if s["participant_id"] == participant_id:
                    return str(s["status"])
        return None

    def start(self) -> FakeProlific:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.requests.append((method, self.path, body, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Token {fake.token}":
                    return self._send(401, {"error": {"detail": "Invalid token."}})
                if fake.fail:
                    status, headers = fake.fail.pop(0)
                    return self._send(status, {"error": {"detail": "forced"}}, headers)
                path, _, query = self.path.partition("?")
                m = re.fullmatch(r"/api/v1/studies/([0-9a-f]{24})/submissions/", path)
                if method == "GET" and m:
                    subs = fake.studies.get(m.group(1))
                    if subs is None:
                        return self._send(404, {"error": {"detail": "Not found."}})
                    page = int((re.search(r"page=(\d+)", query) or [0, 1])[1])
                    chunk = subs[(page - 1) * fake.page_size : page * fake.page_size]
                    more = page * fake.page_size < len(subs)
                    nxt = f"{fake.url}{path}?page={page + 1}" if more else None
                    links = {"self": {"href": None}, "next": {"href": nxt}, "previous": {"href": None}}
                    return self._send(200, {"results": chunk, "_links": links, "meta": {"count": len(subs)}})
                if method == "POST" and path == "/api/v1/submissions/bulk-approve/":
                    study = fake.studies.get((body or {}).get("study_id", ""))
                    ids = (body or {}).get("submission_ids") or []
                    if study is None:
                        return self._send(404, {"error": {"detail": "Not found."}})
                    by_id = {s["id"]: s for s in study}
                    if not ids or any(i not in by_id or by_id[i]["status"] != "AWAITING REVIEW" for i in ids):
                        return self._send(400, {"error": {"detail": "Invalid submissions."}})
                    for i in ids:
                        by_id[i]["status"] = "APPROVED"
                    return self._send(200, "The request to bulk approve has been received.")
                m = re.fullmatch(r"/api/v1/submissions/([0-9a-f]{24})/transition/", path)
                if method == "POST" and m:
                    sub = next((s for subs in fake.studies.values() for s in subs if s["id"] == m.group(1)), None)
                    if sub is None:
                        return self._send(404, {"error": {"detail": "Not found."}})
                    b = body or {}
                    if (
                        b.get("action") != "REJECT"
                        or len(b.get("message") or "") < 100
                        or b.get("rejection_category") not in CATEGORIES
                    ):
                        return self._send(400, {"error": {"detail": "Invalid transition."}})
                    sub["status"] = "REJECTED"
                    return self._send(200, {"id": sub["id"], "status": "REJECTED"})
                return self._send(404, {"error": {"detail": "Not found."}})

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
