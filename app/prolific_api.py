"""A small client for Prolific's researcher API (httpx), as documented at docs.prolific.com:

* ``GET  /api/v1/studies/{id}/submissions/``: the study's submissions (``results``; pages via ``_links.next``);
* ``POST /api/v1/submissions/bulk-approve/`` with ``{"study_id", "submission_ids"}``;
* ``POST /api/v1/submissions/{id}/transition/`` with ``{"action": "REJECT", "message", "rejection_category"}``
  (the message at least 100 characters).

Every request carries ``Authorization: Token <token>``. The token comes from the settings and is never shown, put
in an error message or logged. Errors become one ``ProlificError`` with a message an admin can act on: 401 (bad
token), 403 (not allowed), 404 (no such study or submission), 429 (rate limited: waited for and retried, honouring
Retry-After, then given up), 5xx and network failures (retried for reads only). A write is one request: it either
happened or it did not, so nothing is ever half done on our side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.errors import UpstreamError

REJECTION_CATEGORIES = {
    "TOO_QUICKLY": "Completed too quickly",
    "TOO_SLOWLY": "Completed too slowly",
    "FAILED_INSTRUCTIONS": "Failed to follow the instructions",
    "INCOMP_LONGITUDINAL": "Incomplete longitudinal study",
    "FAILED_CHECK": "Failed attention or comprehension checks",
    "LOW_EFFORT": "Low effort",
    "MALINGERING": "Malingering",
    "NO_CODE": "No completion code",
    "BAD_CODE": "Wrong completion code",
    "NO_DATA": "No data",
    "UNSUPP_DEVICE": "Unsupported device",
    "OTHER": "Other",
}
MIN_REJECT_MESSAGE = 100
PROLIFIC_ID = 24


class ProlificError(UpstreamError):
    """Prolific refused or failed (answered 502 here; ``upstream_status`` is Prolific's own status)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.upstream_status = status


class ProlificNotConfigured(UpstreamError):
    status_code = 409
    title = "Prolific API not configured"


@dataclass(frozen=True)
class Submission:
    id: str
    participant_id: str
    status: str
    study_code: str | None
    started_at: str | None
    completed_at: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Submission:
        return cls(
            id=str(d.get("id", "")),
            participant_id=str(d.get("participant_id") or d.get("participant") or "").lower(),
            status=str(d.get("status", "")),
            study_code=d.get("study_code") or d.get("entered_code"),
            started_at=d.get("started_at"),
            completed_at=d.get("completed_at"),
        )


def _explain(status: int, what: str) -> str:
    if status == 401:
        return "Prolific refused the API token (401): check LPSTUDY_PROLIFIC_API_TOKEN. Nothing was changed."
    if status == 403:
        return f"Prolific does not allow this token to {what} (403). Nothing was changed."
    if status == 404:
        return (
            f"Prolific knows no such study or submission ({what}; 404): check the Prolific study id. "
            "Nothing was changed."
        )
    if status == 429:
        return (
            f"Prolific is rate-limiting requests ({what}; 429) and kept refusing after waiting. "
            "Nothing was changed; try again later."
        )
    if status >= 500:
        return f"Prolific had a server error ({status}) while asked to {what}. Nothing was changed; try again later."
    return f"Prolific did not accept the request to {what} ({status}). Nothing was changed."


class ProlificClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 15.0,
        attempts: int = 4,
        max_wait_s: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
        )
        self.attempts = attempts
        self.max_wait_s = max_wait_s
        self._sleep = sleep or (lambda s: time.sleep(s))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProlificClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, url: str, what: str, *, json: Any = None, retry_server_errors: bool) -> Any:
        delay = 1.0
        for attempt in range(1, self.attempts + 1):
            try:
                r = self._http.request(method, url, json=json)
            except httpx.TimeoutException:
                if retry_server_errors and attempt < self.attempts:
                    self._sleep(delay)
                    delay *= 2
                    continue
                raise ProlificError(
                    f"Prolific did not answer in time while asked to {what}. "
                    + (
                        "Nothing was changed."
                        if retry_server_errors
                        else "It may or may not have been done: reload the submissions to see."
                    )
                ) from None
            except httpx.HTTPError as exc:
                raise ProlificError(
                    f"Could not reach Prolific to {what} ({type(exc).__name__}). Nothing was changed."
                ) from None
            if r.status_code == 429 and attempt < self.attempts:
                wait = _retry_after(r.headers.get("retry-after"), delay)
                if wait <= self.max_wait_s:
                    self._sleep(wait)
                    delay *= 2
                    continue
            if r.status_code >= 500 and retry_server_errors and attempt < self.attempts:
                self._sleep(delay)
                delay *= 2
                continue
            if r.status_code >= 400:
                raise ProlificError(_explain(r.status_code, what), status=r.status_code)
            if not r.content:
                return None
            try:
                return r.json()
            except ValueError:
                return r.text
        raise ProlificError(_explain(429, what), status=429)  # pragma: no cover - the loop returns or raises

    def submissions(self, study_id: str) -> list[Submission]:
        """Every submission of a Prolific study, following the pages."""
        _check_id(study_id, "Prolific study id")
        out: list[Submission] = []
        url: str | None = f"/api/v1/studies/{study_id}/submissions/"
        pages = 0
        while url and pages < 1000:
            body = self._request("GET", url, "list the study's submissions", retry_server_errors=True)
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise ProlificError("Prolific's answer to the submissions request was not the documented shape.")
            out += [Submission.from_json(d) for d in body["results"] if isinstance(d, dict)]
            nxt = (body.get("_links") or {}).get("next") or {}
            url = nxt.get("href") if isinstance(nxt, dict) else None
            pages += 1
        return out

    def bulk_approve(self, study_id: str, submission_ids: list[str]) -> None:
        _check_id(study_id, "Prolific study id")
        for sid in submission_ids:
            _check_id(sid, "submission id")
        self._request(
            "POST",
            "/api/v1/submissions/bulk-approve/",
            f"approve {len(submission_ids)} submission(s)",
            json={"study_id": study_id, "submission_ids": submission_ids},
            retry_server_errors=False,
        )

    def reject(self, submission_id: str, message: str, category: str) -> None:
        _check_id(submission_id, "submission id")
        check_rejection(message, category)
        self._request(
            "POST",
            f"/api/v1/submissions/{submission_id}/transition/",
            "reject the submission",
            json={"action": "REJECT", "message": message, "rejection_category": category},
            retry_server_errors=False,
        )


