"""The participant's path over HTTP, on SQLite and PostgreSQL: the server decides the page."""

from __future__ import annotations

import re

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.models import Participant, Trial


def page_of(resp) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    main = HTMLParser(resp.text).css_first("main#page")
    assert main is not None, resp.text[:500]
    return main.attributes["data-page"] or "", int(main.attributes["data-round"] or 0)


def enter(client, slug, pid, study_id="a" * 24, session_id="b" * 24):  # type: ignore[no-untyped-def]
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": pid, "STUDY_ID": study_id, "SESSION_ID": session_id})
    assert r.status_code == 303, r.text
    return r.headers["location"]


def answer_form(client, url):  # type: ignore[no-untyped-def]
    r = client.get(url)
    assert r.status_code == 200
    form = HTMLParser(r.text).css_first("form#trial-form")
    return r, form.attributes["action"]


def walk_to_trials(client, slug, pid):  # type: ignore[no-untyped-def]
    url = enter(client, slug, pid)
    assert client.post(f"{url}/consent", data={"consent": "yes"}).status_code == 303
    assert client.post(f"{url}/instructions").status_code == 303
    return url


def test_full_walk_stores_every_answer_once(client, db, make_study, new_pid):
    slug = make_study(db, trials=5, pool=8)
    pid = new_pid()
    url = enter(client, slug, pid)
    assert page_of(client.get(url)) == ("consent", 0)
    client.post(f"{url}/consent", data={"consent": "yes"})
    assert page_of(client.get(url)) == ("instructions", 0)
    client.post(f"{url}/instructions")
    for i in range(5):
        r, action = answer_form(client, url)
        assert page_of(r) == ("trial", i + 1)
        doc = HTMLParser(r.text)
        imgs = doc.css("div.stimulus img")
        assert [int(im.attributes["width"]) for im in imgs] == [28, 56, 112]
        assert len({im.attributes["src"] for im in imgs}) == 1
        assert len(doc.css('input[name="label"]')) == 10
        assert [i.attributes["value"] for i in doc.css('input[name="confidence"]')] == ["1", "2", "3", "4", "5"]
        resp = client.post(action, data={"label": str(i), "confidence": "4", "rt_ms": "1234"})
        assert resp.status_code == 303
    r = client.get(url)
    assert page_of(r) == ("demographics", 0)
    resp = client.post(
        f"{url}/demographics", data={"age": "33", "gender": "female", "student": "no", "employment": "full-time"}
    )
    assert resp.status_code == 303
    r = client.get(url)
    assert page_of(r) == ("finish", 0)
    link = HTMLParser(r.text).css_first("a#complete-link").attributes["href"]
    assert link == "https://app.prolific.com/submissions/complete?cc=CDONE1"
    refresh = HTMLParser(r.text).css_first('meta[http-equiv="refresh"]').attributes["content"]
    assert refresh.endswith("url=https://app.prolific.com/submissions/complete?cc=CDONE1")
    with db.session() as s:
        p = s.scalar(select(Participant).where(Participant.prolific_pid == pid))
        assert p.status == "completed" and p.age == 33 and p.employment == "full-time"
        assert p.prolific_study_id == "a" * 24 and p.prolific_session_id == "b" * 24
        trials = s.scalars(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)).all()
        assert [t.response_label for t in trials] == [0, 1, 2, 3, 4]
        assert all(t.confidence == 4 and t.rt_ms == 1234 and t.shown_at and t.answered_at for t in trials)
        assert len({t.stimulus_id for t in trials}) == 5


def test_refresh_back_and_double_submit_are_harmless(client, db, make_study, new_pid):
    slug = make_study(db, trials=3, pool=5)
    url = walk_to_trials(client, slug, new_pid())
    _, action0 = answer_form(client, url)
    assert page_of(client.get(url)) == ("trial", 1)  # refresh shows the same trial
    assert client.post(action0, data={"label": "7", "confidence": "2"}).status_code == 303
    # double submit of the same form, and a changed answer sent from the back button
    assert client.post(action0, data={"label": "7", "confidence": "2"}).headers["location"] == url
    assert client.post(action0, data={"label": "1", "confidence": "5"}).headers["location"] == url
    # back to consent/instructions changes nothing either
    assert client.post(f"{url}/consent", data={"consent": "no"}).headers["location"] == url
    assert client.post(f"{url}/instructions").headers["location"] == url
    assert page_of(client.get(url)) == ("trial", 2)
    with db.session() as s:
        p = s.scalar(select(Participant))
        assert p.status == "active" and p.position == 1
        t0 = s.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == 0))
        assert (t0.response_label, t0.confidence) == (7, 2)
        assert s.scalar(select(func.count()).select_from(Trial).where(Trial.answered_at.is_not(None))) == 1


