"""The stimulus gallery, as in the paper's Fig. 2: one row per source image with its CB, CAI and CAP stimuli side
by side, the model's prediction and every metric; filters and sorting; excluding a stimulus from the pool; and the
source images the worker could not make a stimulus for, each with the attack's reason."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.auth import AdminSession
from app.design import CONDITIONS
from app.errors import BadRequest, Conflict, NotFound
from app.models import Condition, SourceFailure, SourceFailureStatus, Stimulus, Study
from app.models.base import utcnow

SUCCESS = ("any", "yes", "no")
MAX_REASON = 500


@dataclass
class Cell:
    stimulus_id: int
    condition: str
    metrics: dict[str, Any]
    attack: str | None
    model_ref: str | None
    source: str
    excluded: bool
    excluded_reason: str | None
    excluded_by: str | None
    replaces_id: int | None
    width: int
    height: int

    @property
    def model_pred(self) -> Any:
        return self.metrics.get("model_pred")


@dataclass
class Row:
    image_index: int
    label: int
    cells: dict[str, list[Cell]] = field(default_factory=dict)  # condition -> pool stimulus first, then excluded

    def current(self, code: str) -> Cell | None:
        cells = self.cells.get(code) or []
        return cells[0] if cells else None

    def success(self, code: str) -> bool | None:
        """CB: the model is right on the original; CAI/CAP: the model is fooled (the attack worked)."""
        cell = self.current(code)
        if cell is None or cell.model_pred is None:
            return None
        if "success" in cell.metrics and code != "CB":
            return bool(cell.metrics["success"])
        right = int(cell.model_pred) == self.label
        return right if code == "CB" else not right


@dataclass
class FailedAttempt:
    condition: str
    image_index: int
    reason: str
    kind: str  # "replaced: attempt did not succeed" or "surplus"


@dataclass
class Gallery:
    rows: list[Row]
    total_rows: int
    conditions: list[str]
    metric_keys: list[str]
    failed: list[FailedAttempt]
    scales: list[int]
    labels: list[str]


@dataclass(frozen=True)
class GalleryQuery:
    condition: str | None = None
    success: str = "any"
    metric: str | None = None
    lo: float | None = None
    hi: float | None = None
    sort: str | None = None  # "image" or "<metric>"
    sort_condition: str | None = None
    descending: bool = False
    show_excluded: bool = True


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def parse_query(study: Study, params: dict[str, str]) -> GalleryQuery:
    """The gallery's filters from a query string; a bad value is a 400 naming it."""
    codes = [c.code for c in study.conditions]

    def number(name: str) -> float | None:
        raw = (params.get(name) or "").strip()
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise BadRequest(f"'{raw}' is not a number ({name})") from None
        if not math.isfinite(value):
            raise BadRequest(f"'{raw}' is not a finite number ({name})")
        return value

    condition = params.get("condition") or None
    if condition and condition not in codes:
        raise BadRequest(f"study '{study.slug}' has no condition '{condition}'")
    success = params.get("success") or "any"
    if success not in SUCCESS:
        raise BadRequest(f"success must be one of {', '.join(SUCCESS)}")
    sort_condition = params.get("sort_condition") or None
    if sort_condition and sort_condition not in codes:
        raise BadRequest(f"study '{study.slug}' has no condition '{sort_condition}'")
    q = GalleryQuery(
        condition=condition,
        success=success,
        metric=(params.get("metric") or None),
        lo=number("min"),
        hi=number("max"),
        sort=(params.get("sort") or None),
        sort_condition=sort_condition,
        descending=params.get("order") == "desc",
        show_excluded=params.get("excluded", "show") != "hide",
    )
    if q.lo is not None and q.hi is not None and q.lo > q.hi:
        raise BadRequest(f"the metric range is empty: min {q.lo:g} is above max {q.hi:g}")
    return q


def _failed_attempts(session: Session, study: Study) -> list[FailedAttempt]:
    """Source images that did not enter the study, one entry per failed condition, with the reason."""
    out = []
    for f in session.scalars(select(SourceFailure).where(SourceFailure.study_id == study.id)):
        for cond, reason in (f.reasons or {}).items():
            kind = "surplus" if f.status == SourceFailureStatus.SURPLUS else "replaced: attempt did not succeed"
            out.append(FailedAttempt(cond if cond in CONDITIONS else "all", f.image_index, str(reason), kind))
    return sorted(out, key=lambda f: (f.condition, f.image_index))


