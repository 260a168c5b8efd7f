"""Real participants in real Chromium, against a real server (uvicorn on a migrated SQLite file).

- The demo study (its own config: 25 images, 2 attention checks) walked with the keyboard only: every digit key
  selects the radio whose visible text is that digit, the confidence keys shown on the page select their
  levels, Enter goes on; the database holds exactly the digits pressed and both attention checks are passed.
  A screenshot proves the 4x image is drawn as sharp 4x4 blocks that match the source PNG's pixels.
- CIFAR-10: every label's key (the one shown next to it) selects that label; Enter does nothing until a label
  and a confidence are chosen.
- A phone (touch, 390 px wide): no key hints, and the page fits the screen.
Images are real MNIST / CIFAR-10 test images when the shared data is present, else synthetic.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import delete, select

from app.config import Settings
from app.db import Database, upgrade
from app.demo.service import demo_config
from app.exports import export_results
from app.models import Participant, Stimulus, Study, Trial
from app.studies.schema import DEFAULT_LABELS, parse_study_config
from tests.servers import server_env, start_uvicorn, stop_server

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (install Debian's chromium package)"
    ),
]

REPO = Path(__file__).resolve().parents[2]
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PID = "5f0c1a2b3c4d5e6f708192a3"
STUDY_ID = "60aa11bb22cc33dd44ee55ff"
SESSION_ID = "70ff00ee11dd22cc33bb44aa"
DEMO_COMPLETE = "https://app.prolific.com/submissions/complete?cc=DEMOC0MPLETE"


def _data_dirs() -> list[Path]:
    env = os.environ.get("LPSTUDY_DATA_DIR")
    return [c for c in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"] if c.is_dir()]


def _images(dataset: str, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """n real test images when the shared data is there, else synthetic ones."""
    for cand in _data_dirs():
        try:
            from workers.data.datasets import load_cifar10, load_mnist

            images, labels = (load_mnist if dataset == "mnist" else load_cifar10)(cand, "test")
        except Exception:  # noqa: BLE001 - any missing or unreadable copy: try the next, then synthesise
            continue
        return images[:n], labels[:n], dataset
    rng = np.random.default_rng(7)
    shape = (n, 28, 28) if dataset == "mnist" else (n, 32, 32, 3)
    return rng.integers(0, 256, size=shape, dtype=np.uint8), np.arange(n) % 10, "synthetic"


@contextmanager
def _serve(
    tmp_path: Path, source: str, dataset: str, pool: int, wait_http_up: Callable
) -> Iterator[tuple[str, Database]]:
    """(base URL, Database) of a live uvicorn serving one active study made from `source`."""
    from app.stimuli.service import add_stimulus
    from app.studies.service import activate_study, create_study

    url = f"sqlite:///{tmp_path / 'browser.db'}"
    upgrade(url)
    settings = Settings(env="test", database_url=url, data_dir=tmp_path / "data", secret_key="b" * 40)
    db = Database(settings)
    images, labels, _source = _images(dataset, pool)
    with db.session() as s:
        study = create_study(s, source)
        for cond in study.conditions:
            for i in range(pool):
                add_stimulus(s, study, cond, image_index=i, label=int(labels[i]), pixels=images[i], extra={"l0": 0})
        s.flush()
        activate_study(s, study)
    proc, base = start_uvicorn(server_env(url, "b" * 40))
    try:
        try:
            wait_http_up(proc, base, 30)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield base, db
    finally:
        stop_server(proc)
        db.dispose()


@contextmanager
def _browser(**context_args: object) -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(**context_args)
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.route(
                "https://app.prolific.com/**",
                lambda route: route.fulfill(
                    status=200, content_type="text/html", body="<html><body>Prolific</body></html>"
                ),
            )
            yield page
        finally:
            browser.close()


def _where(page) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    main = page.locator("main#page")
    return main.get_attribute("data-page") or "", int(main.get_attribute("data-round") or 0)


def _option(page, name: str, text: str):  # type: ignore[no-untyped-def]
    """The <label> of radio group `name` whose visible text (without its key hint) is exactly `text`."""
    labels = page.locator(f'label:has(input[name="{name}"])').filter(
        has=page.locator("span.option-text", has_text=re.compile(rf"^{re.escape(text)}$"))
    )
    assert labels.count() == 1, f"{labels.count()} options of {name} read {text!r}"
    return labels


def _hint(option) -> str | None:  # type: ignore[no-untyped-def]
    """The key hint shown next to an option, or None when none is visible."""
    kbd = option.locator("kbd.key-hint")
    return kbd.inner_text() if kbd.count() and kbd.is_visible() else None


def _enter_study(page, base: str, slug: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/s/{slug}?PROLIFIC_PID={PID}&STUDY_ID={STUDY_ID}&SESSION_ID={SESSION_ID}")
    assert _where(page) == ("consent", 0)
    page.get_by_role("button", name="I agree to take part").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert _where(page) == ("instructions", 0)
    page.get_by_role("button", name="Start").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")


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
    assert len(np.unique(src)) >= 3 and src.min() != src.max()


def _demo_source() -> str:
    """The demo's own config, minus the worker's [generation] table (the test imports the images instead)."""
    source = demo_config()
    return source[: source.index("[generation]")] + source[source.index("[texts]") :]


def test_demo_walked_with_keys_only_records_the_digits_pressed(tmp_path: Path, wait_http_up) -> None:  # type: ignore[no-untyped-def]
    source = _demo_source()
    cfg = parse_study_config(source)
    n_images, checks = cfg.trials_per_participant, cfg.attention_positions()
    assert (n_images, len(checks)) == (25, 2)
    t_start = time.monotonic()
    pressed: list[tuple[int, int]] = []  # (digit, confidence) per image trial, in order
    with (
        _serve(tmp_path, source, "mnist", n_images, wait_http_up) as (base, db),
        _browser(viewport={"width": 1280, "height": 1000}, device_scale_factor=1) as page,
    ):
        _enter_study(page, base, cfg.slug)
        for i in range(cfg.total_trials):
            page.wait_for_selector("main#page[data-page=trial]")
            assert _where(page) == ("trial", i + 1)
            progress = page.locator("p.progress").inner_text()
            imgs = page.locator("div.stimulus img")
            if i in checks:
                assert imgs.count() == 0
                assert progress.startswith("Attention check"), progress
                digit = int(page.locator("fieldset.labels legend strong").inner_text())
            else:
                assert progress == f"Image {len(pressed) + 1} of {n_images}"
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
                    resp = page.context.request.get(base + (img4.get_attribute("src") or ""))
                    assert resp.ok and resp.headers["content-type"] == "image/png"
                    _assert_sharp_4x(shot, box, resp.body())
                digit = (7 * len(pressed) + 3) % 10  # every digit, in an order unlike the labels'
            page.wait_for_timeout(30)  # a measurable reaction time
            # Digit labels are their own keys: no badge next to "3", the key 3 selects "3".
            page.keyboard.press(str(digit))
            option = _option(page, "label", str(digit))
            assert _hint(option) is None
            assert option.locator("input").is_checked()
            assert page.locator('input[name="label"]:checked').count() == 1
            confidence = len(pressed) % 5 + 1
            conf_option = _option(page, "confidence", str(confidence))
            key = _hint(conf_option)
            assert key is not None and not key.isdigit(), f"confidence {confidence} shows key {key!r}"
            page.keyboard.press(key.lower())
            assert conf_option.locator("input").is_checked()
            assert _option(page, "label", str(digit)).locator("input").is_checked()  # the label key stayed put
            with page.expect_navigation():
                page.keyboard.press("Enter")
            if i not in checks:
                pressed.append((digit, confidence))

        assert _where(page) == ("demographics", 0)
        page.fill('input[name="age"]', "34")
        page.select_option('select[name="gender"]', "female")
        page.select_option('select[name="student"]', "no")
        page.select_option('select[name="employment"]', "part-time")
        page.get_by_role("button", name="Finish").click()
        page.wait_for_selector("main#page[data-page=finish]")
        assert page.locator("a#complete-link").get_attribute("href") == DEMO_COMPLETE
        page.wait_for_url("https://app.prolific.com/**", timeout=10_000)  # the meta refresh
        assert page.url == DEMO_COMPLETE

        with db.session() as s:
            p = s.scalar(select(Participant).where(Participant.prolific_pid == PID))
            assert p is not None and p.status == "completed" and p.attention_failures == 0
            assert (p.prolific_study_id, p.prolific_session_id) == (STUDY_ID, SESSION_ID)
            assert (p.age, p.gender, p.student, p.employment) == (34, "female", "no", "part-time")
            trials = s.scalars(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)).all()
            images = [t for t in trials if t.kind == "stimulus"]
            attention = [t for t in trials if t.kind == "attention"]
            assert [(t.response_label, t.confidence) for t in images] == pressed
            assert sorted(d for d, _ in pressed[:10]) == list(range(10))
            assert len(attention) == 2 and all(t.response_label == t.expected_label for t in attention)
            rts = [t.rt_ms for t in trials]  # measured in the browser, plausible
            assert all(rt is not None and 30 <= rt < 60_000 for rt in rts), rts
            for t in trials:
                assert t.shown_at is not None and t.answered_at is not None and t.answered_at >= t.shown_at
            assert len({t.stimulus_id for t in images}) == n_images
            assert s.scalar(select(Stimulus.id).where(Stimulus.id == images[0].stimulus_id)) is not None
            # the viewing conditions the browser reported, and participants.csv
            assert (p.device_pixel_ratio, p.viewport_w, p.screen_w, p.touch) == (1.0, 1280, 1280, False)
            assert p.viewport_h is not None and 900 <= p.viewport_h <= 1000
            assert p.rendered_sizes == {"1": [28.0, 28.0], "2": [56.0, 56.0], "4": [112.0, 112.0]}
            assert (p.ua_browser, p.ua_os) == ("chrome", "linux")
            export_results(s, s.get(Study, p.study_id), tmp_path / "export")
        with (tmp_path / "export" / "participants.csv").open(encoding="utf-8") as fh:
            row = next(csv.DictReader(fh))
        assert (row["device_pixel_ratio"], row["viewport_w"], row["touch"], row["ua_browser"]) == (
            "1.0",
            "1280",
            "0",
            "chrome",
        )
        assert json.loads(row["rendered_sizes"])["4"] == [112.0, 112.0]
    assert time.monotonic() - t_start < 120, f"the browser walk took {time.monotonic() - t_start:.1f} s"


CIFAR_TOML = """
slug = "cifar-keys"
title = "Which object is this?"
dataset = "cifar10"
norm = "linf"
trials_per_participant = 10
conditions = ["CB"]
participants_per_condition = 5

