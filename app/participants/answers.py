"""Answers: every POST of the participant's path moves them with a conditional UPDATE.

`UPDATE participants SET ... WHERE id = :p AND stage = :expected [AND position = :expected]`: if no row matched
(a double submit, the back button, two tabs) the function raises `WrongPage` and the route shows the current
page; nothing changes. A trial's answer is written with `WHERE answered_at IS NULL`, so it is stored exactly once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine, update

from app.errors import BadRequest, NotFound
from app.models import ParticipantStatus, Stage
from app.models.base import utcnow
from app.participants import direct, viewing
from app.participants import statements as q
from app.participants.study_cache import StudyCache, StudyView
from app.participants.tables import NOT_FOUND, TOUCH_INTERVAL_S, TRIALS, P, autocommit

GENDERS = ("female", "male", "non-binary", "other", "prefer-not-to-say")
STUDENT = ("yes", "no", "prefer-not-to-say")
EMPLOYMENT = (
    "full-time",
    "part-time",
    "unemployed",
    "not-in-paid-work",
    "student-only",
    "other",
    "prefer-not-to-say",
)
MAX_RT_MS = 6 * 3600 * 1000
MAX_POSITION = 100_000


class WrongPage(Exception):
    """The POST does not belong to the participant's current page: redirect to the current page."""


def _advance(conn: Connection, where: Any, **values: Any) -> None:
    """Conditional move: only applies if the participant is still where the form was shown."""
    result = conn.execute(update(P).where(*where).values(last_seen_at=utcnow(), **values))
    if result.rowcount != 1:
        raise WrongPage()


def _stage_of(conn: Connection, token: str) -> str:
    stage = conn.execute(q.STAGE_OF, {"token": token}).scalar()
    if stage is None:
        raise NotFound(NOT_FOUND, title="Page not found")
    return str(stage)


def submit_consent(engine: Engine, token: str, answer: str | None, viewing: dict[str, Any] | None = None) -> None:
    """Consent or decline; `viewing` (checked columns from viewing.screen_values) is stored with it."""
    with autocommit(engine) as conn:
        if answer not in ("yes", "no"):
            if _stage_of(conn, token) != Stage.CONSENT:
                raise WrongPage()
            raise BadRequest("Please choose whether you consent to take part.")
        now = utcnow()
        values: dict[str, Any] = dict(viewing or {})
        if answer == "yes":
            values |= {"stage": Stage.INSTRUCTIONS.value, "consented_at": now}
        else:
            values |= {"stage": Stage.DONE.value, "status": ParticipantStatus.NO_CONSENT.value, "finished_at": now}
        done = conn.execute(
            update(P).where(P.c.token == token, P.c.stage == Stage.CONSENT.value).values(last_seen_at=now, **values)
        ).rowcount
        if done != 1:
            _stage_of(conn, token)  # 404 for an unknown token
            raise WrongPage()


def submit_instructions(engine: Engine, token: str) -> None:
    with autocommit(engine) as conn:
        done = conn.execute(
            update(P)
            .where(P.c.token == token, P.c.stage == Stage.INSTRUCTIONS.value)
            .values(stage=TRIALS, position=0, last_seen_at=utcnow())
        ).rowcount
        if done != 1:
            _stage_of(conn, token)
            raise WrongPage()


def _int_in(value: str | None, lo: int, hi: int, missing: str, wrong: str) -> int:
    """An integer lo..hi written in ASCII digits; `missing` / `wrong` are the messages when it is absent or not."""
    if value is None or value.strip() == "":
        raise BadRequest(f"{missing} Nothing was saved.")
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not lo <= int(text) <= hi:
        raise BadRequest(f"{wrong} Nothing was saved.")
    return int(text)


