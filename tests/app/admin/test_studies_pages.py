"""Studies in the dashboard: create by upload or form (CLI-grade errors), edit a draft, the lifecycle with its
rules, regeneration, the Prolific set-up panel, and the audit trail of each."""

from __future__ import annotations

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.models import AssignmentSlot, AuditEntry, Job, JobStatus, Study
from app.studies.service import get_study

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _upload(client, text: str | bytes, name: str = "study.toml"):  # type: ignore[no-untyped-def]
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        "/admin/new-study/upload", data={"csrf_token": client.csrf}, files={"config": (name, data, "text/plain")}
    )


def _audit(db) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return [(e.action, e.target) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_upload_creates_the_study_as_the_cli_would(admin_client, db, toml_for) -> None:  # type: ignore[no-untyped-def]
    r = _upload(admin_client, toml_for("up-one"))
    assert r.status_code == 303 and r.headers["location"] == "/admin/studies/up-one"
    page = HTMLParser(admin_client.get("/admin/studies/up-one").text)
    assert page.css_first("strong.status").text() == "draft"
    assert 'slug = "up-one"' in page.css_first("pre.config").text()
    assert _audit(db) == [("study.create", "up-one")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('slug = "x"\n', "my-study.toml:1: slug:"),
        ("slug = \n", "my-study.toml:1: not valid TOML"),
        (b"\xff\xfe", "not UTF-8"),
        ("", "is empty"),
    ],
)
@sqlite_only
def test_a_bad_upload_names_file_and_line_and_creates_nothing(admin_client, db, text, expected) -> None:  # type: ignore[no-untyped-def]
    r = _upload(admin_client, text, name="my-study.toml")
    assert r.status_code in (400, 422)
    error = HTMLParser(r.text).css_first("pre.config-error")
    assert error is not None and expected in error.text(), error.text() if error else r.text[:500]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0
    assert _audit(db) == []


@sqlite_only
def test_a_field_error_in_an_upload_points_at_its_line(admin_client, toml_for) -> None:  # type: ignore[no-untyped-def]
    text = toml_for("line-check").replace("timeout_minutes = 30", "timeout_minutes = 0")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("timeout_minutes"))
    r = _upload(admin_client, text, name="s.toml")
    assert r.status_code == 422
    assert f"s.toml:{line}: timeout_minutes:" in HTMLParser(r.text).css_first("pre.config-error").text()


def test_an_existing_slug_is_a_clear_conflict(admin_client, db, make_study, toml_for) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="taken", activate=False)
    r = _upload(admin_client, toml_for("taken"))
    assert r.status_code == 409 and "already exists" in HTMLParser(r.text).css_first("pre.config-error").text()


FORM = {
    "slug": "from-form",
    "title": "A form-made study",
    "dataset": "mnist",
    "norm": "l0",
    "trials_per_participant": "10",
    "participants_per_condition": "20",
    "timeout_minutes": "45",
    "attention_count": "2",
    "code_completed": "DONE123",
    "code_no_consent": "NOCONS1",
    "code_failed_attention": "FAILATT1",
    "consent": 'You agree "to take part".\nSecond line.',
    "instructions": "Pick the digit.",
}


def test_the_form_makes_a_valid_config(admin_client, db) -> None:  # type: ignore[no-untyped-def]
    data = {**FORM, "csrf_token": admin_client.csrf, "conditions": ["CB", "CAP"]}
    r = admin_client.post("/admin/new-study/form", data=data)
    assert r.status_code == 303, r.text[:800]
    with db.session() as s:
        study = get_study(s, "from-form")
        assert [c.code for c in study.conditions] == ["CB", "CAP"]
        assert [c.target for c in study.conditions] == [20, 20]
        assert study.trials_per_participant == 10 and study.timeout_minutes == 45
        assert study.consent_text == 'You agree "to take part".\nSecond line.'
        assert study.attention is not None and len(study.attention["positions"]) == 2
        assert study.config.get("generation") is None


