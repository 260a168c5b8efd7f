"""The study's Prolific id (set on the set-up panel: validated, audited, suggested from the participants' STUDY_ID)
and Prolific's statuses per condition on the recruitment page (matched by PROLIFIC_PID, cached briefly, a note
instead of a 500 when Prolific fails), against the fake Prolific API."""

from __future__ import annotations

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import select

from app.errors import DomainError
from app.models import AuditEntry, Study
from app.prolific_api import Submission
from app.prolific_status import COLUMNS, SubmissionsCache
from tests.app.admin.conftest import PSTUDY

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _saved(db) -> str | None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.scalar(select(Study.prolific_study_id).where(Study.slug == "people"))


def _audit(db) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def,type-arg]
    with db.session() as s:
        return [(e.action, e.details) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def _set(admin_client, value: str):  # type: ignore[no-untyped-def]
    return admin_client.post(
        "/admin/studies/people/setup/prolific-id", data={"prolific_study_id": value, "csrf_token": admin_client.csrf}
    )


def test_the_prolific_study_id_is_suggested_validated_saved_and_audited(admin_client, db, prolific) -> None:  # type: ignore[no-untyped-def]
    doc = HTMLParser(admin_client.get("/admin/studies/people/setup").text)
    assert doc.css_first("#prolific-study-id").attributes["value"] == PSTUDY  # what the participants arrived with
    assert PSTUDY in doc.css_first(".suggested").text() and _saved(db) is None
    for bad, why in (("abc", "it has 3 characters"), ("g" * 24, "other than the digits"), (PSTUDY + "0", "25")):
        r = _set(admin_client, bad)
        assert r.status_code == 400, bad
        error = HTMLParser(r.text).css_first("p.error").text()
        assert "not a Prolific study id" in error and why in error and "Nothing was changed" in error
    assert _saved(db) is None and _audit(db) == []
    r = _set(admin_client, " " + PSTUDY.upper() + " ")
    assert r.status_code == 303 and r.headers["location"].endswith("saved=set")
    assert _saved(db) == PSTUDY
    assert _audit(db) == [("study.prolific_id", {"from": None, "to": PSTUDY})]
    assert _set(admin_client, PSTUDY).headers["location"].endswith("saved=unchanged")
    assert len(_audit(db)) == 1  # nothing changed, nothing audited
    doc = HTMLParser(admin_client.get("/admin/studies/people/setup?saved=set").text)
    assert doc.css_first(".suggested") is None and PSTUDY in doc.css_first("p.current").text()
    assert _set(admin_client, "").headers["location"].endswith("saved=cleared")
    assert _saved(db) is None and _audit(db)[-1] == ("study.prolific_id", {"from": PSTUDY, "to": None})


def _statuses(html: str) -> dict[str, dict[str, str]]:
    doc = HTMLParser(html)
    return {
        tr.attributes["data-prolific-condition"] or "": {
            td.attributes["data-status"] or "": td.text() for td in tr.css("td[data-status]")
        }
        for tr in doc.css("table.prolific-statuses tr[data-prolific-condition]")
    }


@pytest.fixture
def linked(db, prolific):  # type: ignore[no-untyped-def]
    with db.session() as s:
        s.scalar(select(Study).where(Study.slug == "people")).prolific_study_id = PSTUDY
    prolific.add(PSTUDY, "c" * 24, status="TIMED-OUT")  # c timed out here too (CAI)
    prolific.add(PSTUDY, "8" * 24, status="SCREENED-OUT")  # never arrived; not one of the shown statuses
    return prolific


def _gets(fake) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for q in fake.requests if q[0] == "GET")


