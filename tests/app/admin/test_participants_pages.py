"""Participants table, its CSV (exactly the table), deleting test participants after a confirmation, and the
live recruitment page, on studies with participants in every status."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.models import AuditEntry, Participant, Trial
from app.participants import admin_view
from app.studies.service import get_study

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
NOW = dt.datetime.now(dt.UTC)


def _people(db, slug: str = "people") -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One participant per shown status, plus two test ones; returns pid -> id."""
    specs = [
        ("a" * 24, "CB", "active", NOW - dt.timedelta(minutes=5), None, False, None, 0),
        ("b" * 24, "CB", "completed", NOW - dt.timedelta(minutes=20), NOW - dt.timedelta(minutes=8), False, None, 1),
        ("c" * 24, "CAI", "active", NOW - dt.timedelta(minutes=90), None, False, None, 0),  # timed out
        ("d" * 24, "CAI", "no_consent", NOW - dt.timedelta(minutes=3), NOW - dt.timedelta(minutes=3), False, None, 0),
        (
            "e" * 24,
            "CAP",
            "failed_attention",
            NOW - dt.timedelta(minutes=30),
            NOW - dt.timedelta(minutes=25),
            False,
            None,
            2,
        ),
        ("f" * 24, "CAP", "completed", NOW - dt.timedelta(minutes=15), NOW - dt.timedelta(minutes=5), True, "bot", 0),
        ("0" * 24, "CB", "active", NOW - dt.timedelta(minutes=1), None, True, "preview", 0),
    ]
    ids = {}
    with db.session() as s:
        study = get_study(s, slug)
        stim = {c.code: c.stimuli[0].id for c in study.conditions}
        for i, (pid, code, status, started, finished, test, kind, att) in enumerate(specs):
            cond = study.condition(code)
            assert cond is not None
            p = Participant(
                study_id=study.id,
                condition_id=cond.id,
                token=f"tok{i:029d}",
                prolific_pid=pid,
                status=status,
                stage="done" if finished else "trials",
                started_at=started,
                last_seen_at=finished or started,
                finished_at=finished,
                attention_failures=att,
                is_test=test,
                test_kind=kind,
                device_pixel_ratio=2.0 if i % 2 else 1.0,
                viewport_w=1200 + i,
                viewport_h=800,
                touch=False,
                ua_browser="Chromium",
            )
            s.add(p)
            s.flush()
            s.add(
                Trial(
                    participant_id=p.id,
                    position=0,
                    stimulus_id=stim[code],
                    kind="stimulus",
                    shown_at=started,
                    answered_at=finished,
                    response_label=1 if finished else None,
                    confidence=3 if finished else None,
                )
            )
            ids[pid] = p.id
    return ids


@pytest.fixture
def people(db, make_study):  # type: ignore[no-untyped-def]
    make_study(db, slug="people", trials=1, pool=2)
    return _people(db)


def _table(html: str) -> list[dict[str, str]]:
    doc = HTMLParser(html)
    heads = [th.text() for th in doc.css("table.participants thead th")]
    return [
        dict(zip(heads, [td.text().strip() for td in tr.css("td")], strict=True))
        for tr in doc.css("table.participants tbody tr[data-pid]")
    ]


def test_the_table_shows_every_participant_with_derived_status(admin_client, people) -> None:  # type: ignore[no-untyped-def]
    rows = _table(admin_client.get("/admin/studies/people/participants").text)
    by_pid = {r["PID"]: r for r in rows}
    assert len(rows) == 7
    assert by_pid["c" * 24]["Status"] == "timed out"  # active, not seen for longer than the 30-minute timeout
    assert by_pid["b" * 24]["Duration"] == "12 min 00 s" and by_pid["b" * 24]["Answered"] == "1 / 1"
    assert by_pid["e" * 24]["Attention failures"] == "2"
    assert by_pid["f" * 24]["Test"] == "bot" and by_pid["0" * 24]["Test"] == "preview"
    assert by_pid["a" * 24]["Test"] == ""


