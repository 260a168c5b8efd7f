"""app.participants.answers.submit_trial on both backends, called as the routes call it, from many threads at once.

On PostgreSQL a well-formed answer is checked, moved and stored in one statement (statements.ANSWER_ONE_PG); a
malformed one goes through the SELECT first. Either way the answer is stored exactly once and the refusals are
the same as on SQLite.
"""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from app.errors import BadRequest, NotFound
from app.models import Participant, Trial
from app.models.base import utcnow
from app.participants import answers
from app.participants.study_cache import StudyCache
from app.participants.tables import TOUCH_INTERVAL_S
from tests.app.participants.test_flow import walk_to_trials


def _token(client, db, make_study, new_pid, **kw) -> str:  # type: ignore[no-untyped-def]
    slug = make_study(db, **kw)
    return str(walk_to_trials(client, slug, new_pid()).rsplit("/", 1)[1])


def _submit(db, token: str, position: int, label: str = "3", confidence: str = "4") -> str:  # type: ignore[no-untyped-def]
    try:
        answers.submit_trial(db.engine, StudyCache(), token, position, label, confidence, "1200")
    except answers.WrongPage:
        return "wrong page"
    return "stored"


def test_the_same_answer_from_many_threads_at_once_is_stored_once(client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    token = _token(client, db, make_study, new_pid, trials=3, pool=5)
    start = threading.Barrier(8)

    def one(i: int) -> str:
        start.wait()
        return _submit(db, token, 0, label=str(i % 10))

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(8)))
    assert outcomes.count("stored") == 1 and outcomes.count("wrong page") == 7
    winner = outcomes.index("stored")
    with db.session() as s:
        p = s.scalars(select(Participant).where(Participant.token == token)).one()
        assert (p.stage, p.position, p.attention_failures) == ("trials", 1, 0)
        rows = s.execute(
            select(Trial.position, Trial.response_label, Trial.confidence, Trial.rt_ms)
            .where(Trial.participant_id == p.id, Trial.answered_at.is_not(None))
        ).all()
    assert [tuple(r) for r in rows] == [(0, winner % 10, 4, 1200)]


def test_refusals_store_nothing_and_say_why(client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    token = _token(client, db, make_study, new_pid, trials=2, pool=5)
    assert _submit(db, token, 0) == "stored"
    assert _submit(db, token, 0) == "wrong page"  # the back button: already answered
    with pytest.raises(BadRequest, match="not for the image"):
        _submit(db, token, 1 + 1)
    with pytest.raises(BadRequest, match="not one of the options"):
        _submit(db, token, 1, label="10")  # well-formed, but the study has 10 labels (0-9)
    with pytest.raises(BadRequest, match="not one of the options"):
        _submit(db, token, 1, label=" 12 ")
    with pytest.raises(BadRequest, match="choose how confident"):
        _submit(db, token, 1, confidence="")
    with pytest.raises(NotFound):
        _submit(db, "no-such-token", 0)
    with db.session() as s:
        p = s.scalars(select(Participant).where(Participant.token == token)).one()
        assert (p.stage, p.position) == ("trials", 1)
        answered = s.scalars(select(Trial.position).where(Trial.participant_id == p.id, Trial.answered_at.is_not(None)))
        assert list(answered) == [0]
    # the last answer moves the participant on to the demographics; a padded label is read as the number
    assert _submit(db, token, 1, label=" 9 ", confidence="05") == "stored"
    with db.session() as s:
        p = s.scalars(select(Participant).where(Participant.token == token)).one()
        assert (p.stage, p.position) == ("demographics", 2)
        last = s.execute(select(Trial.response_label, Trial.confidence).where(Trial.position == 1)).one()
    assert tuple(last) == (9, 5)


def test_an_answer_refreshes_last_seen_at_only_when_it_is_stale(client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    """As a page view does (tables.TOUCH_INTERVAL_S): on PostgreSQL the answer's UPDATE of the participant then
    changes no indexed column, so it can be a HOT update."""
    token = _token(client, db, make_study, new_pid, trials=3, pool=5)

    def seen_at(value: dt.datetime | None = None) -> dt.datetime:
        with db.session() as s:
            p = s.scalars(select(Participant).where(Participant.token == token)).one()
            if value is not None:
                p.last_seen_at = value
                s.commit()
            return p.last_seen_at.replace(tzinfo=p.last_seen_at.tzinfo or dt.UTC)

    fresh = seen_at(utcnow() - dt.timedelta(seconds=TOUCH_INTERVAL_S - 10))
    assert _submit(db, token, 0) == "stored"
    assert seen_at() == fresh  # seen within the interval: left as it was
    stale = seen_at(utcnow() - dt.timedelta(seconds=TOUCH_INTERVAL_S + 10))
    before = utcnow()
    assert _submit(db, token, 1) == "stored"
    assert seen_at() >= before > stale  # older than the interval: refreshed
    with db.session() as s:
        p = s.scalars(select(Participant).where(Participant.token == token)).one()
        assert (p.stage, p.position) == ("trials", 2)
