"""Prolific specifics: URL parameters and the completion redirect."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from app.errors import BadRequest

# Prolific ids are 24 hexadecimal characters (MongoDB ObjectIds).
PROLIFIC_ID_RE = re.compile(r"^[0-9a-fA-F]{24}$")


class EntryParams:
    __slots__ = ("pid", "study_id", "session_id")

    def __init__(self, pid: str, study_id: str | None, session_id: str | None) -> None:
        self.pid = pid
        self.study_id = study_id
        self.session_id = session_id


def parse_entry_params(pid: str | None, study_id: str | None, session_id: str | None) -> EntryParams:
    if not pid:
        raise BadRequest(
            "This link is missing your Prolific ID. Please open the study again from Prolific "
            "so that your ID is passed along.",
            title="Your Prolific ID is missing",
        )
    if not PROLIFIC_ID_RE.match(pid):
        raise BadRequest(
            "The Prolific ID in this link does not look right. Please open the study again from Prolific.",
            title="Your Prolific ID is not valid",
        )
    for name, value in (("STUDY_ID", study_id), ("SESSION_ID", session_id)):
        if value is not None and value != "" and not PROLIFIC_ID_RE.match(value):
            raise BadRequest(
                f"The {name} in this link does not look right. Please open the study again from Prolific.",
                title="This link is not valid",
            )
    return EntryParams(pid.lower(), (study_id or None), (session_id or None))


def completion_url(base: str, code: str) -> str:
    return f"{base}?{urlencode({'cc': code})}"