@pytest.mark.parametrize(
    "data",
    [
        {"label": "10", "confidence": "3"},
        {"label": "-1", "confidence": "3"},
        {"label": "x", "confidence": "3"},
        {"label": "3", "confidence": "0"},
        {"label": "3", "confidence": "6"},
        {"label": "3"},
        {"confidence": "3"},
        {},
    ],
)
def test_forged_answers_are_rejected_and_nothing_is_stored(client, db, make_study, new_pid, data):
    slug = make_study(db, trials=3, pool=5)
    url = walk_to_trials(client, slug, new_pid())
    _, action = answer_form(client, url)
    r = client.post(action, data=data)
    assert r.status_code == 400
    assert HTMLParser(r.text).css_first("h1").text() == "Invalid request"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Trial).where(Trial.answered_at.is_not(None))) == 0
        assert s.scalar(select(Participant.position)) == 0


def test_answer_for_a_future_trial_is_refused(client, db, make_study, new_pid):
    slug = make_study(db, trials=3, pool=5)
    url = walk_to_trials(client, slug, new_pid())
    r = client.post(f"{url}/trial/2", data={"label": "1", "confidence": "1"})
    assert r.status_code == 400 and "not for the image" in r.text
    r = client.post(f"{url}/trial/abc", data={"label": "1", "confidence": "1"})
    assert r.status_code == 400
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Trial).where(Trial.answered_at.is_not(None))) == 0


def test_demographics_validation(client, db, make_study, new_pid):
    slug = make_study(db, trials=1, pool=3)
    url = walk_to_trials(client, slug, new_pid())
    _, action = answer_form(client, url)
    client.post(action, data={"label": "1", "confidence": "1"})
    good = {"age": "40", "gender": "male", "student": "yes", "employment": "part-time"}
    for bad in ({"age": "17"}, {"age": "abc"}, {"gender": "robot"}, {"student": ""}, {"employment": "x"}):
        r = client.post(f"{url}/demographics", data={**good, **bad})
        assert r.status_code == 400, bad
    assert page_of(client.get(url)) == ("demographics", 0)
    assert client.post(f"{url}/demographics", data=good).status_code == 303
    assert page_of(client.get(url)) == ("finish", 0)


def test_same_pid_resumes_and_finished_sees_completion_again(client, db, make_study, new_pid):
    slug = make_study(db, trials=2, pool=4)
    pid = new_pid()
    url = walk_to_trials(client, slug, pid)
    _, action = answer_form(client, url)
    client.post(action, data={"label": "1", "confidence": "1"})
    assert enter(client, slug, pid) == url  # same participant, same place
    assert page_of(client.get(url)) == ("trial", 2)
    _, action = answer_form(client, url)
    client.post(action, data={"label": "2", "confidence": "2"})
    client.post(
        f"{url}/demographics", data={"age": "40", "gender": "male", "student": "yes", "employment": "part-time"}
    )
    assert enter(client, slug, pid.upper()) == url  # PIDs are case-insensitive hex
    assert page_of(client.get(url)) == ("finish", 0)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 1


def test_declining_consent_redirects_with_no_consent_code(client, db, make_study, new_pid):
    slug = make_study(db, trials=2, pool=4)
    url = enter(client, slug, new_pid())
    assert client.post(f"{url}/consent", data={"consent": "no"}).status_code == 303
    r = client.get(url)
    assert page_of(r) == ("finish", 0)
    assert HTMLParser(r.text).css_first("a#complete-link").attributes["href"].endswith("cc=CNOCONS")
    with db.session() as s:
        p = s.scalar(select(Participant))
        assert p.status == "no_consent" and p.finished_at is not None
    # no consent value at all is a clear error, not a decline
    url2 = enter(client, slug, new_pid())
    assert client.post(f"{url2}/consent", data={}).status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"PROLIFIC_PID": ""},
        {"PROLIFIC_PID": "not-a-pid"},
        {"PROLIFIC_PID": "z" * 24},
        {"PROLIFIC_PID": "a" * 25},
        {"PROLIFIC_PID": "a" * 24, "STUDY_ID": "<script>"},
        {"PROLIFIC_PID": "a" * 24, "SESSION_ID": "1"},
    ],
)
def test_bad_entry_links_store_nothing(client, db, make_study, params):
    slug = make_study(db, trials=2, pool=4)
    r = client.get(f"/s/{slug}", params=params)
    assert r.status_code == 400
    doc = HTMLParser(r.text)
    assert "Prolific" in doc.css_first("p.message").text() or "link" in doc.css_first("p.message").text()
    assert "<script>" not in r.text
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 0


