"""The Prolific API from the dashboard, against a fake Prolific served on 127.0.0.1 that follows the documented
endpoints: submissions beside lpstudy's status with mismatches, bulk approval and rejection after confirmation
pages listing exactly who, and 401/403/404/429/5xx handled with a clear message and nothing half done."""

from __future__ import annotations

import logging

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import select

from app.models import AuditEntry
from app.prolific_api import ProlificClient, ProlificError
from tests.app.admin.conftest import PSTUDY

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _rows(html: str) -> dict[str, dict[str, str]]:
    doc = HTMLParser(html)
    return {
        tr.attributes["data-pid"] or "": {
            "here": tr.css_first("td.here").text(),
            "there": tr.css_first("td.there").text(),
            "flags": tr.css_first("td.flags").text(),
        }
        for tr in doc.css("table.submissions tr[data-pid]")
    }


def test_submissions_beside_lpstudy_with_mismatches_flagged(admin_client, prolific) -> None:  # type: ignore[no-untyped-def]
    r = admin_client.get("/admin/studies/people/prolific")  # the study id comes from the participants' STUDY_ID
    assert r.status_code == 200
    rows = _rows(r.text)
    assert rows["b" * 24]["there"] == "AWAITING REVIEW" and rows["b" * 24]["flags"] == ""
    assert "submitted on Prolific (AWAITING REVIEW), but active here" in rows["a" * 24]["flags"]
    assert "never seen here" in rows["9" * 24]["flags"]
    assert rows["e" * 24]["here"] == "failed attention" and rows["e" * 24]["flags"] == ""
    assert "f" * 24 not in rows  # test participants are not Prolific's business
    # every page was read (page_size 2: three pages), with the token in the header
    gets = [q for q in prolific.requests if q[0] == "GET"]
    assert len(gets) == 3 and all(q[3] == f"Token {prolific.token}" for q in gets)


def test_completed_here_but_not_submitted_there(admin_client, db, prolific) -> None:  # type: ignore[no-untyped-def]
    prolific.studies[PSTUDY] = [s for s in prolific.studies[PSTUDY] if s["participant_id"] != "b" * 24]
    rows = _rows(admin_client.get("/admin/studies/people/prolific").text)
    assert "completed here, but no submission on Prolific" in rows["b" * 24]["flags"]


def test_bulk_approve_after_a_confirmation_listing_exactly_who(admin_client, db, prolific) -> None:  # type: ignore[no-untyped-def]
    confirm = HTMLParser(admin_client.get(f"/admin/studies/people/prolific/approve?study_id={PSTUDY}").text)
    assert [c.text() for c in confirm.css("table.affected td code")][::2] == ["b" * 24]
    ids = [n.attributes["value"] for n in confirm.css('input[name="ids"]')]
    r = admin_client.post(
        "/admin/studies/people/prolific/approve", data={"study_id": PSTUDY, "ids": ids, "csrf_token": admin_client.csrf}
    )
    assert r.status_code == 303 and "Approved+1" in r.headers["location"]
    assert prolific.status_of("b" * 24) == "APPROVED" and prolific.status_of("e" * 24) == "AWAITING REVIEW"
    post = next(q for q in prolific.requests if q[0] == "POST")
    assert post[1] == "/api/v1/submissions/bulk-approve/" and post[2] == {"study_id": PSTUDY, "submission_ids": ids}
    with db.session() as s:
        e = s.scalar(select(AuditEntry))
        assert e.action == "prolific.approve" and e.details["participants"] == ["b" * 24]


def test_approval_refuses_a_stale_or_padded_list_and_sends_nothing(admin_client, prolific) -> None:  # type: ignore[no-untyped-def]
    by_pid = {s["participant_id"]: s["id"] for s in prolific.studies[PSTUDY]}
    for ids in ([by_pid["b" * 24], by_pid["e" * 24]], [by_pid["a" * 24]], []):
        r = admin_client.post(
            "/admin/studies/people/prolific/approve",
            data={"study_id": PSTUDY, "ids": ids, "csrf_token": admin_client.csrf},
        )
        assert r.status_code == 400, ids
    assert not [q for q in prolific.requests if q[0] == "POST"]


