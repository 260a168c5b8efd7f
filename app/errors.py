"""Domain errors: raised by services, rendered by the app's error handlers (HTML or plain text)."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    title = "Something went wrong"

    def __init__(self, message: str, *, status_code: int | None = None, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if title is not None:
            self.title = title


class NotFound(DomainError):
    status_code = 404
    title = "Not found"


class BadRequest(DomainError):
    status_code = 400
    title = "Invalid request"


class Conflict(DomainError):
    status_code = 409
    title = "Conflict"


class ConfigError(DomainError):
    """A study config, manifest or other file the admin supplied is invalid."""

    status_code = 422
    title = "Invalid configuration"


class StudyUnavailable(DomainError):
    """The study exists but is not taking participants (closed, draft or full)."""

    status_code = 200
    title = "This study is not available"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TooManyRequests(DomainError):
    """Throttled: answered 429 with a Retry-After header (seconds)."""

    status_code = 429
    title = "Too many attempts"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class UpstreamError(DomainError):
    """A remote service (the Prolific API) refused or failed; nothing was changed on our side."""

    status_code = 502
    title = "Prolific did not accept the request"