def submit_trial(
    engine: Engine,
    studies: StudyCache,
    token: str,
    position: int,
    label: str | None,
    confidence: str | None,
    rt_ms: str | None,
    rendered: str | None = None,
    touch: str | None = None,
) -> None:
    """Store one answer. On an image trial, `rendered` (the sizes the browser drew the image at) is stored for
    the participant's first image only (`rendered_sizes IS NULL`), with `touch` if the page was touched."""
    if not 0 <= position <= MAX_POSITION:  # also keeps the value inside the database's 32-bit integers
        raise BadRequest("This answer is not for a trial of this study. Nothing was saved.")
    where = {"token": token, "position": position}
    if engine.dialect.name == "postgresql":
        lab, conf = _digits(label), _digits(confidence)
        if lab is not None and conf is not None and 1 <= conf <= 5:
            _answer_in_one(engine, studies, token, position, lab, conf, _rt(rt_ms), rendered, touch)
            return
        # A missing or malformed label or confidence: nothing is stored; the SELECT says why (or, on a page the
        # participant has left, redirects), in the same order as on SQLite.
        r: Any = direct.for_engine(engine).first(q.ANSWER, where)
        _answer_params(r, position, _answerable(r, position, studies, engine), label, confidence, rt_ms)
        raise BadRequest("This answer is not valid. Nothing was saved.")  # not reached: _answer_params refuses it
    with engine.begin() as conn:  # SQLite: one transaction
        r = conn.execute(q.ANSWER, where).first()
        study = _answerable(r, position, studies, conn)
        params, answer = _answer_params(r, position, study, label, confidence, rt_ms)
        if conn.execute(q.ADVANCE_TRIAL, params).rowcount != 1:
            raise WrongPage()
        conn.execute(q.STORE_ANSWER, {**answer, "b_id": r.trial_id, "b_now": params["b_now"]})
        sizes = _sizes(r, study, rendered)
        if sizes is not None:
            _store_sizes(conn, r.id, sizes, touch)


def _answerable(r: Any, position: int, studies: StudyCache, db: Connection | Engine) -> StudyView:
    """The study, if the answer row `r` says the participant is at `position` in their trials; else the error."""
    if r is None:
        raise NotFound(NOT_FOUND, title="Page not found")
    if r.stage != TRIALS or position < r.position:
        raise WrongPage()  # an earlier page (back button, double submit): nothing changes
    if position > r.position:
        raise BadRequest("This answer is not for the image you are being shown. Nothing was saved.")
    return studies.get(db, r.study_id)


def _times() -> dict[str, dt.datetime]:
    """An answer's time, and the last_seen_at below which it refreshes last_seen_at (TOUCH_INTERVAL_S)."""
    now = utcnow()
    return {"b_now": now, "b_touch_before": now - dt.timedelta(seconds=TOUCH_INTERVAL_S)}


