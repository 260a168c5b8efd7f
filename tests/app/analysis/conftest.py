"""The small fixed data set of the hand-computed tests, shared with the edge-case tests."""

from __future__ import annotations

import datetime as dt

import pytest

from app.analysis.load import ParticipantRecord, StimulusRecord, StudyData, TrialRecord
from app.studies.schema import Analysis

T0 = dt.datetime(2024, 1, 1, 10, 0, tzinfo=dt.UTC)
# (participant, condition, [(image, response, confidence, rt_ms)], age, gender, minutes)
ANSWERS = [
    ("p1", "CB", [(0, 0, 5, 1000), (1, 1, 4, 2000), (2, 5, 2, 3000)], 20, "female", 10),
    ("p2", "CB", [(0, 0, 5, 1500), (1, 7, 3, 2500), (2, 2, 4, None)], 30, "male", 20),
    ("p3", "CB", [(0, 0, 5, 500), (1, 1, 5, 1000), (2, 2, 5, 1200)], None, None, 10),
    ("q1", "CAI", [(0, 3, 2, None), (1, 1, 4, None), (2, 9, 1, None)], 40, "female", 10),
    ("q2", "CAI", [(0, 0, 3, None), (1, 8, None, None), (2, 9, 2, None)], 50, "female", 10),
    ("q3", "CAI", [(0, 5, 4, None), (1, 1, 2, None), (2, 2, 3, None)], 60, "non-binary", 10),
]
CAI_PRED = {0: 3, 1: 8, 2: 9}  # the model's (wrong) label on each adversarial image
CAI_L2 = {0: 1.0, 1: 0.5, 2: 2.0}


def hand_data(**options) -> StudyData:  # type: ignore[no-untyped-def]
    stimuli = [StimulusRecord(1 + i, "CB", i, i, {"model_pred": i, "l2": 0.0}) for i in range(3)]
    stimuli += [StimulusRecord(4 + i, "CAI", i, i, {"model_pred": CAI_PRED[i], "l2": CAI_L2[i]}) for i in range(3)]
    sid = {(s.condition, s.image_index): s.id for s in stimuli}
    participants, trials = [], []
    for key, cond, rows, age, gender, minutes in ANSWERS:
        participants.append(ParticipantRecord(key, cond, "completed", age=age, gender=gender, student="no",
                                              employment="full-time", started_at=T0,
                                              finished_at=T0 + dt.timedelta(minutes=minutes)))  # fmt: skip
        for pos, (img, resp, conf, rt) in enumerate(rows):
            trials.append(TrialRecord(key, pos, "stimulus", sid[(cond, img)], img, resp, conf, rt))
        # An attention check, answered wrongly by everyone: it must never count as an answer.
        trials.append(TrialRecord(key, 3, "attention", None, 4, 6, 5, 700))
    # Three who must not count: a test participant, one who did not finish, one who failed attention twice.
    for key, cond, kw in (("t1", "CB", {"is_test": True, "status": "completed"}), ("u1", "CAI", {"status": "active"}),
                          ("f1", "CB", {"status": "failed_attention", "attention_failures": 2})):  # fmt: skip
        participants.append(ParticipantRecord(key, cond, **kw))  # type: ignore[arg-type]
        trials.append(TrialRecord(key, 0, "stimulus", sid[(cond, 0)], 0, 9, 1, 100))
    return StudyData(
        slug="hand", title="Hand-computed", dataset="mnist", norm="l0", conditions=["CB", "CAI"],
        labels=[str(i) for i in range(10)], trials_per_participant=3, config_source="# hand\n",
        options=Analysis(**options), fail_threshold=2, participants=participants, trials=trials, stimuli=stimuli,
    )  # fmt: skip


@pytest.fixture
def hand():  # type: ignore[no-untyped-def]
    """hand(**analysis_options) -> the hand-computed StudyData."""
    return hand_data