def test_reject_one_with_category_and_a_long_enough_message(admin_client, db, prolific) -> None:  # type: ignore[no-untyped-def]
    sid = next(s["id"] for s in prolific.studies[PSTUDY] if s["participant_id"] == "e" * 24)
    form = admin_client.get(f"/admin/studies/people/prolific/reject?study_id={PSTUDY}&submission={sid}")
    assert form.status_code == 200 and "e" * 24 in form.text
    base = {"study_id": PSTUDY, "submission": sid, "csrf_token": admin_client.csrf}
    short = admin_client.post(
        "/admin/studies/people/prolific/reject/review", data={**base, "category": "FAILED_CHECK", "message": "bad"}
    )
    assert short.status_code == 400 and "at least 100 characters" in short.text
    message = "You failed both attention checks, which asked for a specific answer. " * 2
    review = admin_client.post(
        "/admin/studies/people/prolific/reject/review", data={**base, "category": "FAILED_CHECK", "message": message}
    )
    doc = HTMLParser(review.text)
    assert review.status_code == 200 and doc.css_first("dl.confirm") is not None
    assert not [q for q in prolific.requests if q[0] == "POST"]  # the review page sends nothing
    r = admin_client.post(
        "/admin/studies/people/prolific/reject", data={**base, "category": "FAILED_CHECK", "message": message}
    )
    assert r.status_code == 303
    assert prolific.status_of("e" * 24) == "REJECTED"
    post = [q for q in prolific.requests if q[0] == "POST"][-1]
    assert post[1] == f"/api/v1/submissions/{sid}/transition/"
    assert post[2] == {"action": "REJECT", "message": message.strip(), "rejection_category": "FAILED_CHECK"}
    with db.session() as s:
        assert s.scalar(select(AuditEntry)).action == "prolific.reject"


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "refused the API token"), (403, "does not allow"), (404, "no such study"), (500, "server error")],
)
def test_a_failed_read_says_what_went_wrong(admin_client, prolific, monkeypatch, status, message) -> None:  # type: ignore[no-untyped-def]
    slept: list[float] = []
    monkeypatch.setattr("app.prolific_api.time.sleep", slept.append)
    prolific.fail = [(status, {})] * 4  # reads are retried on 5xx: fail every attempt
    page = admin_client.get("/admin/studies/people/prolific")
    assert page.status_code == 200
    assert message in HTMLParser(page.text).css_first("p.error").text()
    assert slept == ([1.0, 2.0, 4.0] if status >= 500 else [])


@pytest.mark.parametrize("status", [401, 403, 404, 500, 503])
def test_a_failed_write_changes_nothing_here(admin_client, db, prolific, monkeypatch, status) -> None:  # type: ignore[no-untyped-def]
    confirm = HTMLParser(admin_client.get(f"/admin/studies/people/prolific/approve?study_id={PSTUDY}").text)
    ids = [n.attributes["value"] for n in confirm.css('input[name="ids"]')]
    real = ProlificClient.bulk_approve

    def failing(self, study_id, submission_ids):  # type: ignore[no-untyped-def]
        prolific.fail.append((status, {}))
        return real(self, study_id, submission_ids)

    monkeypatch.setattr(ProlificClient, "bulk_approve", failing)
    monkeypatch.setattr("app.prolific_api.time.sleep", lambda s: None)
    r = admin_client.post(
        "/admin/studies/people/prolific/approve", data={"study_id": PSTUDY, "ids": ids, "csrf_token": admin_client.csrf}
    )
    assert r.status_code == 502
    assert "Nothing was changed" in HTMLParser(r.text).css_first("main").text()
    assert prolific.status_of("b" * 24) == "AWAITING REVIEW"
    posts = [q for q in prolific.requests if q[0] == "POST"]
    assert len(posts) == 1  # a write is never retried
    with db.session() as s:
        assert s.scalar(select(AuditEntry)) is None


def test_429_is_waited_for_with_retry_after_then_given_up(fake) -> None:  # type: ignore[no-untyped-def]
    fake.studies[PSTUDY] = []
    slept: list[float] = []
    with ProlificClient(fake.url, fake.token, sleep=slept.append, attempts=3) as c:
        fake.fail = [(429, {"Retry-After": "2"}), (503, {})]
        assert c.submissions(PSTUDY) == []
        assert slept == [2.0, 2.0]  # honoured Retry-After, then backed off on the 5xx
        fake.fail = [(429, {"Retry-After": "1"})] * 3
        with pytest.raises(ProlificError, match="rate-limiting"):
            c.submissions(PSTUDY)


def test_the_token_is_never_shown_or_logged(admin_client, prolific, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    pages = [admin_client.get("/admin/studies/people/prolific").text]
    prolific.fail = [(401, {})]
    pages.append(admin_client.get("/admin/studies/people/prolific").text)
    assert all(prolific.token not in p for p in pages)
    assert prolific.token not in caplog.text


@sqlite_only
def test_without_a_token_the_page_explains(admin_client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="plain")
    doc = HTMLParser(admin_client.get("/admin/studies/plain/prolific").text)
    assert "LPSTUDY_PROLIFIC_API_TOKEN" in doc.css_first("p.warning").text()
    r = admin_client.get(f"/admin/studies/plain/prolific/approve?study_id={PSTUDY}")
    assert r.status_code == 409