@sqlite_only
def test_form_errors_name_the_field_and_keep_the_input(admin_client, db) -> None:  # type: ignore[no-untyped-def]
    data = {
        **FORM,
        "participants_per_condition": "lots",
        "code_completed": "no spaces!",
        "csrf_token": admin_client.csrf,
    }
    data["conditions"] = ["CB"]
    r = admin_client.post("/admin/new-study/form", data=data)
    assert r.status_code == 422
    doc = HTMLParser(r.text)
    text = doc.css_first("pre.config-error").text()
    assert "participants_per_condition:" in text and "completion_codes.completed:" in text
    assert doc.css_first('input[name="title"]').attributes["value"] == FORM["title"]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0


def test_edit_a_draft_and_the_rules_that_stop_an_edit(admin_client, db, make_study, toml_for) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="ed-it", trials=2, pool=3, activate=False)
    form = HTMLParser(admin_client.get("/admin/studies/ed-it/edit").text)
    source = form.css_first("textarea[name=source]").text()
    r = admin_client.post(
        "/admin/studies/ed-it/edit",
        data={"source": source.replace('title = "Test study"', 'title = "Renamed"'), "csrf_token": admin_client.csrf},
    )
    assert r.status_code == 303
    with db.session() as s:
        assert get_study(s, "ed-it").title == "Renamed"
    # the norm cannot change once stimuli exist; the slug never
    for change, message in (('norm = "l0"', "cannot change norm"), ('slug = "ed-it"', "slug cannot change")):
        new = source.replace(change, change.replace("l0", "l2").replace('"ed-it"', '"other"'))
        r = admin_client.post("/admin/studies/ed-it/edit", data={"source": new, "csrf_token": admin_client.csrf})
        assert r.status_code == 409 and message in HTMLParser(r.text).css_first("pre.config-error").text()
    with db.session() as s:
        assert get_study(s, "ed-it").norm == "l0"
    assert _audit(db) == [("study.edit", "ed-it")]


def _transitions(html: str) -> dict[str, tuple[bool, str]]:
    doc = HTMLParser(html)
    out = {}
    for tr in doc.css("table.transitions tr[data-action]"):
        button = tr.css_first("button")
        why = tr.css_first(".why")
        out[tr.attributes["data-action"] or ""] = ("disabled" not in button.attributes, why.text() if why else "")
    return out


def test_lifecycle_shows_each_rule_and_refuses_with_it(admin_client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="small", trials=4, pool=3, activate=False)
    t = _transitions(admin_client.get("/admin/studies/small").text)
    assert t["activate"][0] is False and "has 3 stimuli" in t["activate"][1]
    assert t["pause"] == (False, "Not now: the study is draft, not active.")
    r = admin_client.post("/admin/studies/small/activate", data={"csrf_token": admin_client.csrf})
    assert r.status_code == 409
    assert "Rule: A draft can be activated once" in HTMLParser(r.text).css_first("main").text()


def test_activate_pause_resume_close_and_the_audit_log(admin_client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="cycle", trials=2, pool=3, activate=False)
    page = HTMLParser(admin_client.get("/admin/studies/cycle").text)
    assert page.css_first("ol.phases li.current").text() == "ready"
    for action, status in (("activate", "active"), ("pause", "paused")):
        assert (
            admin_client.post(f"/admin/studies/cycle/{action}", data={"csrf_token": admin_client.csrf}).status_code
            == 303
        )
        with db.session() as s:
            assert get_study(s, "cycle").status == status
            if action == "activate":  # the launch's first slots are made on activation, not by its first entries
                slots = s.scalars(
                    select(AssignmentSlot.rank).where(AssignmentSlot.study_id == get_study(s, "cycle").id)
                ).all()
                assert len(slots) == 3 * 10 and sorted(set(slots)) == list(range(10))  # 3 conditions, target 10
    # paused: a new participant is turned away politely
    r = admin_client.get("/s/cycle", params={"PROLIFIC_PID": new_pid()})
    assert r.status_code == 200 and "not accepting participants" in r.text
    for action in ("resume", "close"):
        assert (
            admin_client.post(f"/admin/studies/cycle/{action}", data={"csrf_token": admin_client.csrf}).status_code
            == 303
        )
    assert admin_client.post("/admin/studies/cycle/close", data={"csrf_token": admin_client.csrf}).status_code == 409
    assert [a for a, _ in _audit(db)] == ["study.activate", "study.pause", "study.resume", "study.close"]
    audit = HTMLParser(admin_client.get("/admin/studies/cycle/audit").text)
    assert [n.text() for n in audit.css("table.audit td code")] == [
        "study.close",
        "study.resume",
        "study.pause",
        "study.activate",
    ]
    csv_text = admin_client.get("/admin/audit.csv").text.splitlines()
    assert csv_text[0] == "at,admin,action,study,target,details" and len(csv_text) == 5
    assert '"{""from"": ""paused"", ""to"": ""active""}"' in csv_text[2]


