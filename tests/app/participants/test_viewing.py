"""Viewing conditions: checked strictly, stored per participant, exported; the minimum window width is checked
before assignment (app/participants/viewing.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.exports import export_results
from app.models import Participant, Study
from app.participants import viewing

from .test_flow import answer_form, enter

GOOD = {"dpr": "2", "vw": "1280", "vh": "720", "sw": "1920", "sh": "1080", "touch": "0"}
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def test_good_values_become_columns() -> None:
    assert viewing.screen_values(GOOD) == {
        "device_pixel_ratio": 2.0,
        "viewport_w": 1280,
        "viewport_h": 720,
        "screen_w": 1920,
        "screen_h": 1080,
        "touch": False,
    }
    assert viewing.screen_values({"dpr": "2.625", "touch": "1"}) == {"device_pixel_ratio": 2.625, "touch": True}


@pytest.mark.parametrize(
    "bad",
    ["", "-1", "0", "20001", "99999999999", "1e3", "1280.5", " 1280", "1280\n", "12\x0080", "１２８０", "nan", "0x500",
     "١٢٨٠", "inf", "None"],
)  # fmt: skip
def test_bad_sizes_are_left_out(bad: str) -> None:
    assert viewing.screen_values({"vw": bad, "vh": bad, "sw": bad, "sh": bad}) == {}


@pytest.mark.parametrize("bad", ["0.0", "0.1", "11", "nan", "inf", "-2", "2e0", "2.1234", "２", "1\x00"])
def test_bad_pixel_ratios_and_touch_are_left_out(bad: str) -> None:
    assert viewing.screen_values({"dpr": bad, "touch": bad}) == {}


def test_rendered_sizes_need_every_scale_once() -> None:
    scales = (1, 2, 4)
    assert viewing.rendered_sizes("1:28x28,2:56x56,4:112.5x112.5", scales) == {
        "1": [28.0, 28.0],
        "2": [56.0, 56.0],
        "4": [112.5, 112.5],
    }
    bad_values = (
        "1:28x28,2:56x56", "1:28x28,2:56x56,4:112x112,4:112x112", "1:28x28,2:56x56,3:84x84",
        "1:28x28,2:56x56,4:-1x5", "1:28x28,2:56x56,4:1e9x5", "1:28x28;2:56x56;4:112x112", "x" * 500,
        "1:28x28,2:56x56,4:112x112\x00", "1:28x28,2:56x56,4:99999999x1", "", "1:nanxnan,2:1x1,4:1x1",
    )  # fmt: skip
    for bad in bad_values:
        assert viewing.rendered_sizes(bad, scales) is None, bad


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (CHROME_WIN, ("chrome", "windows")),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", ("firefox", "linux")),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Mobile/15E148 Safari/604.1",
            ("safari", "ios"),
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            ("edge", "macos"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
            "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
            ("samsung", "android"),
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 "
            "Safari/537.36",
            ("chrome", "linux"),
        ),
        ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 Chrome/131.0.0.0", ("chrome", "chromeos")),
        ("python-httpx/0.28", ("other", "other")),
        ("", ("other", "other")),
        (None, ("other", "other")),
    ],
)
def test_user_agent_is_reduced_to_browser_family_and_os(ua: str | None, expected: tuple[str, str]) -> None:
    assert viewing.coarse_user_agent(ua) == expected


def _consented(client, slug: str, pid: str, form: dict[str, str], ua: str = CHROME_WIN) -> str:  # type: ignore[no-untyped-def]
    url = enter(client, slug, pid)
    r = client.post(f"{url}/consent", data={"consent": "yes", **form}, headers={"User-Agent": ua})
    assert r.status_code == 303 and r.headers["location"] == url
    return url


def test_consent_stores_the_screen_and_the_first_image_its_rendered_sizes(
    client, db, make_study, new_pid, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=3, pool=4, conditions=("CB",))
    pid = new_pid()
    url = _consented(client, slug, pid, GOOD)
    html = client.get(url).text  # the instructions
    client.post(f"{url}/instructions")
    r, action = answer_form(client, url)
    form = HTMLParser(r.text).css_first("form#trial-form")
    assert "data-viewing" in form.attributes and form.css_first('input[name="rendered"]') is not None
    assert html
    sizes = "1:28x28,2:56x56,4:112x112"
    assert (
        client.post(action, data={"label": "1", "confidence": "3", "rendered": sizes, "touch": "1"}).status_code == 303
    )
    r, action = answer_form(client, url)  # the second image: no measurement fields, and a forged one is ignored
    assert HTMLParser(r.text).css_first('input[name="rendered"]') is None
    client.post(action, data={"label": "2", "confidence": "3", "rendered": "1:1x1,2:2x2,4:4x4", "touch": "0"})
    with db.session() as s:
        p = s.scalar(select(Participant).where(Participant.prolific_pid == pid))
        assert (p.device_pixel_ratio, p.viewport_w, p.viewport_h, p.screen_w, p.screen_h) == (
            2.0,
            1280,
            720,
            1920,
            1080,
        )
        assert p.rendered_sizes == {"1": [28.0, 28.0], "2": [56.0, 56.0], "4": [112.0, 112.0]}
        assert p.touch is True  # the first image's page was touched
        assert (p.ua_browser, p.ua_os) == ("chrome", "windows")
        study = s.scalar(select(Study).where(Study.slug == slug))
        export_results(s, study, tmp_path)
    with (tmp_path / "participants.csv").open(encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    assert {k: row[k] for k in ("device_pixel_ratio", "viewport_w", "viewport_h", "screen_w", "screen_h", "touch",
                                "ua_browser", "ua_os")} == {
        "device_pixel_ratio": "2.0", "viewport_w": "1280", "viewport_h": "720", "screen_w": "1920",
        "screen_h": "1080", "touch": "1", "ua_browser": "chrome", "ua_os": "windows"}  # fmt: skip
    assert json.loads(row["rendered_sizes"]) == {"1": [28.0, 28.0], "2": [56.0, 56.0], "4": [112.0, 112.0]}


def test_bad_viewing_values_are_ignored_and_consent_still_counts(client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=3, conditions=("CB",))
    pid = new_pid()
    bad = {"dpr": "1e308", "vw": "-5", "vh": "0x1", "sw": "９９", "sh": "999999999999999999999", "touch": "yes"}
    _consented(client, slug, pid, bad, ua="\x01" * 5000)
    with db.session() as s:
        p = s.scalar(select(Participant).where(Participant.prolific_pid == pid))
        assert p.stage == "instructions"
        assert (p.device_pixel_ratio, p.viewport_w, p.viewport_h, p.screen_w, p.screen_h, p.touch) == (None,) * 6
        assert (p.ua_browser, p.ua_os) == ("other", "other")


MIN_WIDTH = "min_viewport_width = 800\n"
INCOMPATIBLE = 'incompatible_device = "CNODEVICE"\n'


def _narrow_study(db, make_study, code: bool = True) -> str:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=3, conditions=("CB",), extra=MIN_WIDTH)
    if code:  # the code goes into [completion_codes]: edit the stored study's config like the TOML would
        with db.session() as s:
            study = s.scalar(select(Study).where(Study.slug == slug))
            cfg = dict(study.config)
            cfg["completion_codes"] = {**cfg["completion_codes"], "incompatible_device": "CNODEVICE"}
            study.config = cfg
    return slug


def _participants(db) -> int:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Participant)) or 0)


def test_a_study_with_a_minimum_width_measures_before_assigning(client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = _narrow_study(db, make_study)
    pid = new_pid()
    query = {"PROLIFIC_PID": pid, "STUDY_ID": "a" * 24, "SESSION_ID": "b" * 24}
    r = client.get(f"/s/{slug}", params=query)
    assert r.status_code == 200
    doc = HTMLParser(r.text)
    assert doc.css_first("main#page").attributes["data-page"] == "screen-check"
    form = doc.css_first("form#screen-check")
    assert form.attributes["action"] == f"/s/{slug}" and form.attributes["method"] == "get"
    fields = {i.attributes["name"]: i.attributes["value"] for i in form.css("input")}
    assert fields == {**query, "lp_vw": "nojs"}  # the ids go along; without JavaScript: "nojs"
    assert doc.css_first('script[src="/static/js/screen_check.js"]') is not None
    assert _participants(db) == 0  # nothing stored before the check

    # too narrow: a polite refusal with the incompatible-device code, before any assignment
    r = client.get(f"/s/{slug}", params={**query, "lp_vw": "390"})
    assert r.status_code == 200
    doc = HTMLParser(r.text)
    assert doc.css_first("h1").text() == "This study needs a larger screen"
    assert "at least 800 pixels wide; yours is 390" in r.text
    link = doc.css_first("a#back-link").attributes["href"]
    assert link == "https://app.prolific.com/submissions/complete?cc=CNODEVICE"
    assert _participants(db) == 0

    # a garbled width is measured again; wide enough, or no JavaScript: in
    assert (
        HTMLParser(client.get(f"/s/{slug}", params={**query, "lp_vw": "９００"}).text).css_first("form#screen-check")
        is not None
    )
    r = client.get(f"/s/{slug}", params={**query, "lp_vw": "1024"})
    assert r.status_code == 303 and r.headers["location"].startswith("/p/")
    # back later (any width, no check): the same participant resumes
    assert client.get(f"/s/{slug}", params=query).headers["location"] == r.headers["location"]
    r2 = client.get(f"/s/{slug}", params={**query, "PROLIFIC_PID": new_pid(), "lp_vw": "nojs"})
    assert r2.status_code == 303
    assert _participants(db) == 2


def test_without_an_incompatible_device_code_the_refusal_asks_to_return(client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = _narrow_study(db, make_study, code=False)
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": new_pid(), "lp_vw": "500"})
    assert r.status_code == 200 and "return it on Prolific" in r.text
    assert HTMLParser(r.text).css_first("a#back-link") is None
    assert _participants(db) == 0