def test_unknown_study_is_404_and_closed_or_full_are_polite(client, db, make_study, new_pid):
    r = client.get("/s/no-such-study", params={"PROLIFIC_PID": new_pid()})
    assert r.status_code == 404 and HTMLParser(r.text).css_first("h1").text() == "Study not found"
    slug = make_study(db, slug="closed-one", trials=2, pool=4, activate=False)
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": new_pid()})
    assert r.status_code == 200 and "not accepting participants" in r.text
    slug = make_study(db, slug="tiny-one", trials=2, pool=4, conditions=("CB",), target=1)
    enter(client, slug, new_pid())
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": new_pid()})
    assert r.status_code == 200 and "all the participants it needs" in r.text
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 1


def test_unknown_participant_token_is_404(client, db, make_study):
    make_study(db, trials=2, pool=4)
    assert client.get("/p/doesnotexist").status_code == 404
    assert client.post("/p/doesnotexist/trial/0", data={"label": "1", "confidence": "1"}).status_code == 404


def test_pages_leak_no_condition_label_or_metric(client, db, make_study, new_pid):
    slug = make_study(db, trials=4, pool=4, conditions=("CAP",))
    url = walk_to_trials(client, slug, new_pid())
    seen_srcs = set()
    for _ in range(4):
        r, action = answer_form(client, url)
        html = r.text
        assert not re.search(r"\b(CAP|CAI|CB)\b", html)
        assert "ssim" not in html.lower() and "model_pred" not in html and "image_index" not in html
        assert url.split("/p/")[1] not in html.replace(url, "").replace(action, "")
        src = HTMLParser(html).css_first("div.stimulus img").attributes["src"]
        assert re.fullmatch(r"/img/[A-Za-z0-9_-]{16}", src), src
        seen_srcs.add(src)
        img = client.get(src)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert b"tEXt" not in img.content and b"iTXt" not in img.content
        client.post(action, data={"label": "1", "confidence": "1"})
    assert len(seen_srcs) == 4
    assert not re.search(r"(CAP|CAI|CB)", url)


def test_attention_checks_flag_only_after_two_failures(client, db, make_study, new_pid):
    extra = ""
    slug = make_study(db, trials=3, pool=4, extra=extra)
    from app.studies.service import get_study

    with db.session() as s:
        st = get_study(s, slug)
        st.attention = {"positions": [1, 3], "fail_threshold": 2}

    def run(pid, fail_count):  # type: ignore[no-untyped-def]
        url = walk_to_trials(client, slug, pid)
        fails = 0
        for _ in range(5):
            r, action = answer_form(client, url)
            doc = HTMLParser(r.text)
            if doc.css_first("div.stimulus") is None:
                legend = doc.css_first("fieldset.labels legend strong").text()
                labels = [n.css_first("span.option-text").text() for n in doc.css("label.label-option")]
                right = labels.index(legend)
                pick = right if fails >= fail_count else (right + 1) % 10
                fails += pick != right
            else:
                pick = 0
            client.post(action, data={"label": str(pick), "confidence": "3"})
        client.post(
            f"{url}/demographics", data={"age": "30", "gender": "other", "student": "no", "employment": "other"}
        )
        return HTMLParser(client.get(url).text).css_first("a#complete-link").attributes["href"]

    assert run(new_pid(), 1).endswith("cc=CDONE1")
    assert run(new_pid(), 2).endswith("cc=CFAILED")


def test_every_demographics_option_is_stored_on_both_backends(client, db, make_study, new_pid):
    """Each offered option fits its column (PostgreSQL enforces lengths; SQLite does not)."""
    from app.participants.answers import EMPLOYMENT, GENDERS, STUDENT

    slug = make_study(db, trials=1, pool=3, target=50)
    n = max(len(GENDERS), len(STUDENT), len(EMPLOYMENT))
    for i in range(n):
        g, st, e = GENDERS[i % len(GENDERS)], STUDENT[i % len(STUDENT)], EMPLOYMENT[i % len(EMPLOYMENT)]
        url = walk_to_trials(client, slug, new_pid())
        _, action = answer_form(client, url)
        client.post(action, data={"label": "1", "confidence": "1"})
        r = client.post(f"{url}/demographics", data={"age": "44", "gender": g, "student": st, "employment": e})
        assert r.status_code == 303, (g, st, e, r.status_code)
    with db.session() as s:
        rows = s.execute(select(Participant.gender, Participant.student, Participant.employment)).all()
        assert {r[1] for r in rows} == set(STUDENT) and {r[2] for r in rows} == set(EMPLOYMENT)
        assert {r[0] for r in rows} == set(GENDERS)
