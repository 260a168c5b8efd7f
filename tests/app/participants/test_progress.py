"""Honest progress: "Image k of n" counts the images of the config; attention checks are not counted as images,
and the consent and instructions state the same numbers."""

from __future__ import annotations

import numpy as np
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import select

from app.models import Study
from app.participants.pages import image_progress
from app.stimuli.service import add_stimulus
from app.studies.schema import parse_study_config
from app.studies.service import activate_study, create_study
from tests.conftest import study_toml

from .test_flow import answer_form, enter, page_of, walk_to_trials

ATTENTION = """
[attention_checks]
positions = [2, 6]
fail_threshold = 2
"""


def test_image_progress_skips_attention_checks() -> None:
    att = {"positions": [1, 5]}  # 0-based, as stored
    assert [image_progress(p, 7, att) for p in (0, 2, 3, 4, 6)] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert image_progress(3, 4, None) == (4, 4)


def test_trial_pages_count_images_only(client, db, make_study, new_pid) -> None:
    slug = make_study(db, trials=5, pool=6, conditions=("CB",), extra=ATTENTION)
    with db.session() as s:
        source = s.scalar(select(Study.config_source).where(Study.slug == slug))
    cfg = parse_study_config(source)
    checks = cfg.attention_positions()
    assert checks == [1, 5]
    url = walk_to_trials(client, slug, new_pid())
    seen = []
    for i in range(cfg.total_trials):
        r, action = answer_form(client, url)
        assert page_of(r) == ("trial", i + 1)
        doc = HTMLParser(r.text)
        progress = doc.css_first("p.progress").text()
        if i in checks:
            assert doc.css_first("div.stimulus") is None
            assert progress == f"Attention check (not one of the {cfg.trials_per_participant} images)"
            assert doc.css_first("title").text() == "Attention check"
            label = "0"  # any answer: this test is about the words
        else:
            seen.append(progress)
            assert doc.css_first("title").text() == progress
            label = "1"
        assert client.post(action, data={"label": label, "confidence": "3"}).status_code == 303
    n = cfg.trials_per_participant
    assert seen == [f"Image {k} of {n}" for k in range(1, n + 1)]


def test_consent_and_instructions_state_the_configs_numbers(client, db, new_pid) -> None:
    source = study_toml("counted", 4, ("CB",), 5, ATTENTION.replace("[2, 6]", "[2, 4]"))
    source = source[: source.index("[texts]")] + (
        '[texts]\nconsent = "You will see {images} images."\n'
        'instructions = "Besides the {images} images there are {attention_checks} checks."\n'
    )
    cfg = parse_study_config(source)
    with db.session() as s:
        study = create_study(s, source)
        for i in range(5):
            pixels = np.full((28, 28), i * 40, np.uint8)
            add_stimulus(s, study, study.conditions[0], image_index=i, label=i, pixels=pixels, extra={})
        s.flush()
        activate_study(s, study)
    url = enter(client, "counted", new_pid())
    consent = HTMLParser(client.get(url).text).css_first("section.text").text()
    assert consent == f"You will see {cfg.trials_per_participant} images."
    client.post(f"{url}/consent", data={"consent": "yes"})
    instructions = HTMLParser(client.get(url).text).css_first("section.text").text()
    assert instructions == f"Besides the 4 images there are {len(cfg.attention_positions())} checks."
    client.post(f"{url}/instructions")
    r, _ = answer_form(client, url)
    assert HTMLParser(r.text).css_first("p.progress").text() == f"Image 1 of {cfg.trials_per_participant}"