[completion_codes]
completed = "CDONE1"
no_consent = "CNOCONS"
failed_attention = "CFAILED"

[texts]
consent = "You will see {images} small pictures."
instructions = "Pick what each picture shows."
"""


def test_cifar10_every_label_is_selected_by_the_key_shown_next_to_it(tmp_path: Path, wait_http_up) -> None:  # type: ignore[no-untyped-def]
    names = DEFAULT_LABELS["cifar10"]
    with (
        _serve(tmp_path, CIFAR_TOML, "cifar10", 10, wait_http_up) as (base, db),
        _browser(viewport={"width": 1280, "height": 1000}) as page,
    ):
        _enter_study(page, base, "cifar-keys")
        page.wait_for_selector("main#page[data-page=trial]")
        assert page.locator("p.key-help").is_visible()
        (tmp_path / "cifar.png").write_bytes(page.screenshot(full_page=True))
        # Enter before both are chosen: nothing is sent, the page says why
        page.keyboard.press("Enter")
        page.wait_for_timeout(200)
        assert _where(page) == ("trial", 1)
        assert page.locator("p.key-missing").is_visible()
        label_keys = {_hint(_option(page, "label", n)) for n in names}
        keys = []
        for i, name in enumerate(names):
            assert _where(page) == ("trial", i + 1)
            option = _option(page, "label", name)
            key = _hint(option)
            assert key is not None and len(key) == 1
            keys.append(key)
            page.keyboard.press(key.lower())
            assert option.locator("input").is_checked()
            assert page.locator('input[name="label"]:checked').count() == 1
            # the confidence keys: each shown key selects its own level (pressed in turn, the last one stays)
            order = [(i + j) % 5 + 1 for j in range(5)]
            for c in order:
                conf_option = _option(page, "confidence", str(c))
                ckey = _hint(conf_option)
                assert ckey is not None and ckey not in label_keys
                page.keyboard.press(ckey.lower())
                assert conf_option.locator("input").is_checked()
            assert option.locator("input").is_checked()
            with page.expect_navigation():
                page.keyboard.press("Enter")
        assert _where(page) == ("demographics", 0)
        assert len(set(keys)) == 10, keys
        with db.session() as s:
            p = s.scalar(select(Participant).where(Participant.prolific_pid == PID))
            assert p is not None
            trials = s.scalars(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)).all()
            assert [t.response_label for t in trials] == list(range(10))
            assert [t.confidence for t in trials] == [(i + 4) % 5 + 1 for i in range(10)]


def test_phone_shows_no_key_hints_and_fits_the_screen(tmp_path: Path, wait_http_up) -> None:  # type: ignore[no-untyped-def]
    with (
        _serve(tmp_path, CIFAR_TOML, "cifar10", 10, wait_http_up) as (base, _db),
        _browser(viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True, has_touch=True) as page,
    ):
        _enter_study(page, base, "cifar-keys")
        page.wait_for_selector("main#page[data-page=trial]")
        page.wait_for_load_state("load")
        assert page.locator("kbd.key-hint").count() == 15  # in the page, hidden
        assert not any(k.is_visible() for k in page.locator("kbd.key-hint").all())
        assert not page.locator("p.key-help").is_visible()
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the trial page is {width} CSS px wide on a 390 px phone"
        boxes = [t.bounding_box() for t in page.locator("span.option-text").all()]
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                ba, bb = boxes[a], boxes[b]
                assert ba and bb
                overlap = min(ba["x"] + ba["width"], bb["x"] + bb["width"]) > max(ba["x"], bb["x"]) and min(
                    ba["y"] + ba["height"], bb["y"] + bb["height"]
                ) > max(ba["y"], bb["y"])
                assert not overlap, f"option texts {a} and {b} overlap on a phone"
        (tmp_path / "phone.png").write_bytes(page.screenshot(full_page=True))
        # tapping still answers
        _option(page, "label", "cat").tap()
        _option(page, "confidence", "3").tap()
        with page.expect_navigation():
            page.get_by_role("button", name="Next").tap()
        assert _where(page) == ("trial", 2)


def test_a_small_window_is_refused_before_assignment_and_a_large_one_gets_in(tmp_path: Path, wait_http_up) -> None:  # type: ignore[no-untyped-def]
    source = CIFAR_TOML.replace(
        "participants_per_condition = 5", "participants_per_condition = 5\nmin_viewport_width = 600"
    )
    source = source.replace(
        'failed_attention = "CFAILED"', 'failed_attention = "CFAILED"\nincompatible_device = "CNODEVICE"'
    )
    with _serve(tmp_path, source, "cifar10", 10, wait_http_up) as (base, db):
        with _browser(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True) as page:
            page.goto(f"{base}/s/cifar-keys?PROLIFIC_PID={PID}&STUDY_ID={STUDY_ID}&SESSION_ID={SESSION_ID}")
            page.wait_for_selector("h1:has-text('larger screen')")  # the check page measured and sent 390
            assert "yours is 390" in page.locator("p.message").inner_text()
            assert page.locator("a#back-link").get_attribute("href").endswith("cc=CNODEVICE")
            (tmp_path / "refused.png").write_bytes(page.screenshot(full_page=True))
            with db.session() as s:
                assert s.scalar(select(Participant.id)) is None  # refused before assignment: nothing stored
            page.set_viewport_size({"width": 844, "height": 390})  # turned sideways: check again, and in
            page.locator("a#retry-link").click()
            page.wait_for_selector("main#page[data-page=consent]")
        with db.session() as s:
            assert s.scalar(select(Participant.viewport_w)) is None  # assigned; the consent form reports the rest
            s.execute(delete(Trial))
            s.execute(delete(Participant))
        with _browser(viewport={"width": 1280, "height": 900}) as page:
            page.goto(f"{base}/s/cifar-keys?PROLIFIC_PID={PID}&STUDY_ID={STUDY_ID}&SESSION_ID={SESSION_ID}")
            page.wait_for_selector("main#page[data-page=consent]")
            assert "/p/" in page.url
        with db.session() as s:
            p = s.scalar(select(Participant).where(Participant.prolific_pid == PID))
            assert p is not None and p.prolific_session_id == SESSION_ID
