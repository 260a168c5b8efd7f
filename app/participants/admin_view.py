"""What the dashboard shows about participants: one row per participant (the table and its CSV), and the
recruitment summary (status per condition, exposures, completion time, dropout over time, viewing conditions).

Every number on those pages comes from here; templates only print. A participant's status as shown is derived:
``timed_out`` is an active participant not seen for the study's timeout."""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import BadRequest
from app.exports import iso_utc
from app.models import Condition, Participant, ParticipantStatus, Stimulus, Study, Trial
from app.models.base import utcnow

STATUSES = ("active", "completed", "timed_out", "no_consent", "failed_attention")
STATUS_LABELS = {
    "active": "active",
    "completed": "completed",
    "timed_out": "timed out",
    "no_consent": "no consent",
    "failed_attention": "failed attention",
}
KINDS = ("real", "test", "all")
CSV_COLUMNS = (
    "prolific_pid",
    "condition",
    "status",
    "started_at",
    "finished_at",
    "duration_s",
    "answered",
    "trials",
    "attention_failures",
    "test",
    "session_id",
)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=dt.UTC))


@dataclass(frozen=True)
class ParticipantRow:
    id: int
    pid: str
    session_id: str | None
    condition: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_s: int | None
    answered: int
    trials: int
    attention_failures: int
    is_test: bool
    test_kind: str | None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


def derived_status(status: str, last_seen: dt.datetime, cutoff: dt.datetime) -> str:
    if status == ParticipantStatus.ACTIVE and (_aware(last_seen) or cutoff) < cutoff:
        return "timed_out"
    return str(status)


def participant_rows(
    session: Session,
    study: Study,
    *,
    status: str | None = None,
    condition: str | None = None,
    kind: str = "all",
    now: dt.datetime | None = None,
) -> list[ParticipantRow]:
    """Every participant of the study, oldest first, filtered by shown status, condition and real/test."""
    if status and status not in STATUSES:
        raise BadRequest(f"unknown status '{status}' (one of {', '.join(STATUSES)})")
    if kind not in KINDS:
        raise BadRequest(f"unknown participant kind '{kind}' (real, test or all)")
    if condition and condition not in {c.code for c in study.conditions}:
        raise BadRequest(f"study '{study.slug}' has no condition '{condition}'")
    cutoff = (now or utcnow()) - dt.timedelta(minutes=study.timeout_minutes)
    answered = (
        select(Trial.participant_id, func.count(Trial.answered_at).label("answered"), func.count().label("trials"))
        .group_by(Trial.participant_id)
        .subquery()
    )
    q = (
        select(Participant, Condition.code, answered.c.answered, answered.c.trials)
        .join(Condition, Condition.id == Participant.condition_id)
        .join(answered, answered.c.participant_id == Participant.id, isouter=True)
        .where(Participant.study_id == study.id)
        .order_by(Participant.started_at, Participant.id)
    )
    if condition:
        q = q.where(Condition.code == condition)
    if kind != "all":
        q = q.where(Participant.is_test.is_(kind == "test"))
    rows = []
    for p, code, n_answered, n_trials in session.execute(q):
        shown = derived_status(p.status, p.last_seen_at, cutoff)
        if status and shown != status:
            continue
        started, finished = _aware(p.started_at), _aware(p.finished_at)
        duration = int((finished - started).total_seconds()) if finished and started else None
        rows.append(
            ParticipantRow(
                p.id,
                p.prolific_pid,
                p.prolific_session_id,
                code,
                shown,
                p.started_at,
                p.finished_at,
                duration,
                n_answered or 0,
                n_trials or 0,
                p.attention_failures,
                bool(p.is_test),
                p.test_kind,
            )
        )
    return rows


