"""Test participants (admin previews and bots) on SQLite and PostgreSQL: marked as test, never counted toward the
targets, never in a default export, balanced among themselves, deletable with their trials and nothing else."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from itsdangerous import TimestampSigner
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.admin import auth
from app.bots.pages import parse
from app.bots.responders import RandomResponder, TruthResponder
from app.bots.run import BotRunError, run_bots, summarise, truth_by_public_id
from app.exports import export_results
from app.models import Participant, Stimulus, Study, Trial
from app.participants import pilots
from app.participants.repository import study_participants
from app.studies.service import condition_counts, get_study

EMAIL, PASSWORD = "admin@example.org", "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def login(client, db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        auth.create_user(s, EMAIL, PASSWORD)
    r = client.get("/admin/login")
    csrf = HTMLParser(r.text).css_first('input[name="csrf_token"]').attributes["value"]
    r = client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf})
    assert r.status_code == 303


def walk(client, url: str, label: str = "0") -> None:  # type: ignore[no-untyped-def]
    """Consent, instructions, every trial with `label`, demographics: a participant's whole path by its forms."""
    for _ in range(100):
        r = client.get(url)
        page = parse(r.text, url)
        if page.kind == "finish":
            return
        assert page.action, r.text[:300]
        data = {"consent": "yes"} if page.kind == "consent" else {}
        if page.kind == "trial":
            data = {"label": label, "confidence": "3", "rt_ms": "900"}
        if page.kind == "demographics":
            data = {"age": "30", "gender": "female", "student": "no", "employment": "full-time"}
        assert client.post(page.action, data=data).status_code == 303
    raise AssertionError("no finish page")


def enter_real(client, slug: str, pid: str) -> str:  # type: ignore[no-untyped-def]
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": pid, "STUDY_ID": "a" * 24, "SESSION_ID": "b" * 24})
    assert r.status_code == 303, r.text
    return r.headers["location"]


def participants(db, slug: str) -> list[Participant]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return list(s.scalars(study_participants(get_study(s, slug).id, include_test=True)))


def test_admin_preview_link_enters_a_fresh_test_participant(client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="preview-me", trials=3, pool=4, target=1)
    login(client, db)
    html = client.get(f"/admin/studies/{slug}").text
    links = {a.attributes["data-condition"]: a.attributes["href"] for a in HTMLParser(html).css("a.preview-link")}
    assert set(links) == {"as assigned", "CB", "CAI", "CAP"}
    assert all(pilots.TEST_PARAM + "=" in href for href in links.values())
    client.cookies.clear()  # the link works without the admin's cookie: the token is the capability
    first = client.get(links["as assigned"]).headers["location"]
    second = client.get(links["as assigned"]).headers["location"]
    assert first != second  # each visit is a new participant
    cap = client.get(links["CAP"]).headers["location"]
    page = client.get(first)
    banner = HTMLParser(page.text).css_first(".test-banner")
    assert banner is not None and banner.attributes["data-test-kind"] == "preview"
    walk(client, first)
    done = client.get(first).text
    assert 'http-equiv="refresh"' not in done  # a preview is never sent on to Prolific
    people = participants(db, slug)
    assert len(people) == 3 and all(p.is_test and p.test_kind == "preview" for p in people)
    assert len({p.prolific_pid for p in people}) == 3 and all(len(p.prolific_pid) == 24 for p in people)
    assert [p for p in people if p.token == cap.rsplit("/", 1)[1]][0].condition_id in {
        c.id for c in get_study_conditions(db, slug) if c.code == "CAP"
    }
    # counted apart: the study (target 1 per condition) still takes three real participants
    with db.session() as s:
        assert all(c.filled == 0 for c in condition_counts(s, get_study(s, slug)))
        assert pilots.count_test_participants(s, get_study(s, slug)).preview == 3
    for i in range(3):
        walk(client, enter_real(client, slug, f"{i:024x}"))
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": "f" * 24})
    assert "has all the participants it needs" in r.text


def get_study_conditions(db, slug):  # type: ignore[no-untyped-def]
    with db.session() as s:
        return list(get_study(s, slug).conditions)


