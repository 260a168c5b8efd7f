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


# --- the Prolific setup panel -----------------------------------------------------------------------------

PLACEHOLDERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


def study_url(base: str, slug: str) -> str:
    """The exact URL to paste into Prolific's "study URL" field (Prolific substitutes the placeholders)."""
    return f"{base.rstrip('/')}/s/{slug}?{PLACEHOLDERS}"


class CodeRow:
    """One completion code as Prolific's study set-up asks for it: the code, its type and the action."""

    __slots__ = ("when", "code", "code_type", "action", "why")

    def __init__(self, when: str, code: str | None, code_type: str, action: str, why: str) -> None:
        self.when = when
        self.code = code
        self.code_type = code_type
        self.action = action
        self.why = why


def completion_codes(study: object) -> list[CodeRow]:
    """Every completion code lpstudy can send, with Prolific's code type and the action to set for it."""
    incompatible = getattr(study, "code_incompatible_device", None)
    return [
        CodeRow(
            "finished every trial and the demographics",
            getattr(study, "code_completed"),  # noqa: B009 - the Study model or a view of it
            "COMPLETED",
            "Approve and pay (or Manually review, to check the data first)",
            "a complete, valid submission",
        ),
        CodeRow(
            "declined the consent form",
            getattr(study, "code_no_consent"),  # noqa: B009
            "NO_CONSENT",
            "Request return",
            "they did not take part; Prolific asks them to return the submission, which frees the place",
        ),
        CodeRow(
            "failed the attention checks (at least the configured threshold, never fewer than two)",
            getattr(study, "code_failed_attention"),  # noqa: B009
            "FAILED_ATTENTION_CHECK",
            "Manually review",
            "Prolific allows rejecting for attention only after two failed checks; review before you reject",
        ),
        CodeRow(
            "opened the study on a device it cannot run on",
            incompatible,
            "INCOMPATIBLE_DEVICE",
            "Request return",
            "not the participant's fault: ask for a return, never reject"
            if incompatible
            else "this study sends no such code (lpstudy does not screen devices for it): nothing to set",
        ),
    ]
