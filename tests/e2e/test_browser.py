"""One real participant in real Chromium: the Prolific link to the completion redirect, against a real server.

A uvicorn subprocess serves a migrated SQLite file whose study holds real MNIST test digits when the shared data
is present (LPSTUDY_DATA_DIR or ../shared/data), else synthetic 28x28 images. The browser walks consent,
instructions, every trial (labels chosen with the keys 1-9 and 0), confidence and demographics, and is sent on
to Prolific, which is intercepted. A screenshot of a trial page proves the 4x image is drawn as sharp 4x4 blocks
that match the source PNG's pixels, and the reaction times measured in the browser are checked in the database.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from app.config import Settings
from app.db import Database, upgrade
from app.models import Participant, Stimulus, Trial

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (install Debian's chromium package)"
    ),
]

REPO = Path(__file__).resolve().parents[2]
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TRIALS = 10  # keys 1..9 then 0: every label key once
PID = "5f0c1a2b3c4d5e6f708192a3"
STUDY_ID = "60aa11bb22cc33dd44ee55ff"
SESSION_ID = "70ff00ee11dd22cc33bb44aa"
COMPLETE = "https://app.prolific.com/submissions/complete?cc=CDONE1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _digits(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """n real MNIST test digits when the shared data is there, else synthetic images."""
    env = os.environ.get("LPSTUDY_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if not cand.is_dir():
            continue
        try:
            from workers.data.datasets import load_mnist

            images, labels = load_mnist(cand, "test")
        except Exception:  # noqa: BLE001 - any missing or unreadable copy: try the next, then synthesise
            continue
        return images[:n], labels[:n], "mnist"
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), np.arange(n) % 10, "synthetic"


@pytest.fixture
def server(tmp_path: Path, toml_for, wait_http_up) -> Iterator[tuple[str, Database, str]]:  # type: ignore[no-untyped-def]
    """(base URL, Database, source of the digits) for a live uvicorn on a migrated SQLite file."""
    from app.stimuli.service import add_stimulus
    from app.studies.service import activate_study, create_study

    url = f"sqlite:///{tmp_path / 'browser.db'}"
    upgrade(url)
    settings = Settings(env="test", database_url=url, data_dir=tmp_path / "data", secret_key="b" * 40)
    db = Database(settings)
    images, labels, source = _digits(12)
    with db.session() as s:
        study = create_study(s, toml_for(slug="browser-study", trials=TRIALS, conditions=("CB",), target=5))
        cond = study.conditions[0]
        for i in range(len(labels)):
            add_stimulus(s, study, cond, image_index=i, label=int(labels[i]), pixels=images[i], extra={"l0": 0})
        s.flush()
        activate_study(s, study)

    port = _free_port()
    env = {**os.environ, "LPSTUDY_DATABASE_URL": url, "LPSTUDY_ENV": "test", "LPSTUDY_SECRET_KEY": "b" * 40}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.asgi:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http_up(proc, base, 30)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield base, db, source
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        db.dispose()


def _assert_sharp_4x(shot: bytes, box: dict, png: bytes) -> None:
    """Every 4x4 block of the drawn 4x image is uniform and equals the source pixel (nearest neighbour)."""
    src = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
    h, w = src.shape
    x, y = round(box["x"]), round(box["y"])
    assert abs(box["x"] - x) < 0.01 and abs(box["y"] - y) < 0.01, f"the image is not on whole pixels: {box}"
    assert (round(box["width"]), round(box["height"])) == (4 * w, 4 * h), box
    rgb = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=np.int16)
    crop = rgb[y : y + 4 * h, x : x + 4 * w]
    assert crop.shape == (4 * h, 4 * w, 3), f"the 4x image is not fully on screen: {crop.shape}"
    # Grey source drawn grey: the three channels agree.
    assert np.array_equal(crop[..., 0], crop[..., 1]) and np.array_equal(crop[..., 0], crop[..., 2])
    grey = crop[..., 0]
    blocks = grey.reshape(h, 4, w, 4).transpose(0, 2, 1, 3).reshape(h, w, 16)
    spread = blocks.max(axis=2) - blocks.min(axis=2)
    assert int(spread.max()) == 0, f"{int((spread > 0).sum())} of {h * w} 4x4 blocks are not uniform (blurred)"
    diff = np.abs(blocks[..., 0] - src)
    assert int(diff.max()) <= 1, f"blocks differ from the source pixels by up to {int(diff.max())}"
    # and the image has real structure, so the checks above are not vacuous
    assert len(np.unique(src)) > 10


def test_participant_walks_from_prolific_link_to_completion_redirect(server, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    base, db, source = server
    t_start = time.monotonic()
    redirected: list[str] = []

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
            page = context.new_page()
            page.set_default_timeout(15_000)

            def prolific(route) -> None:  # type: ignore[no-untyped-def]
                redirected.append(route.request.url)
                route.fulfill(status=200, content_type="text/html", body="<html><body>Prolific</body></html>")

            page.route("https://app.prolific.com/**", prolific)

            def where() -> tuple[str, int]:
                main = page.locator("main#page")
                return main.get_attribute("data-page") or "", int(main.get_attribute("data-round") or 0)

            page.goto(f"{base}/s/browser-study?PROLIFIC_PID={PID}&STUDY_ID={STUDY_ID}&SESSION_ID={SESSION_ID}")
            assert where() == ("consent", 0)
            token_url = page.url
            assert token_url.startswith(f"{base}/p/")
            page.get_by_role("button", name="I agree to take part").click()
            page.wait_for_load_state()
            assert where() == ("instructions", 0)
            page.get_by_role("button", name="Start").click()
            page.wait_for_load_state()

            keys = [str((i + 1) % 10) for i in range(TRIALS)]  # "1".."9", "0": labels 0..9
            for i, key in enumerate(keys):
                page.wait_for_selector("main#page[data-page=trial]")
                assert where() == ("trial", i + 1)
                imgs = page.locator("div.stimulus img")
                assert imgs.count() == 3
                page.wait_for_function(
                    "() => [...document.querySelectorAll('div.stimulus img')].every(i => i.complete && i.naturalWidth)"
                )
                if i == 0:
                    img4 = page.locator('div.stimulus img[data-scale="4"]')
                    rendering = img4.evaluate("el => getComputedStyle(el).imageRendering")
                    assert rendering in ("pixelated", "crisp-edges"), rendering  # both: nearest neighbour
                    box = img4.bounding_box()
                    assert box is not None
                    shot = page.screenshot()
                    (tmp_path / "trial.png").write_bytes(shot)
                    resp = context.request.get(base + (img4.get_attribute("src") or ""))
                    assert resp.ok and resp.headers["content-type"] == "image/png"
                    _assert_sharp_4x(shot, box, resp.body())
                page.wait_for_timeout(30)  # a measurable reaction time
                page.keyboard.press(key)  # the keyboard shortcut picks the label
                label_input = page.locator(f'input[name="label"][value="{(int(key) - 1) % 10}"]')
                assert label_input.is_checked()
                page.locator('input[name="confidence"][value="4"]').check()
                with page.expect_navigation():
                    page.get_by_role("button", name="Next").click()

            assert where() == ("demographics", 0)
            page.fill('input[name="age"]', "34")
            page.select_option('select[name="gender"]', "female")
            page.select_option('select[name="student"]', "no")
            page.select_option('select[name="employment"]', "part-time")
            page.get_by_role("button", name="Finish").click()
            page.wait_for_selector("main#page[data-page=finish]")
            assert page.locator("a#complete-link").get_attribute("href") == COMPLETE
            # The completion page forwards to Prolific by itself (meta refresh), no click needed.
            page.wait_for_url("https://app.prolific.com/**", timeout=10_000)
            assert page.url == COMPLETE
        finally:
            browser.close()

    assert redirected and redirected[-1] == COMPLETE
    with db.session() as s:
        p = s.scalar(select(Participant).where(Participant.prolific_pid == PID))
        assert p is not None and p.status == "completed"
        assert (p.prolific_study_id, p.prolific_session_id) == (STUDY_ID, SESSION_ID)
        assert (p.age, p.gender, p.student, p.employment) == (34, "female", "no", "part-time")
        trials = s.scalars(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)).all()
        assert [t.response_label for t in trials] == list(range(TRIALS))
        assert all(t.confidence == 4 for t in trials)
        # reaction times measured in the browser were stored, and are plausible
        rts = [t.rt_ms for t in trials]
        assert all(rt is not None and 30 <= rt < 60_000 for rt in rts), rts
        for t in trials:
            assert t.shown_at is not None and t.answered_at is not None and t.answered_at >= t.shown_at
        assert len({t.stimulus_id for t in trials}) == TRIALS
        assert s.scalar(select(Stimulus.id).where(Stimulus.id == trials[0].stimulus_id)) is not None
    assert time.monotonic() - t_start < 60, f"the browser walk took {time.monotonic() - t_start:.1f} s ({source})"
