"""Done when (issue 8, item 4), against a real server process on SQLite and PostgreSQL: an admin's preview, a
`lpstudy bots` pilot of 30 and one real participant leave the recruitment counts and the default export as if
only the real participant had come; the test participants can then be deleted, with nothing else."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.admin import auth
from app.bots.pages import attention_target, parse
from app.config import Settings
from app.db import Database, upgrade
from app.models import Participant, Stimulus, Trial
from tests.databases import new_pg_database
from tests.servers import REPO, uvicorn_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BACKENDS = [b for b in os.environ.get("LPSTUDY_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
SECRET = "pilot-secret-" + "k" * 40
EMAIL, PASSWORD = "pilot@example.org", "a long enough password"
SLUG = "pilot-study"
REAL_PID = "5" * 24


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPSTUDY_")}
    return {**env, "PYTHONPATH": str(REPO), "LPSTUDY_DATABASE_URL": url, "LPSTUDY_ENV": "test",
            "LPSTUDY_SECRET_KEY": SECRET}


def lpstudy(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "lpstudy"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    return subprocess.run([*cmd, *args], cwd=REPO, env=_env(url), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory, make_study) -> Iterator[tuple[Database, str, str]]:  # type: ignore[no-untyped-def]
    """(Database, database URL, server base URL): a fresh database with an active study, one uvicorn process."""
    with ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(new_pg_database("lpstudy_pilot_"))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('pilot') / 'pilot.db'}"
        upgrade(url)
        db = Database(Settings(env="test", database_url=url, secret_key=SECRET))
        stack.callback(db.dispose)
        make_study(db, slug=SLUG, trials=3, pool=6, target=1, extra="[attention_checks]\npositions = [1, 3]\n")
        with db.session() as s:
            auth.create_user(s, EMAIL, PASSWORD)
        base = stack.enter_context(uvicorn_server(_env(url)))
        yield db, url, base


def walk(client: httpx.Client, r: httpx.Response, stop_after_trials: int | None = None) -> httpx.Response:
    """Follow a participant's pages by their forms (label 0 on every image), to the end or after some trials."""
    trials = 0
    for _ in range(100):
        assert r.status_code == 200, r.text[:300]
        page = parse(r.text, str(r.url))
        if page.kind == "finish" or (stop_after_trials is not None and trials >= stop_after_trials):
            return r
        assert page.action, r.text[:300]
        data = {"consent": "yes"} if page.kind == "consent" else {}
        if page.kind == "trial":
            label = "0" if page.image_url else attention_target(page)  # a person follows the check's instruction
            data, trials = {"label": label or "0", "confidence": "4", "rt_ms": "1200"}, trials + 1
        if page.kind == "demographics":
            data = {"age": "41", "gender": "male", "student": "no", "employment": "part-time"}
        r = client.post(page.action, data=data)
    raise AssertionError("no finish page")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_preview_bots_and_a_real_participant_leave_counts_and_export_as_if_only_the_real_one_came(
    server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    db, url, base = server
    # 1. an admin opens the preview link from the study page and walks part of the way (it stays active)
    with httpx.Client(base_url=base) as admin:
        login = admin.get("/admin/login")
        csrf = HTMLParser(login.text).css_first('input[name="csrf_token"]').attributes["value"]
        r = admin.post("/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf})
        assert r.status_code == 303
        html = admin.get(f"/admin/studies/{SLUG}").text
    link = HTMLParser(html).css_first('a.preview-link[data-condition="as assigned"]').attributes["href"]
    with httpx.Client(base_url=base, follow_redirects=True) as browser:
        r = walk(browser, browser.get(link), stop_after_trials=2)
        assert HTMLParser(r.text).css_first(".test-banner") is not None

    # 2. a pilot of 30 bots through the real forms, answering the truth
    bots = lpstudy(url, "bots", SLUG, "-n", "30", "--base-url", base, "--responder", "truth", "-c", "4")
    assert bots.returncode == 0, bots.stderr[-2000:]
    assert "30 of 30 bots finished 'pilot-study' (truth responder, seed 0); marked as test." in bots.stdout
    summary = [line for line in bots.stdout.splitlines() if line.startswith("  C")]
    per_condition = [int(line.split(": ")[1].split(" bots")[0]) for line in summary]
    assert len(summary) == 3 and sum(per_condition) == 30, bots.stdout
    assert max(per_condition) - min(per_condition) <= 2, bots.stdout  # balanced among the 31 test participants
    for line, n in zip(summary, per_condition, strict=True):
        assert f"{n} bots, completed {n}, failed attention 0, image accuracy 100% ({3 * n}/{3 * n})" in line

    # 3. one real participant, all the way
    with httpx.Client(base_url=base, follow_redirects=True) as person:
        r = person.get(f"/s/{SLUG}", params={"PROLIFIC_PID": REAL_PID, "STUDY_ID": "a" * 24, "SESSION_ID": "b" * 24})
        done = walk(person, r)
        assert parse(done.text, str(done.url)).completion_code == "CDONE1"

    # the counts: one completed real participant (target 1 each: 31 test participants took no slot)
    listing = lpstudy(url, "study", "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    conds = [line for line in lines if line.startswith("  C")]
    assert sorted(", ".join(line.split(", ")[1:]) for line in conds) == sorted(
        ["target 1, active 0, completed 0, timed out 0"] * 2 + ["target 1, active 0, completed 1, timed out 0"]
    ), listing.stdout
    assert "  test participants (not counted): 1 preview, 30 bot" in lines
    status = lpstudy(url, "study", "status", SLUG)
    assert "test participants (not counted): 1 preview, 30 bot" in status.stdout
    assert sum(" completed 1 of 1," in line for line in status.stdout.splitlines()) == 1, status.stdout

    # the default export is the real participant alone, exactly the real rows of the full export
    assert lpstudy(url, "export", "--study", SLUG, "--out", str(tmp_path / "default")).returncode == 0
    full = lpstudy(url, "export", "--study", SLUG, "--out", str(tmp_path / "full"), "--include-test")
    # 30 bots x 5 answers, the real 5, the preview 2
    assert full.returncode == 0 and "Wrote 157 trials and 32 participants" in full.stdout, full.stdout
    for name in ("participants.csv", "trials.csv"):
        default = read_csv(tmp_path / "default" / name)
        real_rows = [
            {k: v for k, v in row.items() if k not in ("is_test", "test_kind")}
            for row in read_csv(tmp_path / "full" / name)
            if row["is_test"] == "0"
        ]
        assert default == real_rows and {row["prolific_pid"] for row in default} == {REAL_PID}
        assert "is_test" not in default[0]
    assert len(read_csv(tmp_path / "default" / "trials.csv")) == 5  # 3 images + 2 attention checks

    # 4. delete the test participants: their trials go with them, nothing else changes
    with db.session() as s:
        before = {m.__name__: s.scalar(select(func.count()).select_from(m)) for m in (Participant, Trial, Stimulus)}
    gone = lpstudy(url, "participants", "delete-test", SLUG, "--yes")
    assert gone.returncode == 0, gone.stderr
    deleted_trials = before["Trial"] - 5
    assert gone.stdout.strip() == f"Deleted 31 test participant(s) and {deleted_trials} trial(s) of '{SLUG}'."
    with db.session() as s:
        after = {m.__name__: s.scalar(select(func.count()).select_from(m)) for m in (Participant, Trial, Stimulus)}
        assert after == {"Participant": 1, "Trial": 5, "Stimulus": before["Stimulus"]}
        assert s.scalar(select(Participant.prolific_pid)) == REAL_PID
    assert lpstudy(url, "export", "--study", SLUG, "--out", str(tmp_path / "after")).returncode == 0
    for name in ("participants.csv", "trials.csv"):
        assert read_csv(tmp_path / "after" / name) == read_csv(tmp_path / "default" / name)
    again = lpstudy(url, "participants", "delete-test", SLUG, "--yes")
    assert again.stdout.strip() == f"Study '{SLUG}' has no test participants."


def test_bots_refused_by_a_server_with_another_secret_is_one_line(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _db, url, base = server
    env_url = url
    script = Path(sys.executable).parent / "lpstudy"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    r = subprocess.run(
        [*cmd, "bots", SLUG, "-n", "3", "--base-url", base],
        cwd=tmp_path, env={**_env(env_url), "LPSTUDY_SECRET_KEY": "another-" + "z" * 40},
        capture_output=True, text=True, timeout=120,
    )
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert r.returncode == 1 and len(errors) == 1, r.stderr
    assert "the server refused the bots' test token: it runs with another LPSTUDY_SECRET_KEY" in errors[0]
