#!/usr/bin/env python3
"""Screenshots of every dashboard page, from the real pages, for docs/dashboard.md (a tool, not a benchmark).

Builds a throw-away SQLite study (the paper's L0 design at a small size: real MNIST test digits when the shared
data is there, else synthetic; CAI/CAP with a few changed pixels), serves it with uvicorn, walks real participants
through it with httpx, adds a `lpstudy bots` pilot, a fake Prolific API (tests/fake_prolific.py) with their
submissions, excludes a stimulus, then logs in with Chromium and saves docs/img/dashboard/<page>.png.

  .venv/bin/python bench/dashboard_screenshots.py [--out docs/img/dashboard]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SLUG = "paper-l0-small"
EMAIL, PASSWORD = "researcher@example.org", "screenshots only 123"
PSTUDY = "65" * 12
TOML = f"""slug = "{SLUG}"
title = "Which digit is this? (L0, small)"
dataset = "mnist"
norm = "l0"
trials_per_participant = 6
conditions = ["CB", "CAI", "CAP"]
participants_per_condition = 25
timeout_minutes = 30

[completion_codes]
completed = "C1A2B3DONE"
no_consent = "C9NOCONSENT"
failed_attention = "C7ATTENTION"

[attention_checks]
count = 2
fail_threshold = 2

