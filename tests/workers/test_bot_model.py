"""`lpstudy bots --responder model`: each bot answers with the classifier's prediction on the PNG it was shown."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from app.bots.responders import ModelResponder
from app.bots.run import run_bots
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