@pytest.mark.parametrize(
    ("query", "pids"),
    [
        ("status=timed_out", ["c"]),
        ("status=completed&kind=real", ["b"]),
        ("condition=CAP", ["e", "f"]),
        ("kind=test", ["f", "0"]),
    ],
)
def test_filters_and_the_csv_is_exactly_the_table(admin_client, people, query, pids) -> None:  # type: ignore[no-untyped-def]
    page = admin_client.get(f"/admin/studies/people/participants?{query}")
    table = _table(page.text)
    assert sorted(r["PID"][0] for r in table) == sorted(pids)
    link = HTMLParser(page.text).css_first("a[download]").attributes["href"]
    assert link == f"/admin/studies/people/participants.csv?{query}"
    r = admin_client.get(link)
    assert r.headers["content-type"].startswith("text/csv")
    data = list(csv.DictReader(io.StringIO(r.text)))
    assert [d["prolific_pid"] for d in data] == [t["PID"] for t in table]
    assert [d["status"].replace("_", " ") for d in data] == [t["Status"] for t in table]
    assert [d["attention_failures"] for d in data] == [t["Attention failures"] for t in table]


@sqlite_only
def test_a_bad_filter_is_a_400_not_a_500(admin_client, people) -> None:  # type: ignore[no-untyped-def]
    for q in ("status=lost", "kind=robots", "condition=CX"):
        assert admin_client.get(f"/admin/studies/people/participants?{q}").status_code == 400


def test_delete_test_participants_after_a_confirmation_listing_them(admin_client, db, people) -> None:  # type: ignore[no-untyped-def]
    confirm = HTMLParser(admin_client.get("/admin/studies/people/participants/delete-test").text)
    listed = [td.text() for td in confirm.css("table.affected td code")]
    assert sorted(listed) == sorted(["f" * 24, "0" * 24])
    ids = [n.attributes["value"] for n in confirm.css('input[name="ids"]')]
    r = admin_client.post(
        "/admin/studies/people/participants/delete-test", data={"ids": ids, "csrf_token": admin_client.csrf}
    )
    assert r.status_code == 303
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 5
        assert s.scalar(select(func.count()).select_from(Participant).where(Participant.is_test.is_(True))) == 0
        assert s.scalar(select(func.count()).select_from(Trial)) == 5
        entry = s.scalar(select(AuditEntry))
        assert entry.action == "participants.delete_test" and entry.target == "2 test participants"


@sqlite_only
def test_deleting_refuses_a_list_that_is_not_exactly_the_test_participants(admin_client, db, people) -> None:  # type: ignore[no-untyped-def]
    for ids in ([str(people["a" * 24]), str(people["f" * 24]), str(people["0" * 24])], [str(people["f" * 24])], []):
        r = admin_client.post(
            "/admin/studies/people/participants/delete-test", data={"ids": ids, "csrf_token": admin_client.csrf}
        )
        assert r.status_code == 400, ids
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 7


def test_recruitment_counts_real_participants_by_status_against_targets(admin_client, db, people) -> None:  # type: ignore[no-untyped-def]
    doc = HTMLParser(admin_client.get("/admin/studies/people/recruitment").text)
    cells = {
        tr.attributes["data-condition"]: {td.attributes["class"]: td.text() for td in tr.css("td[class]")}
        for tr in doc.css("table.recruitment tr[data-condition]")
    }
    assert cells["CB"]["active"] == "1" and cells["CB"]["completed"] == "1" and cells["CB"]["test"] == "1"
    assert cells["CB"]["filled"] == "2 / 10 (20%)"
    assert cells["CAI"]["timed_out"] == "1" and cells["CAI"]["no_consent"] == "1"
    assert cells["CAP"]["failed_attention"] == "1" and cells["CAP"]["completed"] == "0" and cells["CAP"]["test"] == "1"
    assert doc.css_first("#median-completion").text() == "12 min 00 s"  # the one real completion; the bot's ignored
    live = admin_client.get("/admin/studies/people/recruitment.json").json()
    assert live["cells"]['tr[data-condition="CAI"] td.timed_out'] == 1
    assert live["cells"]["#median-completion"] == "12 min 00 s"
    with db.session() as s:
        r = admin_view.recruitment(s, get_study(s, "people"))
    assert r.viewing.reported == 5 and dict(r.viewing.dpr) == {"1": 3, "2": 2}
    shown = {(e.condition, e.image_index): e.shown for e in r.exposures}
    assert shown[("CB", 0)] == 2 and shown[("CAP", 0)] == 1 and shown[("CB", 1)] == 0  # tests not counted
    assert sum(b.started for b in r.dropout) == 5
    assert sum(b.dropped for b in r.dropout) == 3 and sum(b.completed for b in r.dropout) == 1