def gallery(session: Session, study: Study, query: GalleryQuery | None = None) -> Gallery:
    query = query or GalleryQuery()
    codes = [c.code for c in study.conditions]
    rows: dict[int, Row] = {}
    keys: set[str] = set()
    for s, code in session.execute(
        select(Stimulus, Condition.code)
        .join(Condition, Condition.id == Stimulus.condition_id)
        .where(Stimulus.study_id == study.id)
        .order_by(Stimulus.image_index, Stimulus.excluded_at.is_not(None), Stimulus.id.desc())
    ):
        row = rows.setdefault(s.image_index, Row(s.image_index, s.label))
        row.cells.setdefault(code, []).append(
            Cell(
                s.id,
                code,
                dict(s.metrics or {}),
                s.attack,
                s.model_ref,
                s.source,
                s.excluded_at is not None,
                s.excluded_reason,
                s.excluded_by,
                s.replaces_id,
                s.width,
                s.height,
            )
        )
        keys.update(k for k, v in (s.metrics or {}).items() if _num(v) is not None)
    all_rows = sorted(rows.values(), key=lambda r: r.image_index)
    chosen = [r for r in all_rows if _matches(r, query, codes)]
    if query.sort and query.sort != "image":
        if query.sort not in keys:
            raise BadRequest(f"cannot sort by '{query.sort}': no stimulus has that metric")
        sort_codes = (
            [query.sort_condition or query.condition or ""] if (query.sort_condition or query.condition) else codes
        )
        metric = query.sort

        def key(r: Row) -> tuple[int, float]:
            cells = [c for cc in sort_codes if (c := r.current(cc)) is not None]
            values = [_num(c.metrics.get(metric)) for c in cells]
            nums = [v for v in values if v is not None]
            if not nums:
                return (1, 0.0)  # rows without the metric last, either way
            v = max(nums) if query.descending else min(nums)
            return (0, -v if query.descending else v)

        chosen.sort(key=key)
    elif query.descending:
        chosen.reverse()
    if query.metric and query.metric not in keys:
        raise BadRequest(f"no stimulus has a metric '{query.metric}'")
    if not query.show_excluded:
        for r in chosen:
            r.cells = {k: [c for c in v if not c.excluded] for k, v in r.cells.items()}
    return Gallery(
        chosen,
        len(all_rows),
        codes,
        sorted(keys),
        _failed_attempts(session, study),
        list(study.scales),
        list(study.labels),
    )


def _matches(row: Row, q: GalleryQuery, codes: list[str]) -> bool:
    wanted = [q.condition] if q.condition else codes
    cells = [c for code in wanted if (c := row.current(code)) is not None]
    if q.condition and not cells:
        return False
    if q.success != "any":
        verdicts = [row.success(code) for code in wanted if row.current(code) is not None]
        if not any(v is (q.success == "yes") for v in verdicts):
            return False
    if q.metric and (q.lo is not None or q.hi is not None):
        values = [_num(c.metrics.get(q.metric)) for c in cells]
        ok = [v for v in values if v is not None and (q.lo is None or v >= q.lo) and (q.hi is None or v <= q.hi)]
        if not ok:
            return False
    return True


# --- exclusion ----------------------------------------------------------------------------------------


def get_stimulus(session: Session, study: Study, stimulus_id: int) -> Stimulus:
    stim = session.get(Stimulus, stimulus_id)
    if stim is None or stim.study_id != study.id:
        raise NotFound(f"study '{study.slug}' has no stimulus {stimulus_id}")
    return stim


def exclude(
    session: Session, study: Study, stimulus_id: int, admin: AdminSession, reason: str, now: dt.datetime | None = None
) -> Stimulus:
    """Take a stimulus out of the pool: participants assigned from now on never get it. Participants already
    assigned it keep it (their trials and answers stay as they are; the analysis sees the exclusion)."""
    stim = get_stimulus(session, study, stimulus_id)
    reason = " ".join(reason.split())
    if not reason:
        raise BadRequest("give a reason for the exclusion (it is logged and exported)")
    if len(reason) > MAX_REASON:
        raise BadRequest(f"the reason is longer than {MAX_REASON} characters")
    if stim.excluded_at is not None:
        raise Conflict(f"stimulus {stim.id} is already excluded ({stim.excluded_reason})")
    stim.excluded_at = now or utcnow()
    stim.excluded_by = admin.email
    stim.excluded_reason = reason
    session.flush()
    return stim


def png_for_admin(session: Session, study: Study, stimulus_id: int) -> bytes:
    return get_stimulus(session, study, stimulus_id).png
