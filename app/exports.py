"""Tidy CSV exports of a study's results: one row per answered trial, one row per participant.

Real participants only by default; `include_test` adds the test participants (previews, bots) and an `is_test`
and a `test_kind` column to both files.

Both files say whether the participant counts in the analysis and why not (``included``/``exclusion`` in
participants.csv, ``participant_included``/``participant_exclusion`` in trials.csv), from the analysis's own rule
(app.analysis.sample.select_sample, with the same include_test), and trials.csv says whether an admin excluded the
trial's stimulus (``stimulus_excluded``): a researcher can reproduce the analysis's sample from the files alone."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.analysis.load import load_study
from app.analysis.sample import select_sample
from app.analysis.scoring import is_correct, truth_of
from app.models import Condition, Participant, Stimulus, Study, Trial
from app.participants.repository import is_real, study_participants

TRIAL_COLUMNS = (
    "prolific_pid",
    "session_id",
    "condition",
    "position",
    "stimulus_id",
    "image_index",
    "true_label",
    "response_label",
    "confidence",
    "rt_ms",
    "shown_at",
    "answered_at",
    "kind",
    "correct",
    "participant_included",
    "participant_exclusion",
    "stimulus_excluded",
)
VIEWING_COLUMNS = (
    "device_pixel_ratio",
    "viewport_w",
    "viewport_h",
    "screen_w",
    "screen_h",
    "rendered_sizes",
    "touch",
    "ua_browser",
    "ua_os",
)
PARTICIPANT_COLUMNS = (
    "prolific_pid",
    "study_id",
    "session_id",
    "condition",
    "status",
    "started_at",
    "finished_at",
    "age",
    "gender",
    "student",
    "employment",
    "attention_failures",
    "included",
    "exclusion",
    # viewing conditions, as the participant's browser reported them (app/participants/viewing.py)
    *VIEWING_COLUMNS,
)


def viewing_cells(p: Participant) -> list[str]:
    """The viewing columns of one participant; rendered_sizes as compact JSON, touch as 0/1, missing empty."""
    sizes = json.dumps(p.rendered_sizes, separators=(",", ":"), sort_keys=True) if p.rendered_sizes else ""
    touch = "" if p.touch is None else str(int(p.touch))
    return [
        _c(p.device_pixel_ratio),
        _c(p.viewport_w),
        _c(p.viewport_h),
        _c(p.screen_w),
        _c(p.screen_h),
        sizes,
        touch,
        _c(p.ua_browser),
        _c(p.ua_os),
    ]


def iso_utc(value: dt.datetime | None, timespec: str = "milliseconds") -> str:
    """ISO 8601 in UTC with a Z ('' for None); a naive time is taken as UTC (how the database stores them)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _c(v: object) -> str:
    return "" if v is None else str(v)


TEST_COLUMNS = ("is_test", "test_kind")


def export_results(session: Session, study: Study, out: Path, *, include_test: bool = False) -> tuple[int, int]:
    """Write trials.csv and participants.csv (UTF-8, comma, ISO-8601 UTC times, empty = missing)."""
    out.mkdir(parents=True, exist_ok=True)
    reason_of = select_sample(load_study(session, study), include_test=include_test).reason_of
    n_trials = 0
    extra = TEST_COLUMNS if include_test else ()
    with (out / "trials.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(TRIAL_COLUMNS + extra)
        query = (
            select(
                Participant.prolific_pid,
                Participant.prolific_session_id,
                Condition.code,
                Trial.position,
                Trial.stimulus_id,
                Stimulus.image_index,
                Stimulus.label,
                Trial.response_label,
                Trial.confidence,
                Trial.rt_ms,
                Trial.shown_at,
                Trial.answered_at,
                Trial.kind,
                Trial.expected_label,
                Stimulus.excluded_at,
                Participant.is_test,
                Participant.test_kind,
            )
            .join(Participant, Participant.id == Trial.participant_id)
            .join(Condition, Condition.id == Participant.condition_id)
            .join(Stimulus, Stimulus.id == Trial.stimulus_id, isouter=True)
            .where(Participant.study_id == study.id, Trial.answered_at.is_not(None))
            .order_by(Participant.id, Trial.position)
        )
        rows = session.execute(query if include_test else query.where(is_real()))
        for row in rows:
            pid, sess, code, pos, sid, idx, true_label, resp, conf, rt, shown, answered, kind, expected, gone, *_ = row
            truth = truth_of(kind, true_label, expected)
            ok = is_correct(resp, truth)
            correct = "" if ok is None else int(ok)
            w.writerow(
                [
                    pid,
                    _c(sess),
                    code,
                    pos + 1,
                    _c(sid),
                    _c(idx),
                    _c(truth),
                    _c(resp),
                    _c(conf),
                    _c(rt),
                    iso_utc(shown),
                    iso_utc(answered),
                    kind,
                    correct,
                    int(not reason_of[pid]),
                    reason_of[pid],
                    "" if sid is None else int(gone is not None),
                    *([int(row.is_test), _c(row.test_kind)] if include_test else []),
                ]
            )
            n_trials += 1
    n_participants = 0
    with (out / "participants.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(PARTICIPANT_COLUMNS + extra)
        participants = study_participants(study.id, include_test=include_test)
        for p, code in session.execute(
            participants.add_columns(Condition.code).join(Condition, Condition.id == Participant.condition_id)
        ):
            w.writerow(
                [
                    p.prolific_pid,
                    _c(p.prolific_study_id),
                    _c(p.prolific_session_id),
                    code,
                    p.status,
                    iso_utc(p.started_at),
                    iso_utc(p.finished_at),
                    _c(p.age),
                    _c(p.gender),
                    _c(p.student),
                    _c(p.employment),
                    p.attention_failures,
                    int(not reason_of[p.prolific_pid]),
                    reason_of[p.prolific_pid],
                    *viewing_cells(p),
                    *([int(p.is_test), _c(p.test_kind)] if include_test else []),
                ]
            )
            n_participants += 1
    return n_trials, n_participants
