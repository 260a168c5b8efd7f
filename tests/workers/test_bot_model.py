"""`lpstudy bots --responder model`: each bot answers with the classifier's prediction on the PNG it was shown."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.bots.responders import ModelResponder
from app.bots.run import run_bots, summarise
from app.models import Participant, Stimulus, Trial
from app.participants import pilots
from workers.models.predictor import ModelPredictor


def test_model_bots_record_the_models_prediction_on_each_image(app, db, make_study) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="model-bots", trials=4, pool=5, extra="[attention_checks]\npositions = [2, 5]\n")
    predictor = ModelPredictor("mnist-default")
    token = pilots.mint_test_token(app.state.settings.secret_key, slug, "bot")
    results = run_bots(
        "http://lpstudy.test", slug, 4, ModelResponder(predictor), token, concurrency=2,
        transport=httpx.ASGITransport(app=app),
    )
    assert all(r.finished and r.error is None for r in results), [r.error for r in results]
    with db.session() as s:
        rows = s.execute(
            select(Trial.kind, Trial.response_label, Trial.expected_label, Trial.confidence, Stimulus.png)
            .join(Participant, Participant.id == Trial.participant_id)
            .outerjoin(Stimulus, Stimulus.id == Trial.stimulus_id)
            .where(Participant.is_test.is_(True))
        ).all()
    assert len(rows) == 4 * 6
    predicted = []
    for kind, response, expected, confidence, png in rows:
        if kind == "attention":
            assert response == expected  # the instruction is followed
            continue
        label, prob = predictor(png)  # the same PNG bytes the server sent
        assert response == label and 1 <= confidence <= 5
        predicted.append(label)
    assert len(predicted) == 16



def _data_dir() -> Path | None:
    env = os.environ.get("LPSTUDY_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[3] / "shared" / "data"]:
        if (cand / "mnist").is_dir():
            return cand
    return None


@pytest.mark.realdata
@pytest.mark.skipif(_data_dir() is None, reason="needs the real MNIST test set (LPSTUDY_DATA_DIR)")
def test_model_bots_on_real_mnist_digits_answer_like_the_model(app, db, toml_for) -> None:  # type: ignore[no-untyped-def]
    """On real, benign MNIST test digits the default robust model is right about 99% of the time; the bots'
    recorded answers show that accuracy, so a pilot looks like what the DNN would say."""
    from app.stimuli.service import add_stimulus
    from app.studies.service import activate_study, create_study
    from workers.data.datasets import load_mnist

    images, labels = load_mnist(_data_dir(), "test")
    with db.session() as s:
        study = create_study(s, toml_for(slug="real-digits", trials=20, conditions=("CB",), target=5))
        for i in range(40):
            add_stimulus(s, study, study.conditions[0], image_index=i, label=int(labels[i]), pixels=images[i], extra={})
        s.flush()
        activate_study(s, study)
    token = pilots.mint_test_token(app.state.settings.secret_key, "real-digits", "bot")
    results = run_bots(
        "http://lpstudy.test", "real-digits", 4, ModelResponder(ModelPredictor("mnist-default")), token,
        concurrency=2, transport=httpx.ASGITransport(app=app),
    )
    assert all(r.finished for r in results), [r.error for r in results]
    with db.session() as s:
        (row,) = summarise(s, s.get(type(study), study.id), [r.pid for r in results])
    assert row.image_answers == 80 and row.accuracy is not None and row.accuracy >= 0.95, row