@pytest.mark.parametrize(
    "token",
    [
        "forged",
        "OTHER_STUDY",
        "WRONG_SECRET",
        "EXPIRED",
    ],
)
def test_a_bad_test_token_is_refused_and_stores_nothing(client, db, make_study, token) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="guarded", trials=2, pool=3)
    secret = client.app.state.settings.secret_key
    if token == "OTHER_STUDY":
        token = pilots.mint_test_token(secret, "another-study", "preview")
    elif token == "WRONG_SECRET":
        token = pilots.mint_test_token("x" * 40, slug, "bot")
    elif token == "EXPIRED":  # signed two days ago
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 2 * 86400)
            token = pilots.mint_test_token(secret, slug, "preview")
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": "c" * 24, pilots.TEST_PARAM: token})
    assert r.status_code == 400 and "Test link not valid" in r.text
    assert participants(db, slug) == []  # never taken as a real participant either


def test_test_participants_may_enter_a_draft_study_real_ones_may_not(client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="drafty", trials=2, pool=3, activate=False)
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": "d" * 24})
    assert r.status_code == 200 and "not accepting participants" in r.text
    token = pilots.mint_test_token(client.app.state.settings.secret_key, slug, "preview")
    assert client.get(f"/s/{slug}", params={pilots.TEST_PARAM: token}).status_code == 303
    assert [p.test_kind for p in participants(db, slug)] == ["preview"]


def _bots(app, slug: str, n: int, responder, seed: int = 0):  # type: ignore[no-untyped-def]
    token = pilots.mint_test_token(app.state.settings.secret_key, slug, "bot")
    transport = httpx.ASGITransport(app=app)
    return run_bots("http://lpstudy.test", slug, n, responder, token, seed=seed, concurrency=3, transport=transport)


def test_truth_bots_walk_every_form_answer_truly_and_stay_out_of_counts_and_exports(
    client, app, db, make_study, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="botted", trials=4, pool=6, target=2, extra="[attention_checks]\npositions = [1, 4]\n")
    with db.session() as s:
        truth = truth_by_public_id(s, get_study(s, slug))
    results = _bots(app, slug, 9, TruthResponder(truth))
    assert all(r.finished and r.error is None for r in results), [r.error for r in results]
    assert {r.completion_code for r in results} == {"CDONE1"} and all(r.answers == 6 for r in results)
    with db.session() as s:
        study = get_study(s, slug)
        rows = summarise(s, study, [r.pid for r in results])
        # Test participants hold no assignment slot: concurrent bots are balanced least-filled first but not
        # serialised, so two entering at once may pick the same condition. Every condition still gets some,
        # past the target of 2, and all nine are counted.
        bots = sorted(r.bots for r in rows)
        assert sum(bots) == 9 and bots[0] >= 1 and bots[-1] - bots[0] <= 2
        assert all(r.completed == r.bots and r.failed_attention == 0 for r in rows)
        assert all(r.correct == r.image_answers == r.bots * 4 for r in rows)  # the true label, every time
        assert all(c.filled == 0 for c in condition_counts(s, study))
        n_trials = s.scalar(select(func.count()).select_from(Trial)) or 0
    assert n_trials == 9 * 6 and all(p.test_kind == "bot" for p in participants(db, slug))
    # a real participant after them: the only one in the default export
    walk(client, enter_real(client, slug, "e" * 24))
    with db.session() as s:
        study = get_study(s, slug)
        assert export_results(s, study, tmp_path / "default") == (6, 1)
        assert export_results(s, study, tmp_path / "all", include_test=True) == (60, 10)
    rows_p = list(csv.DictReader((tmp_path / "default" / "participants.csv").open()))
    assert [r["prolific_pid"] for r in rows_p] == ["e" * 24] and "is_test" not in rows_p[0]
    all_p = list(csv.DictReader((tmp_path / "all" / "participants.csv").open()))
    assert sorted((r["is_test"], r["test_kind"]) for r in all_p) == [("0", "")] + [("1", "bot")] * 9
    all_t = list(csv.DictReader((tmp_path / "all" / "trials.csv").open()))
    assert {r["test_kind"] for r in all_t if r["prolific_pid"] != "e" * 24} == {"bot"}