def rows_csv(rows: list[ParticipantRow]) -> str:
    """Exactly what the participants table shows, one row per participant."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(
            [
                r.pid,
                r.condition,
                r.status,
                iso_utc(r.started_at),
                iso_utc(r.finished_at),
                "" if r.duration_s is None else r.duration_s,
                r.answered,
                r.trials,
                r.attention_failures,
                (r.test_kind or "test") if r.is_test else "",
                r.session_id or "",
            ]
        )
    return buf.getvalue()


# --- recruitment --------------------------------------------------------------------------------------------


@dataclass
class ConditionRecruitment:
    code: str
    target: int
    by_status: dict[str, int]  # real participants only
    test: int

    @property
    def filled(self) -> int:
        """What counts against the target: completed plus active within the timeout (as assignment counts)."""
        return self.by_status["completed"] + self.by_status["active"]

    @property
    def percent(self) -> int:
        return round(100 * self.filled / self.target) if self.target else 0


@dataclass
class Exposure:
    condition: str
    image_index: int
    stimulus_id: int
    shown: int  # times shown to real participants
    excluded: bool


@dataclass
class DropoutBucket:
    start: dt.datetime
    started: int
    completed: int
    dropped: int  # timed out, no consent or failed attention

    @property
    def rate(self) -> float:
        done = self.completed + self.dropped
        return self.dropped / done if done else 0.0


@dataclass
class Viewing:
    reported: int
    dpr: list[tuple[str, int]] = field(default_factory=list)
    viewport_w: tuple[int, int, int] | None = None  # min, median, max (CSS px)
    viewport_h: tuple[int, int, int] | None = None
    touch: int = 0
    browsers: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Recruitment:
    conditions: list[ConditionRecruitment]
    median_completion_s: float | None
    completed: int
    exposures: list[Exposure]
    exposure_range: dict[str, tuple[int, int]]  # condition -> (min, max) times shown, pool only
    dropout: list[DropoutBucket]
    bucket: str
    viewing: Viewing
    as_of: dt.datetime


def _spread(values: list[int]) -> tuple[int, int, int] | None:
    return (min(values), int(statistics.median(values)), max(values)) if values else None


def recruitment(session: Session, study: Study, now: dt.datetime | None = None) -> Recruitment:
    now = now or utcnow()
    rows = participant_rows(session, study, now=now)
    real = [r for r in rows if not r.is_test]
    by_cond: dict[str, Counter[str]] = defaultdict(Counter)
    tests: Counter[str] = Counter()
    for r in rows:
        if r.is_test:
            tests[r.condition] += 1
        else:
            by_cond[r.condition][r.status] += 1
    conditions = [
        ConditionRecruitment(c.code, c.target, {s: by_cond[c.code][s] for s in STATUSES}, tests[c.code])
        for c in study.conditions
    ]
    durations = [r.duration_s for r in real if r.status == "completed" and r.duration_s is not None]

    shown = (
        select(Trial.stimulus_id, func.count().label("n"))
        .join(Participant, Participant.id == Trial.participant_id)
        .where(Participant.study_id == study.id, Participant.is_test.is_(False), Trial.shown_at.is_not(None))
        .group_by(Trial.stimulus_id)
        .subquery()
    )
    exposures = [
        Exposure(code, idx, sid, n or 0, excluded is not None)
        for code, idx, sid, n, excluded in session.execute(
            select(Condition.code, Stimulus.image_index, Stimulus.id, shown.c.n, Stimulus.excluded_at)
            .join(Condition, Condition.id == Stimulus.condition_id)
            .join(shown, shown.c.stimulus_id == Stimulus.id, isouter=True)
            .where(Stimulus.study_id == study.id)
            .order_by(Condition.id, Stimulus.image_index, Stimulus.id)
        )
    ]
    exposure_range = {}
    for c in study.conditions:
        counts = [e.shown for e in exposures if e.condition == c.code and not e.excluded]
        if counts:
            exposure_range[c.code] = (min(counts), max(counts))

    dropout, bucket = _dropout(real, now)
    return Recruitment(
        conditions=conditions,
        median_completion_s=statistics.median(durations) if durations else None,
        completed=len(durations),
        exposures=exposures,
        exposure_range=exposure_range,
        dropout=dropout,
        bucket=bucket,
        viewing=_viewing(session, study),
        as_of=now,
    )


def _dropout(real: list[ParticipantRow], now: dt.datetime) -> tuple[list[DropoutBucket], str]:
    """Participants by the hour (or day, for studies running longer than two days) they started in."""
    if not real:
        return [], "hour"
    first = min(_aware(r.started_at) or now for r in real)
    step, name = (
        (dt.timedelta(days=1), "day") if now - first > dt.timedelta(days=2) else (dt.timedelta(hours=1), "hour")
    )
    origin = first.replace(minute=0, second=0, microsecond=0)
    if name == "day":
        origin = origin.replace(hour=0)
    buckets: dict[int, DropoutBucket] = {}
    for r in real:
        k = int(((_aware(r.started_at) or now) - origin) / step)
        b = buckets.setdefault(k, DropoutBucket(origin + k * step, 0, 0, 0))
        b.started += 1
        if r.status == "completed":
            b.completed += 1
        elif r.status != "active":
            b.dropped += 1
    return [buckets[k] for k in sorted(buckets)], name


def _viewing(session: Session, study: Study) -> Viewing:
    P = Participant
    rows = session.execute(
        select(P.device_pixel_ratio, P.viewport_w, P.viewport_h, P.touch, P.ua_browser).where(
            P.study_id == study.id, P.is_test.is_(False), P.device_pixel_ratio.is_not(None)
        )
    ).all()
    dpr = Counter(f"{round(float(r[0] or 0), 2):g}" for r in rows)
    browsers = Counter(r[4] or "unknown" for r in rows)
    return Viewing(
        reported=len(rows),
        dpr=sorted(dpr.items(), key=lambda kv: float(kv[0])),
        viewport_w=_spread([r[1] for r in rows if r[1]]),
        viewport_h=_spread([r[2] for r in rows if r[2]]),
        touch=sum(1 for r in rows if r[3]),
        browsers=browsers.most_common(),
    )


# --- test participants ------------------------------------------------------------------------------------


def test_participants(session: Session, study: Study) -> list[ParticipantRow]:
    return participant_rows(session, study, kind="test")


def delete_test_participants(session: Session, study: Study, ids: list[int]) -> int:
    """Delete exactly the test participants listed (the confirmation page's list) with their trials.

    Refused, deleting nothing, if any listed id is not a test participant of this study or the test participants
    changed since the list was shown."""
    current = {r.id for r in test_participants(session, study)}
    wanted = set(ids)
    if not wanted:
        raise BadRequest("no test participants were listed; nothing was deleted")
    if wanted != current:
        raise BadRequest(
            "the test participants changed since the confirmation page was shown (or a listed one is real); "
            "nothing was deleted. Open the page again."
        )
    from app.participants.pilots import delete_test_participants as delete_all_tests

    return delete_all_tests(session, study, only=wanted).participants  # exactly the confirmed list
