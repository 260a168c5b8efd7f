"""Prolific specifics: URL parameters and the completion redirect.

Prolific's ids (participant, study, session) are MongoDB ObjectIds written as 24 lowercase hexadecimal digits,
e.g. `5f0c1a2b3c4d5e6f708192a3`. An id is matched whole: `re.fullmatch` over ASCII hex only, so a trailing
newline or space, a 23- or 25-character value, Unicode digits, NUL bytes or anything else is refused with a 400
that says what is wrong, and nothing is stored. Upper-case hex is accepted and folded to lower case, so the same
participant can never be assigned twice through a changed case.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from app.errors import BadRequest

PROLIFIC_ID_LENGTH = 24
PROLIFIC_ID_RE = re.compile(r"[0-9a-fA-F]{24}", re.ASCII)
PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")


class EntryParams:
    __slots__ = ("pid", "study_id", "session_id")

    def __init__(self, pid: str, study_id: str | None, session_id: str | None) -> None:
        self.pid = pid
        self.study_id = study_id
        self.session_id = session_id


def is_prolific_id(value: str) -> bool:
    return PROLIFIC_ID_RE.fullmatch(value) is not None


def why_not_an_id(value: str) -> str:
    """What is wrong with a value that is not a Prolific id, in words (the value itself is not repeated)."""
    if any(c.isspace() or not c.isprintable() for c in value):
        return "it contains a space, a line break or another invisible character"
    if not value.isascii() or not all(c in "0123456789abcdefABCDEF" for c in value):
        return "it contains characters other than the digits 0-9 and the letters a-f"
    n = len(value)
    return f"it has {n} character{'' if n == 1 else 's'} instead of {PROLIFIC_ID_LENGTH}"


def parse_entry_params(pid: str | None, study_id: str | None, session_id: str | None) -> EntryParams:
    if not pid:
        raise BadRequest(
            "This link is missing your Prolific ID. Please open the study again from Prolific "
            "so that your ID is passed along.",
            title="Your Prolific ID is missing",
        )
    if not is_prolific_id(pid):
        raise BadRequest(
            f"The Prolific ID in this link is not valid: {why_not_an_id(pid)}. A Prolific ID is "
            f"{PROLIFIC_ID_LENGTH} digits and letters a-f. Nothing was saved. Please open the study again from "
            "Prolific, without changing the link.",
            title="Your Prolific ID is not valid",
        )
    for name, value in (("STUDY_ID", study_id), ("SESSION_ID", session_id)):
        if value is not None and value != "" and not is_prolific_id(value):
            raise BadRequest(
                f"The {name} in this link is not valid: {why_not_an_id(value)}. Nothing was saved. "
                "Please open the study again from Prolific, without changing the link.",
                title="This link is not valid",
            )
    return EntryParams(
        pid.lower(), (study_id or None) and study_id.lower(), (session_id or None) and session_id.lower()
    )


def refuse_repeated_params(counts: dict[str, int]) -> None:
    """A link that carries one of Prolific's ids twice is ambiguous: refuse it rather than pick one."""
    for name in PARAMS:
        if counts.get(name, 0) > 1:
            raise BadRequest(
                f"This link carries {name} more than once. Nothing was saved. Please open the study again from "
                "Prolific, without changing the link.",
                title="This link is not valid",
            )


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
    # The incompatible-device code has no column of its own: it lives in the study's config.
    config = getattr(study, "config", None) or {}
    incompatible = (config.get("completion_codes") or {}).get("incompatible_device")
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