[texts]
consent = "You will label a few handwritten digits. It takes two minutes."
instructions = "Pick the digit you see and how confident you are."
"""
CHROMIUM = "/usr/bin/chromium"
PAGES = [
    ("login", "/admin/login", False),
    ("studies", "/admin", True),
    ("new-study", "/admin/new-study", True),
    ("study", f"/admin/studies/{SLUG}", True),
    ("prolific-setup", f"/admin/studies/{SLUG}/setup", True),
    ("stimuli", f"/admin/studies/{SLUG}/stimuli", True),
    ("recruitment", f"/admin/studies/{SLUG}/recruitment", True),
    ("participants", f"/admin/studies/{SLUG}/participants", True),
    ("delete-test", f"/admin/studies/{SLUG}/participants/delete-test", True),
    ("results", f"/admin/studies/{SLUG}/results", True),
    ("prolific", f"/admin/studies/{SLUG}/prolific?study_id={PSTUDY}", True),
    ("prolific-approve", f"/admin/studies/{SLUG}/prolific/approve?study_id={PSTUDY}", True),
    ("edit", f"/admin/studies/{SLUG}/edit", True),
    ("admins", "/admin/users", True),
    ("audit", "/admin/audit", True),
]


def digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    for cand in (os.environ.get("LPSTUDY_DATA_DIR"), str(REPO.parent / "shared" / "data")):
        if cand and Path(cand).is_dir():
            try:
                from workers.data.datasets import load_mnist

                x, y = load_mnist(cand, "test")
                return x[:n], y[:n]
            except Exception:  # noqa: BLE001 - no usable copy: synthetic
                pass
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), np.arange(n) % 10


def build(url: str) -> None:
    from app.admin.auth import create_user
    from app.config import Settings
    from app.db import Database, upgrade
    from app.stimuli.service import add_stimulus
    from app.studies.service import activate_study, create_study

    upgrade(url)
    db = Database(Settings(database_url=url))
    x, y = digits(8)
    rng = np.random.default_rng(2)
    with db.session() as s:
        create_user(s, EMAIL, PASSWORD)
        create_user(s, "colleague@example.org", PASSWORD)
        study = create_study(s, TOML)
        for cond in study.conditions:
            for i in range(len(x)):
                px = x[i].copy()
                k = {"CB": 0, "CAI": 12 + i, "CAP": 40 + 3 * i}[cond.code]
                idx = rng.choice(784, size=k, replace=False)
                px.reshape(-1)[idx] = 255 - px.reshape(-1)[idx]
                pred = int(y[i]) if cond.code == "CB" else int((y[i] + 3) % 10)
                m = {"l0": k, "l0_frac": k / 784, "model_pred": pred, "model_conf": 0.97, "ssim": 1 - k / 400}
                add_stimulus(s, study, cond, image_index=i, label=int(y[i]), pixels=px, extra=m)
        s.flush()
        activate_study(s, study)
    db.dispose()


def truth(url: str) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///")) as c:
        return dict(c.execute("SELECT public_id, label FROM stimuli").fetchall())


def walk(base: str, pid: str, right: float, labels: dict[str, int]) -> None:
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as c:
        r = c.get(f"/s/{SLUG}", params={"PROLIFIC_PID": pid, "STUDY_ID": PSTUDY, "SESSION_ID": "7b" * 12})
        url = r.headers["location"]
        c.post(f"{url}/consent", data={"consent": "yes"})
        c.post(f"{url}/instructions")
        for _ in range(12):
            page = c.get(url).text
            m = re.search(r'<form[^>]*id="trial-form"[^>]*>', page)
            if not m:
                break
            action = re.search(r'action="([^"]+)"', m.group(0))
            expected = re.search(r"<legend>[^<]*<strong>(\d)</strong>", page)
            img = re.search(r'src="/img/([^"]+)"', page)
            true = labels.get(img.group(1), 0) if img else 0
            label = expected.group(1) if expected else str(true if random.random() < right else (true + 1) % 10)
            c.post(action.group(1) if action else url, data={"label": label, "confidence": str(random.randint(2, 5))})
        c.post(f"{url}/demographics", data={"age": str(random.randint(20, 60)), "gender": "female", "student": "no",
                                            "employment": "other"})  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "dashboard")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.fake_prolific import FakeProlific

    random.seed(4)
    args.out.mkdir(parents=True, exist_ok=True)
    fake = FakeProlific().start()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/shots.db"
        build(url)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(REPO), "LPSTUDY_DATABASE_URL": url, "LPSTUDY_SECRET_KEY": "s" * 40,
               "LPSTUDY_PROLIFIC_API_TOKEN": fake.token, "LPSTUDY_PROLIFIC_API_URL": fake.url,
               "LPSTUDY_PUBLIC_BASE_URL": "https://study.example.org", "LPSTUDY_LOG_LEVEL": "WARNING"}  # fmt: skip
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.asgi:app", "--port", str(port),
                                   "--log-level", "warning"], cwd=REPO, env=env, start_new_session=True)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            pids = ["".join(random.choice("0123456789abcdef") for _ in range(24)) for _ in range(9)]
            labels = truth(url)
            for i, pid in enumerate(pids):
                walk(base, pid, right=0.85, labels=labels)
                fake.add(PSTUDY, pid, status="AWAITING REVIEW" if i < 7 else "RETURNED", code="C1A2B3DONE")
            fake.add(PSTUDY, "ab" * 12, code="C1A2B3DONE")  # submitted on Prolific, never seen here
            subprocess.run([sys.executable, "-m", "app.cli", "bots", SLUG, "-n", "3", "--base-url", base,
                            "--database-url", url], cwd=REPO, env=env, check=True, capture_output=True)  # fmt: skip
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                             "--disable-gpu"])  # fmt: skip
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{base}/admin/login")
                page.get_by_label("Email").fill(EMAIL)
                page.get_by_label("Password").fill(PASSWORD)
                page.screenshot(path=str(args.out / "login.png"))
                with page.expect_navigation():
                    page.get_by_role("button", name="Log in").click()
                # an exclusion, so that the gallery and the audit log show one
                page.goto(f"{base}/admin/studies/{SLUG}/stimuli")
                cell = page.locator('tr[data-image="3"] td[data-condition="CAP"] .cell').first
                cell.locator('form.exclude:not(.replace-form) input[name="reason"]').fill("stray stroke looks drawn")
                with page.expect_navigation():
                    cell.get_by_role("button", name="Exclude").click()
                # the Prolific study id, saved on the set-up panel (the field suggests the participants' STUDY_ID),
                # so that the recruitment page shows Prolific's statuses
                page.goto(f"{base}/admin/studies/{SLUG}/setup")
                page.locator("#prolific-study-id").fill(PSTUDY)
                with page.expect_navigation():
                    page.locator("form.prolific-id").get_by_role("button", name="Save").click()
                for name, path, _auth in PAGES[1:]:
                    page.goto(base + path)
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)
                    print(f"{name}: {path}")  # noqa: T201
                browser.close()
        finally:
            os.killpg(server.pid, 15)
            server.wait(10)
            fake.stop()


if __name__ == "__main__":
    main()
