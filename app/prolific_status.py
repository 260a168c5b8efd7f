"""The study's Prolific id, and what Prolific says about its submissions, per lpstudy condition.

``set_prolific_study_id`` stores the id an admin enters on the set-up panel (24 hex characters, folded to lower
case; empty clears it). ``suggested_prolific_study_id`` is the STUDY_ID most real participants arrived with.

``prolific_counts`` matches every submission Prolific reports to an lpstudy participant by PROLIFIC_PID and counts
them per condition and Prolific status (RETURNED, TIMED-OUT, REJECTED, ...): the recruitment page shows these
beside lpstudy's own statuses. Submissions whose participant never arrived here are counted apart. Read-only:
Prolific's word changes nothing here (docs/dashboard.md says why a RETURNED participant keeps their slot until
the timeout). ``SubmissionsCache`` keeps Prolific's answer (or its error) for a short while, so that the
recruitment page's poll asks Prolific at most once per ``ttl_s`` per study and process."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import BadRequest, DomainError
from app.models import Condition, Participant, Study
from app.models.base import utcnow
from app.prolific import PROLIFIC_ID_LENGTH, is_prolific_id, why_not_an_id
from app.prolific_api import Submission
from app.prolific_review import latest_by_participant, prolific_study_ids

# Prolific's submission statuses, in the order the recruitment page shows them; any other is counted as OTHER.
PROLIFIC_STATUSES = ("ACTIVE", "AWAITING REVIEW", "APPROVED", "RETURNED", "TIMED-OUT", "REJECTED")
OTHER = "OTHER"
COLUMNS = (*PROLIFIC_STATUSES, OTHER)
CACHE_TTL_S = 30.0


def set_prolific_study_id(session: Session, study: Study, value: str) -> tuple[str | None, str | None] | None:
    """Store the study's Prolific id ('' clears it). Returns (before, after) if it changed, None if not."""
    value = value.strip()
    if value and not is_prolific_id(value):
        raise BadRequest(
            f"That is not a Prolific study id: {why_not_an_id(value)}. A Prolific study id is {PROLIFIC_ID_LENGTH} "
            "digits and letters a-f, as in the study's address on prolific.com. Nothing was changed."
        )
    new = value.lower() or None
    before = study.prolific_study_id
    if new == before:
        return None
    study.prolific_study_id = new
    session.flush()
    return before, new


def suggested_prolific_study_id(session: Session, study: Study) -> str | None:
    """The STUDY_ID most real participants arrived with, while the study has none set (else None)."""
    if study.prolific_study_id:
        return None
    known = prolific_study_ids(session, study)
    return known[0][0] if known else None


@dataclass
class ProlificCounts:
    """Prolific's statuses of the study's submissions: per condition (matched by PID), and for PIDs never seen."""

    prolific_study_id: str
    by_condition: dict[str, Counter[str]]
    unmatched: Counter[str]
    fetched_at: dt.datetime
    submissions: int = field(default=0)

    def cell(self, condition: str | None, column: str) -> int:
        counts = self.unmatched if condition is None else self.by_condition.get(condition, Counter())
        return counts[column]


def prolific_counts(
    session: Session, study: Study, submissions: list[Submission], fetched_at: dt.datetime
) -> ProlificCounts:
    assert study.prolific_study_id is not None
    mine = dict(
        session.execute(
            select(Participant.prolific_pid, Condition.code)
            .join(Condition, Condition.id == Participant.condition_id)
            .where(Participant.study_id == study.id, Participant.is_test.is_(False))
        ).all()
    )
    latest = latest_by_participant(submissions)
    by_condition: dict[str, Counter[str]] = {c.code: Counter() for c in study.conditions}
    unmatched: Counter[str] = Counter()
    for pid, sub in latest.items():
        column = sub.status if sub.status in PROLIFIC_STATUSES else OTHER
        code = mine.get(pid)
        (unmatched if code is None else by_condition[code])[column] += 1
    return ProlificCounts(study.prolific_study_id, by_condition, unmatched, fetched_at, len(latest))


class SubmissionsCache:
    """Prolific's answer per Prolific study id, kept ``ttl_s`` seconds; a failure is kept as long (not retried
    at every poll). One fetch at a time per process: a poll that finds a fetch running waits for its answer."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, dt.datetime, list[Submission] | DomainError]] = {}

    def get(
        self, prolific_study_id: str, fetch: Callable[[str], list[Submission]]
    ) -> tuple[list[Submission], dt.datetime]:
        """The submissions and when Prolific gave them; raises Prolific's error (a DomainError) if that failed."""
        with self._lock:
            kept = self._kept.get(prolific_study_id)
            if kept is None or self._clock() - kept[0] >= self.ttl_s:
                answer: list[Submission] | DomainError
                try:
                    answer = fetch(prolific_study_id)
                except DomainError as exc:
                    answer = exc
                kept = (self._clock(), utcnow(), answer)
                self._kept[prolific_study_id] = kept
        _, at, answer = kept
        if isinstance(answer, DomainError):
            raise answer
        return answer, at


@dataclass
class LiveCounts:
    """What the recruitment page shows about Prolific: the counts, or a note saying why there are none."""

    counts: ProlificCounts | None
    note: str | None
    ready: bool = True  # a token and a Prolific study id are set (the table is shown, filled in when Prolific answers)


def live_counts(session: Session, study: Study, settings: object, cache: SubmissionsCache) -> LiveCounts:
    """Prolific's statuses for the recruitment page; never raises for Prolific's failures (they become the note)."""
    from app.prolific_api import client_from_settings

    if getattr(settings, "prolific_api_token", None) is None:
        return LiveCounts(
            None, "Set LPSTUDY_PROLIFIC_API_TOKEN to see Prolific's statuses (returned, timed out, ...) here.", False
        )
    if not study.prolific_study_id:
        return LiveCounts(
            None, "Save the study's Prolific id on the Prolific set-up page to see Prolific's statuses here.", False
        )

    def fetch(prolific_id: str) -> list[Submission]:
        # the live poll must not wait long: one retry, a short timeout, no waiting out a 429
        with client_from_settings(settings, timeout_s=5.0, attempts=2, max_wait_s=0.0) as client:
            return client.submissions(prolific_id)

    try:
        submissions, at = cache.get(study.prolific_study_id, fetch)
    except DomainError as exc:
        return LiveCounts(None, f"Could not read Prolific's submissions: {exc.message}")
    return LiveCounts(prolific_counts(session, study, submissions, at), None)
