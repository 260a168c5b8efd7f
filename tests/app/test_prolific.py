"""Prolific ids are matched whole: a table of near-miss ids, each refused with a reason and nothing stored."""

from __future__ import annotations

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.errors import BadRequest
from app.models import Participant
from app.prolific import is_prolific_id, parse_entry_params

REAL = "5f0c1a2b3c4d5e6f708192a3"  # the shape Prolific sends: 24 lowercase hex digits

NEAR_MISSES = [
    ("trailing newline", REAL + "\n", "invisible character"),
    ("trailing CRLF", REAL + "\r\n", "invisible character"),
    ("trailing space", REAL + " ", "invisible character"),
    ("leading space", " " + REAL, "invisible character"),
    ("tab inside", REAL[:12] + "\t" + REAL[13:], "invisible character"),
    ("NUL at the end", REAL + "\x00", "invisible character"),
    ("NUL inside", REAL[:23] + "\x00", "invisible character"),
    ("zero-width space", REAL + "\u200b", "invisible character"),
    ("non-breaking space", REAL + "\u00a0", "invisible character"),
    ("23 characters", REAL[:23], "23 characters instead of 24"),
    ("25 characters", REAL + "a", "25 characters instead of 24"),
    ("48 characters", REAL * 2, "48 characters instead of 24"),
    ("one character", "a", "1 character instead of 24"),
    ("letter beyond f", REAL[:23] + "g", "other than the digits 0-9"),
    ("Arabic-Indic digit", REAL[:23] + "\u0663", "other than the digits 0-9"),
    ("fullwidth digit", REAL[:23] + "\uff13", "other than the digits 0-9"),
    ("superscript two", REAL[:23] + "\u00b2", "other than the digits 0-9"),
    ("dash", REAL[:23] + "-", "other than the digits 0-9"),
    ("a UUID", "5f0c1a2b-3c4d-5e6f-7081-92a3", "other than the digits 0-9"),
    ("quote", REAL[:23] + '"', "other than the digits 0-9"),
    ("template placeholder", "{{%PROLIFIC_PID%}}", "other than the digits 0-9"),
    ("0x prefix", "0x" + REAL[:22], "other than the digits 0-9"),
]


def test_a_real_id_is_accepted_as_it_is() -> None:
    assert is_prolific_id(REAL)
    params = parse_entry_params(REAL, "60aa11bb22cc33dd44ee55ff", "70ff00ee11dd22cc33bb44aa")
    assert (params.pid, params.study_id, params.session_id) == (
        REAL,
        "60aa11bb22cc33dd44ee55ff",
        "70ff00ee11dd22cc33bb44aa",
    )


def test_upper_case_is_folded_so_it_is_the_same_participant() -> None:
    assert parse_entry_params(REAL.upper(), REAL.upper(), None).pid == REAL
    assert parse_entry_params(REAL.upper(), REAL.upper(), None).study_id == REAL


@pytest.mark.parametrize(("what", "value", "reason"), NEAR_MISSES, ids=[n[0] for n in NEAR_MISSES])
def test_near_miss_ids_are_refused_with_the_reason(what: str, value: str, reason: str) -> None:
    assert not is_prolific_id(value), what
    for args in ((value, None, None), (REAL, value, None), (REAL, None, value)):
        with pytest.raises(BadRequest) as exc:
            parse_entry_params(*args)
        assert reason in exc.value.message, (what, exc.value.message)
        assert "Nothing was saved" in exc.value.message
        if len(value) > 8:
            assert value not in exc.value.message  # the id is not echoed back


@pytest.mark.parametrize(
    ("what", "value"),
    [
        (n[0], n[1])
        for n in NEAR_MISSES
        if n[0] in ("trailing newline", "trailing space", "zero-width space", "fullwidth digit", "25 characters")
    ],
)
def test_over_http_a_near_miss_pid_gets_a_400_and_stores_nothing(client, db, make_study, what, value) -> None:
    slug = make_study(db, trials=2, pool=3, conditions=("CB",))
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": value, "STUDY_ID": "a" * 24, "SESSION_ID": "b" * 24})
    assert r.status_code == 400, what
    doc = HTMLParser(r.text)
    assert doc.css_first("h1").text() == "Your Prolific ID is not valid"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 0
    # the real id still gets in, once
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": REAL})
    assert r.status_code == 303
    again = client.get(f"/s/{slug}", params={"PROLIFIC_PID": REAL.upper()})
    assert again.status_code == 303 and again.headers["location"] == r.headers["location"]
    with db.session() as s:
        assert s.scalars(select(Participant.prolific_pid)).all() == [REAL]


def test_the_newline_pid_of_the_issue_gets_a_400(client, db, make_study) -> None:
    slug = make_study(db, trials=2, pool=3, conditions=("CB",))
    assert client.get(f"/s/{slug}?PROLIFIC_PID={REAL}").status_code == 303
    r = client.get(f"/s/{slug}?PROLIFIC_PID={REAL}%0A")
    assert r.status_code == 400
    assert "line break" in r.text
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 1


@pytest.mark.parametrize("name", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
def test_an_id_given_twice_is_refused(client, db, make_study, name) -> None:
    slug = make_study(db, trials=2, pool=3, conditions=("CB",))
    other = "0" * 24
    query = f"PROLIFIC_PID={REAL}&{name}={other}&{name}={'1' * 24}"
    r = client.get(f"/s/{slug}?{query}")
    assert r.status_code == 400 and "more than once" in r.text
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 0


def test_over_http_a_nul_in_the_pid_is_a_400_and_stores_nothing(client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=3, conditions=("CB",))
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": REAL + "\x00"})
    assert r.status_code == 400 and "NUL character" in r.text  # refused before any route (app/guard.py)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 0


def test_the_set_up_panel_lists_the_incompatible_device_code_from_the_config() -> None:
    from types import SimpleNamespace

    from app.prolific import completion_codes

    base = {"code_completed": "C1", "code_no_consent": "C2", "code_failed_attention": "C3"}
    with_code = SimpleNamespace(**base, config={"completion_codes": {"incompatible_device": "CSMALL"}})
    without = SimpleNamespace(**base, config={"completion_codes": {}})
    row = {r.code_type: r for r in completion_codes(with_code)}["INCOMPATIBLE_DEVICE"]
    assert row.code == "CSMALL" and "Request return" in row.action
    assert {r.code_type: r for r in completion_codes(without)}["INCOMPATIBLE_DEVICE"].code is None