def test_regenerate_retries_failed_blocks(admin_client, db, toml_for) -> None:  # type: ignore[no-untyped-def]
    r = _upload(admin_client, toml_for("regen", extra="\n[generation]\nimages = 4\nbatch_size = 2\n"))
    assert r.status_code == 303, r.text[:500]
    with db.session() as s:
        jobs = s.scalars(select(Job).order_by(Job.id)).all()
        assert len(jobs) == 2  # 2 blocks of source images, each made in every condition
        jobs[0].status = JobStatus.DONE
        jobs[1].status = JobStatus.FAILED
    page = HTMLParser(admin_client.get("/admin/studies/regen").text)
    assert page.css_first("p.generation-summary strong.complete").text() == "0"
    r = admin_client.post("/admin/studies/regen/regenerate", data={"condition": "all", "csrf_token": admin_client.csrf})
    assert r.status_code == 303
    with db.session() as s:
        pending = s.scalars(select(Job).where(Job.status == JobStatus.PENDING)).all()
        # the failed block is retried; block 0 (marked done here without stimuli) is made up by two top-ups
        assert [j.payload["block"] for j in pending] == [1, 2, 3]
    assert _audit(db)[-1] == ("study.regenerate", "all")
    # one condition alone is refused: a source image enters the study only with every condition
    r = admin_client.post("/admin/studies/regen/regenerate", data={"condition": "CAI", "csrf_token": admin_client.csrf})
    assert r.status_code == 409 and "together" in r.text
    poll = admin_client.get("/admin/studies/regen/progress.json").json()
    assert poll["cells"]["strong.complete"] == 0 and poll["live"] is True


def test_prolific_setup_panel(admin_client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="setup-me", activate=False)
    doc = HTMLParser(admin_client.get("/admin/studies/setup-me/setup").text)
    url = doc.css_first("textarea#study-url").text()
    assert url == (
        "http://testserver/s/setup-me?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    assert doc.css_first("button.copy").attributes["data-copy"] == "#study-url"
    rows = {tr.attributes["data-code-type"]: tr for tr in doc.css("table.codes tr[data-code-type]")}
    assert set(rows) == {"COMPLETED", "NO_CONSENT", "FAILED_ATTENTION_CHECK", "INCOMPATIBLE_DEVICE"}
    assert rows["COMPLETED"].css_first("code.code").text() == "CDONE1"
    assert rows["NO_CONSENT"].css_first("td.action").text() == "Request return"
    assert rows["FAILED_ATTENTION_CHECK"].css_first("code.code").text() == "CFAILED"
    assert "https://app.prolific.com/submissions/complete?cc=CDONE1" in doc.css_first("main").text()


@sqlite_only
def test_setup_url_uses_the_configured_base_or_a_trusted_proxy(app, admin_client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="proxied", activate=False)
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "study.example.org"}

    def url() -> str:
        doc = HTMLParser(admin_client.get("/admin/studies/proxied/setup", headers=headers).text)
        return doc.css_first("textarea#study-url").text() or ""

    assert url().startswith("http://testserver/s/proxied?")  # untrusted headers are ignored
    app.state.settings = app.state.settings.model_copy(update={"trust_proxy": True})
    assert url().startswith("https://study.example.org/s/proxied?")
    app.state.settings = app.state.settings.model_copy(update={"public_base_url": "https://lab.example.net/x"})
    assert url().startswith("https://lab.example.net/x/s/proxied?")
