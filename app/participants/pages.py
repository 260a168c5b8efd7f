"""The server decides the page: what a participant sees on `GET /p/{token}`, and their completion code."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from app.errors import NotFound
from app.models import ParticipantStatus, Stage, Study
from app.models.base import utcnow
from app.participants import direct
from app.participants import statements as q
from app.participants.study_cache import StudyCache, StudyView
from app.participants.tables import NOT_FOUND, TOUCH_INTERVAL_S, TRIALS, autocommit, aware


@dataclass(frozen=True)
class TrialView:
    position: int
    kind: str
    expected_label: int | None


@dataclass
class PageState:
    stage: str
    status: str
    study: StudyView
    trial: TrialView | None = None
    stimulus_public_id: str | None = None
    stimulus_size: tuple[int, int] | None = None
    total_trials: int = 0
    test_kind: str | None = None  # "preview" or "bot" for a test participant
    # what the participant is told: "Image k of n", counting image trials only (attention checks are not images)
    image_number: int = 0
    image_total: int = 0


def image_progress(position: int, total_trials: int, attention: dict | None) -> tuple[int, int]:
    """(k, n) for "Image k of n" at a 0-based trial position: attention checks are counted in neither."""
    checks = [p for p in (attention or {}).get("positions", []) if 0 <= p < total_trials]
    return position + 1 - sum(1 for p in checks if p < position), total_trials - len(checks)


def current_page(engine: Engine, studies: StudyCache, token: str) -> PageState:
    """The participant's current page. Marks the trial shown (once) and refreshes last_seen_at (at most every
    TOUCH_INTERVAL_S), each with a single conditional UPDATE (on PostgreSQL all in the page's one statement)."""
    now = utcnow()
    if engine.dialect.name == "postgresql":
        params = {"b_token": token, "b_now": now, "b_touch_before": now - dt.timedelta(seconds=TOUCH_INTERVAL_S)}
        r = direct.for_engine(engine).first(q.PAGE_PG, params)  # one statement marks shown and touches too
        if r is None:
            raise NotFound(NOT_FOUND, title="Page not found")
        return _state(r, studies.get(engine, r.study_id))
    with autocommit(engine) as conn:
        r = conn.execute(q.PAGE, {"token": token}).first()
        if r is None:
            raise NotFound(NOT_FOUND, title="Page not found")
        state = _state(r, studies.get(conn, r.study_id))
        if r.stage == TRIALS and r.shown_at is None:
            conn.execute(q.SHOWN, {"b_id": r.trial_id, "b_now": now})
        if r.stage != Stage.DONE and (now - aware(r.last_seen_at)).total_seconds() > TOUCH_INTERVAL_S:
            conn.execute(q.TOUCH, {"b_id": r.id, "b_now": now})
    return state


def _state(r: Any, study: StudyView) -> PageState:
    """The page from the page statement's row."""
    state = PageState(stage=r.stage, status=r.status, study=study, test_kind=r.test_kind)
    if r.stage == TRIALS:
        if r.trial_id is None:
            raise NotFound("This trial does not exist.")
        state.total_trials = r.total or 0
        state.image_number, state.image_total = image_progress(r.position, state.total_trials, study.attention)
        state.trial = TrialView(r.position, r.kind, r.expected_label)
        if r.public_id is not None:
            state.stimulus_public_id = r.public_id
            state.stimulus_size = (r.width, r.height)
    return state


def completion_code(status: str, study: StudyView | Study) -> str:
    return {
        ParticipantStatus.COMPLETED: study.code_completed,
        ParticipantStatus.NO_CONSENT: study.code_no_consent,
        ParticipantStatus.FAILED_ATTENTION: study.code_failed_attention,
    }.get(ParticipantStatus(status), study.code_completed)