def _answer_params(
    r: Any, position: int, study: StudyView, label: str | None, confidence: str | None, rt_ms: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checked answer: (the participant's move, the trial's answer) as the statements' parameters."""
    lab = _int_in(
        label, 0, len(study.labels) - 1, "Please choose a label.", "The label you sent is not one of the options."
    )
    conf = _int_in(
        confidence, 1, 5, "Please choose how confident you are.", "The confidence you sent is not one of 1 to 5."
    )
    rt = _rt(rt_ms)
    if r.trial_id is None:
        raise BadRequest("This trial does not exist.")
    last = position + 1 >= (r.total or 0)
    failed = r.kind == "attention" and lab != r.expected_label
    params = {
        "b_id": r.id,
        "b_pos": position,
        "b_next": position + 1,
        "b_stage": Stage.DEMOGRAPHICS.value if last else TRIALS,
        "b_fail": 1 if failed else 0,
        **_times(),
    }
    return params, {"b_label": lab, "b_conf": conf, "b_rt": rt}


def _digits(value: str | None) -> int | None:
    """An integer written as _int_in accepts it (ASCII digits, at most 6, surrounding spaces allowed), or None."""
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None


def _rt(rt_ms: str | None) -> int | None:
    """The response time the page measured, in ms; None when absent, malformed or out of range."""
    try:
        rt = int(float(rt_ms)) if rt_ms not in (None, "") else None  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        return None
    return rt if rt is not None and 0 <= rt <= MAX_RT_MS else None


def _answer_in_one(
    engine: Engine,
    studies: StudyCache,
    token: str,
    position: int,
    lab: int,
    conf: int,
    rt: int | None,
    rendered: str | None,
    touch: str | None,
) -> None:
    """PostgreSQL, a well-formed label and confidence: check, move and store in one statement
    (statements.ANSWER_ONE_PG); when nothing moved, its row says why, checked in the two-statement path's order."""
    params = {"b_token": token, "b_pos": position, "b_label": lab, "b_conf": conf, "b_rt": rt, **_times()}
    r = direct.for_engine(engine).first(q.ANSWER_ONE_PG, params)
    if r is None:
        raise NotFound(NOT_FOUND, title="Page not found")
    if not r.advanced:
        if r.stage != TRIALS or position < r.position:
            raise WrongPage()  # an earlier page (back button, double submit): nothing changes
        if position > r.position:
            raise BadRequest("This answer is not for the image you are being shown. Nothing was saved.")
        if r.n_labels is None or lab >= r.n_labels:
            raise BadRequest("The label you sent is not one of the options. Nothing was saved.")
        if r.trial_id is None:
            raise BadRequest("This trial does not exist.")
        raise WrongPage()  # a simultaneous submit of the same page moved the participant first
    if r.kind == "stimulus" and rendered:
        sizes = viewing.rendered_sizes(rendered, studies.get(engine, r.study_id).scales)
        if sizes is not None:
            with autocommit(engine) as conn:
                _store_sizes(conn, r.id, sizes, touch)


def _sizes(r: Any, study: StudyView, rendered: str | None) -> dict[str, list[float]] | None:
    return viewing.rendered_sizes(rendered, study.scales) if r.kind == "stimulus" and rendered else None


def _store_sizes(conn: Connection, participant_id: int, sizes: dict[str, list[float]], touch: str | None) -> None:
    values: dict[str, Any] = {"rendered_sizes": sizes}
    if touch == "1":
        values["touch"] = True
    conn.execute(update(P).where(P.c.id == participant_id, P.c.rendered_sizes.is_(None)).values(**values))


def submit_demographics(
    engine: Engine,
    studies: StudyCache,
    token: str,
    age: str | None,
    gender: str | None,
    student: str | None,
    employment: str | None,
) -> None:
    with autocommit(engine) as conn:
        r = conn.execute(q.DEMOGRAPHICS, {"token": token}).first()
        if r is None:
            raise NotFound(NOT_FOUND, title="Page not found")
        if r.stage != Stage.DEMOGRAPHICS:
            raise WrongPage()
        age_n = _int_in(
            age, 18, 120, "Please enter your age.", "Please enter your age as a whole number from 18 to 120."
        )
        for value, allowed, what in (
            (gender, GENDERS, "a gender option"),
            (student, STUDENT, "whether you are a student"),
            (employment, EMPLOYMENT, "an employment option"),
        ):
            if value not in allowed:
                raise BadRequest(f"Please choose {what}.")
        study = studies.get(conn, r.study_id)
        threshold = (study.attention or {}).get("fail_threshold", 2)
        status = (
            ParticipantStatus.FAILED_ATTENTION
            if study.attention and r.attention_failures >= threshold
            else ParticipantStatus.COMPLETED
        )
        _advance(
            conn,
            (P.c.id == r.id, P.c.stage == Stage.DEMOGRAPHICS.value),
            stage=Stage.DONE.value,
            status=status.value,
            finished_at=utcnow(),
            age=age_n,
            gender=gender,
            student=student,
            employment=employment,
        )