def test_random_bots_are_reproducible_with_a_seed(app, db, make_study) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="random-bots", trials=3, pool=4)

    def answers(seed: int) -> list[tuple[int | None, int | None]]:
        results = _bots(app, slug, 3, RandomResponder(), seed=seed)
        assert all(r.finished for r in results)
        # Per bot, in the bots' own order: concurrent bots may enter (and get participant ids) in any order.
        rows: list[tuple[int | None, int | None]] = []
        with db.session() as s:
            for r in results:
                rows += [
                    (label, confidence)
                    for label, confidence in s.execute(
                        select(Trial.response_label, Trial.confidence)
                        .join(Participant)
                        .where(Participant.prolific_pid == r.pid)
                        .order_by(Trial.position)
                    )
                ]
        return rows

    first, again, other = answers(7), answers(7), answers(8)
    assert first == again and first != other
    assert len({label for label, _ in first}) > 1  # not one fixed answer


def test_delete_test_participants_removes_them_with_their_trials_and_nothing_else(
    client, app, db, make_study
) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="cleanup", trials=2, pool=3)
    other = make_study(db, slug="other-study", trials=2, pool=3, seed=1)
    _bots(app, slug, 4, RandomResponder())
    _bots(app, other, 2, RandomResponder())
    client.get(pilots.preview_url(app.state.settings.secret_key, slug))
    walk(client, enter_real(client, slug, "1" * 24))
    with db.session() as s:
        before = {m: s.scalar(select(func.count()).select_from(m)) for m in (Participant, Trial, Stimulus, Study)}
        real_trials = s.execute(
            select(Trial.id, Trial.response_label).join(Participant).where(Participant.is_test.is_(False))
        ).all()
        deleted = pilots.delete_test_participants(s, get_study(s, slug))
    assert (deleted.participants, deleted.trials) == (5, 10)
    with db.session() as s:
        after = {m: s.scalar(select(func.count()).select_from(m)) for m in (Participant, Trial, Stimulus, Study)}
        assert after == {**before, Participant: before[Participant] - 5, Trial: before[Trial] - 10}
        assert s.execute(
            select(Trial.id, Trial.response_label).join(Participant).where(Participant.is_test.is_(False))
        ).all() == real_trials
        assert pilots.count_test_participants(s, get_study(s, other)).bot == 2  # another study's are kept
        assert pilots.count_test_participants(s, get_study(s, slug)).total == 0


def test_real_stimulus_balance_ignores_test_participants(client, app, db, make_study) -> None:  # type: ignore[no-untyped-def]
    """Bots shown the same stimuli over and over do not push those stimuli away from real participants."""
    slug = make_study(db, slug="balance", trials=2, pool=4, conditions=("CB",), target=50)
    _bots(app, slug, 6, RandomResponder())
    seen: dict[int, int] = {}
    for i in range(6):
        enter_real(client, slug, f"{i + 1:024x}")
    with db.session() as s:
        for stim in s.scalars(
            select(Trial.stimulus_id).join(Participant).where(Participant.is_test.is_(False))
        ):
            seen[stim] = seen.get(stim, 0) + 1
    assert sorted(seen.values()) == [3, 3, 3, 3]  # 6 real x 2 trials spread evenly over 4, as if no bots came


def test_bots_pass_a_screen_check_with_the_window_width_they_declare(app, db, make_study) -> None:  # type: ignore[no-untyped-def]
    # A study with min_viewport_width serves a screen check (a GET form) before assignment: bots send it with
    # their declared width, and a width below the minimum is refused as it would be for a person.
    slug = make_study(db, slug="wide-only", trials=2, pool=3, extra="min_viewport_width = 800\n")
    with db.session() as s:
        truth = truth_by_public_id(s, get_study(s, slug))
    results = _bots(app, slug, 3, TruthResponder(truth))
    assert all(r.finished and r.error is None for r in results), [r.error for r in results]
    assert all(r.answers == 2 for r in results)
    assert sorted(p.test_kind for p in participants(db, slug)) == ["bot"] * 3
    token = pilots.mint_test_token(app.state.settings.secret_key, slug, "bot")
    transport = httpx.ASGITransport(app=app)
    with pytest.raises(BotRunError, match=r"needs a larger screen.*799 px wide: pass a larger --viewport-width"):
        run_bots("http://lpstudy.test", slug, 2, TruthResponder(truth), token, transport=transport, viewport_width=799)
    assert len(participants(db, slug)) == 3  # the refused bot stored nothing
