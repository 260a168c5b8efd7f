"""The admin dashboard in real Chromium against a real server and a fake Prolific API on 127.0.0.1: log in, upload a
study config, activate it, open the gallery and exclude a stimulus, run a `lpstudy bots` pilot and read the results,
download the participants CSV and the report, and approve a real participant's submission through Prolific."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from app.admin.auth import create_user
from app.config import Settings
from app.db import Database, upgrade
from app.models import Stimulus
from tests.e2e.test_browser import CHROMIUM, REPO, _browser
from tests.fake_prolific import FakeProlific
from tests.servers import server_env, start_uvicorn, stop_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing"),
]
EMAIL, PASSWORD = "lab@example.org", "a long admin password"
PSTUDY = "64" * 12
PID = "5f0c1a2b3c4d5e6f708192a3"
TOML = """slug = "browser-l0"
title = "Browser dashboard study"
dataset = "mnist"
norm = "l0"
trials_per_participant = 3
conditions = ["CB", "CAI", "CAP"]
participants_per_condition = 20
timeout_minutes = 30

[completion_codes]
completed = "BRDONE1"
no_consent = "BRNOCONS"
failed_attention = "BRFAIL1"

[texts]
consent = "Consent for the browser test."
instructions = "Pick the digit."
"""


def _import_pool(db: Database) -> None:
    """As `lpstudy stimuli import` would: 5 images per condition (CAI/CAP within the L0 budget of their CB)."""
    from app.stimuli.service import add_stimulus
    from app.studies.service import get_study

    rng = np.random.default_rng(3)
    with db.session() as s:
        study = get_study(s, "browser-l0")
        base = [rng.integers(0, 256, size=(28, 28), dtype=np.uint8) for _ in range(5)]
        for cond in study.conditions:
            for i, img in enumerate(base):
                px = img.copy()
                if cond.code != "CB":
                    px[0, : 5 + i] = 255 - px[0, : 5 + i]
                add_stimulus(
                    s,
                    study,
                    cond,
                    image_index=i,
                    label=i,
                    pixels=px,
                    extra={"l0": 0 if cond.code == "CB" else 5 + i, "model_pred": (i + 1) % 10},
                )


def test_the_dashboard_end_to_end(tmp_path: Path, wait_http_up) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    upgrade(url)
    db = Database(Settings(env="test", database_url=url, secret_key="d" * 40))
    with db.session() as s:
        create_user(s, EMAIL, PASSWORD)
    fake = FakeProlific().start()
    env = server_env(url, "d" * 40, LPSTUDY_PROLIFIC_API_TOKEN=fake.token, LPSTUDY_PROLIFIC_API_URL=fake.url)
    proc, base = start_uvicorn(env)
    try:
        wait_http_up(proc, base, 30)
        config = tmp_path / "browser-l0.toml"
        config.write_text(TOML)
        with _browser(viewport={"width": 1280, "height": 1000}, accept_downloads=True) as page:
            # log in
            page.goto(f"{base}/admin")
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_label("Password").fill(PASSWORD)
            with page.expect_navigation():
                page.get_by_role("button", name="Log in").click()
            assert page.url == f"{base}/admin"
            # upload the study config
            page.goto(f"{base}/admin/new-study")
            page.set_input_files('input[name="config"]', str(config))
            with page.expect_navigation():
                page.get_by_role("button", name="Create from file").click()
            assert page.url == f"{base}/admin/studies/browser-l0"
            assert page.locator("strong.status").inner_text() == "draft"
            _import_pool(db)
            page.reload()
            assert page.locator("ol.phases li.current").inner_text() == "ready"
            with page.expect_navigation():
                page.locator('tr[data-action="activate"] button').click()
            assert page.locator("strong.status").inner_text() == "active"
            # Prolific set-up: the absolute URL with placeholders, and a copy button
            page.goto(f"{base}/admin/studies/browser-l0/setup")
            assert (
                page.locator("#study-url")
                .input_value()
                .startswith(f"{base}/s/browser-l0?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}")
            )
            # the gallery: exclude the CAI stimulus of source image 2
            page.goto(f"{base}/admin/studies/browser-l0/stimuli")
            cell = page.locator('tr[data-image="2"] td[data-condition="CAI"] .cell').first
            assert cell.locator("img").count() == 3
            cell.locator('form.exclude:not(.replace-form) input[name="reason"]').fill("pixels at the border look odd")
            with page.expect_navigation():
                cell.get_by_role("button", name="Exclude").click()
            assert "excluded" in (
                page.locator('tr[data-image="2"] td[data-condition="CAI"] .cell').first.get_attribute("class") or ""
            )
            with db.session() as s:
                assert s.scalar(select(Stimulus.excluded_reason).where(Stimulus.excluded_at.is_not(None))) == (
                    "pixels at the border look odd"
                )
            # a real participant, from "Prolific"
            page.goto(f"{base}/s/browser-l0?PROLIFIC_PID={PID}&STUDY_ID={PSTUDY}&SESSION_ID={'7a' * 12}")
            with page.expect_navigation():
                page.get_by_role("button", name="I agree to take part").click()
            with page.expect_navigation():
                page.get_by_role("button", name="Start").click()
            for _ in range(3):
                page.locator('label:has(input[name="label"])').first.click()
                page.locator('label:has(input[name="confidence"])').nth(3).click()
                with page.expect_navigation():
                    page.locator('form#trial-form button[type="submit"]').click()
            page.get_by_label("Age").fill("33")
            for name in ("gender", "student", "employment"):
                page.locator(f'select[name="{name}"]').select_option(index=1)
            page.route("https://app.prolific.com/**", lambda r: r.fulfill(status=200, body="Prolific"))
            with page.expect_navigation():
                page.locator("form button[type=submit]").last.click()
            # a bots pilot (test participants), then the results in the pilot view
            bots = subprocess.run(
                [sys.executable, "-m", "app.cli", "bots", "browser-l0", "-n", "6", "--base-url", base,
                 "--database-url", url], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert bots.returncode == 0, bots.stdout + bots.stderr
            page.goto(f"{base}/admin/studies/browser-l0/results")
            assert page.locator("p.provisional").count() == 1
            assert sum(int(t) for t in page.locator("table.exclusions td.included").all_inner_texts()) == 1
            page.get_by_role("link", name="Include test participants (pilot view)").click()
            assert sum(int(t) for t in page.locator("table.exclusions td.included").all_inner_texts()) == 7
            assert page.locator(".figures img").count() >= 3
            with page.expect_download() as report:
                page.get_by_role("link", name="HTML report").click()
            assert "Pilot view" in Path(report.value.path()).read_text()
            # the participants CSV
            page.goto(f"{base}/admin/studies/browser-l0/participants")
            assert page.locator("table.participants tr[data-pid]").count() == 7
            with page.expect_download() as csv_file:
                page.get_by_role("link", name="Download CSV of this table").click()
            lines = Path(csv_file.value.path()).read_text().splitlines()
            assert len(lines) == 8 and lines[0].startswith("prolific_pid,condition,status")
            # approve through the (fake) Prolific API
            fake.add(PSTUDY, PID, code="BRDONE1")
            page.goto(f"{base}/admin/studies/browser-l0/prolific")
            assert page.locator(f'tr[data-pid="{PID}"] td.there').inner_text() == "AWAITING REVIEW"
            with page.expect_navigation():
                page.get_by_role("link", name="Approve 1…").click()
            assert page.locator("table.affected td code").first.inner_text() == PID
            with page.expect_navigation():
                page.get_by_role("button", name="Approve these 1 submissions").click()
            assert "Approved 1 submission" in page.locator("p.notice").inner_text()
            assert fake.status_of(PID) == "APPROVED"
            # and the audit log has it all
            page.goto(f"{base}/admin/audit")
            actions = page.locator("table.audit td code").all_inner_texts()
            for a in ("study.create", "study.activate", "stimulus.exclude", "prolific.approve"):
                assert a in actions
    finally:
        stop_server(proc)
        fake.stop()
        db.dispose()
