"""The study as participant pages see it, from a small per-process cache.

Study rows change rarely (texts, labels); page views read them from this cache, at most STUDY_CACHE_TTL_S old.
Entry and assignment always read the study from the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, select

from app.participants import keys
from app.participants.tables import ST

STUDY_CACHE_TTL_S = 10.0


@dataclass(frozen=True)
class StudyView:
    """What participant pages need from a study (immutable, safe to cache and share between threads)."""

    id: int
    slug: str
    title: str
    labels: tuple[str, ...]
    scales: tuple[int, ...]
    consent_text: str
    instructions_text: str
    attention: dict | None
    code_completed: str
    code_no_consent: str
    code_failed_attention: str
    # the trial page's keyboard shortcuts (app/participants/keys.py): one per label, one per confidence level
    label_keys: tuple[str, ...] = ()
    confidence_keys: tuple[str, ...] = ()
    label_hints: tuple[str, ...] = ()
    key_help: str = ""


STUDY_VIEW = select(
    ST.c.id,
    ST.c.slug,
    ST.c.title,
    ST.c.labels,
    ST.c.scales,
    ST.c.consent_text,
    ST.c.instructions_text,
    ST.c.attention,
    ST.c.code_completed,
    ST.c.code_no_consent,
    ST.c.code_failed_attention,
).where(ST.c.id == bindparam("study_id"))


class StudyCache:
    """study id -> StudyView, refreshed after STUDY_CACHE_TTL_S. One per app (ids are per database)."""

    def __init__(self, ttl_s: float = STUDY_CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._views: dict[int, tuple[float, StudyView]] = {}

    def get(self, db: Connection | Engine, study_id: int) -> StudyView:
        """The study's view; on a miss read with `db` (a connection, or an engine to take one from)."""
        now = time.monotonic()
        hit = self._views.get(study_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        if isinstance(db, Engine):
            with db.connect() as conn:
                r = conn.execute(STUDY_VIEW, {"study_id": study_id}).one()
        else:
            r = db.execute(STUDY_VIEW, {"study_id": study_id}).one()
        lkeys = keys.label_keys(r.labels)
        ckeys = keys.confidence_keys(lkeys)
        view = StudyView(
            id=r.id,
            slug=r.slug,
            title=r.title,
            labels=tuple(r.labels),
            scales=tuple(r.scales),
            consent_text=r.consent_text,
            instructions_text=r.instructions_text,
            attention=r.attention,
            code_completed=r.code_completed,
            code_no_consent=r.code_no_consent,
            code_failed_attention=r.code_failed_attention,
            label_keys=lkeys,
            confidence_keys=ckeys,
            label_hints=keys.hints(r.labels, lkeys),
            key_help=keys.help_text(r.labels, lkeys, ckeys),
        )
        self._views[study_id] = (now + self.ttl_s, view)
        return view


