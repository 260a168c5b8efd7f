"""Test participants: signed test entries (admin previews, `lpstudy bots`), counting and deleting them.

A test entry link carries `lpstudy_test=<token>`: a payload (study slug, kind, optional condition) signed with
the settings' secret key (itsdangerous, time-stamped). Without the secret it cannot be made or altered, and a
token for one study does not open another. A participant who enters with one is stored with `is_test = true`
and `test_kind` "preview" or "bot"; a link with a bad or expired token is refused, never taken as real.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.errors import BadRequest
from app.models import Participant, Study, Trial
from app.participants.repository import TEST_KINDS
from app.prolific import EntryParams

TEST_PARAM = "lpstudy_test"
SALT = "lpstudy-test-entry"
# A preview link on the admin page, or a bot run's token, opens new test participants for this long.
TOKEN_MAX_AGE_S = 24 * 3600


@dataclass(frozen=True)
class EntryGrant:
    slug: str
    kind: str  # "preview" or "bot"
    condition: str | None = None  # a preview of one condition; None: assigned as a participant would be


def generated_entry_params() -> EntryParams:
    """Fresh Prolific-shaped ids (24 hex digits) for a preview, which comes without any."""
    return EntryParams(secrets.token_hex(12), secrets.token_hex(12), secrets.token_hex(12))


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def mint_test_token(secret_key: str, slug: str, kind: str, condition: str | None = None) -> str:
    if kind not in TEST_KINDS:
        raise ValueError(f"test kind must be one of {TEST_KINDS}, not {kind!r}")
    return _serializer(secret_key).dumps({"s": slug, "k": kind, "c": condition})


def preview_url(secret_key: str, slug: str, condition: str | None = None) -> str:
    """The admin's preview link: opens the study as a new test participant (in `condition`, if given)."""
    return f"/s/{slug}?{TEST_PARAM}={mint_test_token(secret_key, slug, 'preview', condition)}"


def read_test_token(secret_key: str, token: str, slug: str, max_age_s: int = TOKEN_MAX_AGE_S) -> EntryGrant:
    """The entry a valid token allows for this study; BadRequest for anything else (forged, expired, other study)."""
    try:
        data = _serializer(secret_key).loads(token, max_age=max_age_s)
        entry = EntryGrant(slug=str(data["s"]), kind=str(data["k"]), condition=data.get("c"))
    except (BadData, KeyError, TypeError, ValueError, AttributeError):
        entry = None
    if entry is None or entry.slug != slug or entry.kind not in TEST_KINDS:
        raise BadRequest(
            "This test link is not valid for this study, or it has expired. Open a new preview link from the "
            "study's admin page.",
            title="Test link not valid",
        )
    return entry


@dataclass(frozen=True)
class PilotCounts:
    preview: int = 0
    bot: int = 0

    @property
    def total(self) -> int:
        return self.preview + self.bot


def count_test_participants(session: Session, study: Study) -> PilotCounts:
    rows = session.execute(
        select(Participant.test_kind, func.count())
        .where(Participant.study_id == study.id, Participant.is_test.is_(True))
        .group_by(Participant.test_kind)
    ).all()
    by_kind = dict(rows)
    return PilotCounts(preview=by_kind.get("preview", 0), bot=by_kind.get("bot", 0))


@dataclass(frozen=True)
class Deleted:
    participants: int
    trials: int


def delete_test_participants(session: Session, study: Study, only: Collection[int] | None = None) -> Deleted:
    """Delete the study's test participants (or only those of them with the ids in ``only``) and their trials,
    and nothing else: the one implementation, for the CLI and the dashboard. Flushes; the caller commits."""
    which = [Participant.study_id == study.id, Participant.is_test.is_(True)]
    if only is not None:
        which.append(Participant.id.in_(list(only)))
    test_ids = select(Participant.id).where(*which)
    no_sync = {"synchronize_session": False}
    trials = session.execute(delete(Trial).where(Trial.participant_id.in_(test_ids)), execution_options=no_sync)
    people = session.execute(delete(Participant).where(*which), execution_options=no_sync)
    session.flush()
    return Deleted(participants=people.rowcount or 0, trials=trials.rowcount or 0)  # type: ignore[attr-defined]