def test_recruitment_shows_prolific_statuses_per_condition_matched_by_pid(admin_client, linked) -> None:  # type: ignore[no-untyped-def]
    page = admin_client.get("/admin/studies/people/recruitment")
    assert page.status_code == 200
    got = _statuses(page.text)
    nonzero = {cond: {k: v for k, v in row.items() if v != "0"} for cond, row in got.items()}
    assert nonzero == {
        "CB": {"AWAITING REVIEW": "2"},  # a and b
        "CAI": {"RETURNED": "1", "TIMED-OUT": "1"},  # d returned, c timed out
        "CAP": {"AWAITING REVIEW": "1"},  # e
        "unmatched": {"AWAITING REVIEW": "1", "OTHER": "1"},  # 9..., 8... never arrived here
    }
    assert set(got["CB"]) == set(COLUMNS)
    assert HTMLParser(page.text).css_first("#prolific-note").text() == ""
    live = admin_client.get("/admin/studies/people/recruitment.json").json()["cells"]
    assert live['tr[data-prolific-condition="CAI"] td[data-status="RETURNED"]'] == 1
    assert live['tr[data-prolific-condition="unmatched"] td[data-status="OTHER"]'] == 1
    assert live["#prolific-note"] == ""


def test_the_live_poll_asks_prolific_at_most_once_per_ttl(app, admin_client, linked) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    app.state.prolific_cache = SubmissionsCache(ttl_s=30, clock=lambda: now[0])
    admin_client.get("/admin/studies/people/recruitment")
    first = _gets(linked)
    assert first == 4  # 7 submissions, 2 a page
    for _ in range(5):
        admin_client.get("/admin/studies/people/recruitment.json")
    assert _gets(linked) == first
    linked.add(PSTUDY, "b" * 24, status="RETURNED")  # b's newer submission: the latest counts
    now[0] = 31
    cells = admin_client.get("/admin/studies/people/recruitment.json").json()["cells"]
    assert _gets(linked) > first
    assert cells['tr[data-prolific-condition="CB"] td[data-status="RETURNED"]'] == 0  # same started_at: first kept


@pytest.mark.parametrize(
    ("fail", "says"),
    [([(401, {})], "refused the API token"), ([(503, {}), (503, {})], "server error"), ([(404, {})], "404")],
)
def test_prolific_failures_are_a_note_never_a_500(app, admin_client, linked, fail, says) -> None:  # type: ignore[no-untyped-def]
    linked.fail = list(fail)
    page = admin_client.get("/admin/studies/people/recruitment")
    assert page.status_code == 200
    doc = HTMLParser(page.text)
    assert says in doc.css_first("#prolific-note").text()
    assert all(v == "-" for row in _statuses(page.text).values() for v in row.values())
    before = _gets(linked)
    live = admin_client.get("/admin/studies/people/recruitment.json")
    assert live.status_code == 200 and says in live.json()["cells"]["#prolific-note"]
    assert _gets(linked) == before  # the failure is kept too: the poll does not hammer a failing Prolific
    assert doc.css_first("table.recruitment") is not None  # lpstudy's own counts are still there


def test_without_a_token_or_a_study_id_the_page_says_what_to_set(app, admin_client, db, prolific) -> None:  # type: ignore[no-untyped-def]
    doc = HTMLParser(admin_client.get("/admin/studies/people/recruitment").text)
    assert "Save the study's Prolific id" in doc.css_first("#prolific-note").text()
    assert doc.css_first('a[href="/admin/studies/people/setup#pid-h"]') is not None
    assert doc.css_first("table.prolific-statuses") is None
    app.state.settings = app.state.settings.model_copy(update={"prolific_api_token": None})
    doc = HTMLParser(admin_client.get("/admin/studies/people/recruitment").text)
    assert "LPSTUDY_PROLIFIC_API_TOKEN" in doc.css_first("#prolific-note").text()
    assert prolific.requests == []


def test_the_cache_keeps_answers_and_failures_for_its_ttl() -> None:
    now = [0.0]
    cache = SubmissionsCache(ttl_s=10, clock=lambda: now[0])
    calls: list[str] = []
    sub = Submission("1" * 24, "a" * 24, "RETURNED", None, None, None)

    def ok(pid: str) -> list[Submission]:
        calls.append(pid)
        return [sub]

    def broken(pid: str) -> list[Submission]:
        calls.append(pid)
        raise DomainError("Prolific is down")

    assert cache.get("x", ok)[0] == [sub] and cache.get("x", broken)[0] == [sub]
    assert calls == ["x"]
    with pytest.raises(DomainError):
        cache.get("y", broken)
    with pytest.raises(DomainError):
        cache.get("y", ok)  # the failure is kept as long as an answer would be
    now[0] = 10
    assert cache.get("y", ok)[0] == [sub] and calls == ["x", "y", "y"]
