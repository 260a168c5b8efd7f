"""What every part of the participant's path shares: the Core tables, a few constants, autocommit connections.

The participant's path is the hot path, so it runs on plain Core connections (no ORM session); each service
function opens its own connection from the engine and commits itself.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets

from sqlalchemy import Connection, Engine, Table

from app.models import Condition, Participant, ParticipantStatus, Stage, Stimulus, Study, Trial

P: Table = Participant.__table__  # type: ignore[assignment]
T: Table = Trial.__table__  # type: ignore[assignment]
S: Table = Stimulus.__table__  # type: ignore[assignment]
ST: Table = Study.__table__  # type: ignore[assignment]
C: Table = Condition.__table__  # type: ignore[assignment]

TRIALS = Stage.TRIALS.value
ACTIVE = ParticipantStatus.ACTIVE.value
NOT_FOUND = "This page does not exist. Please open the study again from Prolific."
# last_seen_at (what a timeout is measured from) is refreshed by a page view or a trial's answer only when older
# than this: a page view stays read-only, and on PostgreSQL an answer's UPDATE of the participant leaves every
# indexed column as it was (last_seen_at is in an index), so it can be a HOT update that writes no index entries.
TOUCH_INTERVAL_S = 30


def new_token() -> str:
    return secrets.token_urlsafe(16)


def entry_rng() -> random.Random:
    """A new entry's randomness (its trial order, attention checks' labels, new slots' tie-breaks): a Mersenne
    Twister seeded with 128 bits from the OS, one os.urandom call per entry. Not random.SystemRandom: that makes
    an os.urandom call for every draw (41 for one entry), each giving up the GIL and waiting to get it back on a
    busy server (no change in the benchmarks was measurable from this alone). Nothing here needs
    unpredictability beyond a fresh seed: the draws only have to be independent of everything the participant
    or the study controls."""
    return random.Random(int.from_bytes(os.urandom(16), "big"))


def autocommit(engine: Engine) -> Connection:
    """A connection whose statements each commit on their own (no BEGIN/COMMIT round trips)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def aware(ts: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; they are stored in UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)