def check_rejection(message: str, category: str) -> None:
    from app.errors import BadRequest

    if category not in REJECTION_CATEGORIES:
        raise BadRequest(f"choose a rejection category ({', '.join(REJECTION_CATEGORIES)})")
    if len(message.strip()) < MIN_REJECT_MESSAGE:
        raise BadRequest(
            f"the message to the participant must be at least {MIN_REJECT_MESSAGE} characters "
            f"(it has {len(message.strip())}): Prolific requires it, and it should explain the reason"
        )


def _check_id(value: str, what: str) -> None:
    from app.errors import BadRequest
    from app.prolific import PROLIFIC_ID_RE

    if not PROLIFIC_ID_RE.match(value or ""):
        raise BadRequest(f"'{value}' is not a valid {what} (24 hexadecimal characters)")


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default


def client_from_settings(settings: Any, **kwargs: Any) -> ProlificClient:
    token = settings.prolific_api_token
    if token is None or not token.get_secret_value().strip():
        raise ProlificNotConfigured(
            "Set LPSTUDY_PROLIFIC_API_TOKEN (a token from Prolific's settings page) to read submissions and approve "
            "or reject from here. Without it, do the same on prolific.com with the participants table."
        )
    return ProlificClient(settings.prolific_api_url, token.get_secret_value().strip(), **kwargs)
