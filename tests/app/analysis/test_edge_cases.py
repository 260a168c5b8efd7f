"""What a researcher sees when the data are thin or odd: clear notes and None, never a traceback or NaN."""

from __future__ import annotations

import dataclasses
import json

import pytest

from app.analysis import analyze
from app.analysis.figures import all_figures
from app.analysis.load import ParticipantRecord, TrialRecord
from app.analysis.report import render_report
from app.analysis.text import summary_text


def _render_everything(data, r) -> None:  # type: ignore[no-untyped-def]
    json.dumps(r, allow_nan=False)  # valid JSON: no NaN or infinity anywhere
    assert summary_text(r)
    assert "<html" in render_report(data, r)
    figures = all_figures(r)
    for svg in figures.values():
        assert svg.startswith("<?xml") and "</svg>" in svg
    assert all_figures(r) == figures  # deterministic: the same result gives the same files


def test_no_participants_at_all(hand) -> None:  # type: ignore[no-untyped-def]
    data = dataclasses.replace(hand(), participants=[], trials=[])
    r = analyze(data)
    assert r["sample"]["total"]["included"] == 0
    assert any("nothing to analyse" in n for n in r["notes"])
    cb = r["conditions"]["CB"]
    assert cb["n_participants"] == 0 and cb["accuracy"]["mean"] is None and cb["accuracy"]["ci_bootstrap"] is None
    assert any("no participant" in n for n in cb["notes"])
    assert r["comparisons"][0]["accuracy"]["welch"] is None
    assert not r["mixed_model"]["fitted"] and r["mixed_model"]["notes"]
    _render_everything(data, r)
    assert not any("--include-test" in n for n in r["notes"])  # no test participant either: no hint


def test_only_test_participants_say_how_to_analyse_a_pilot(hand) -> None:  # type: ignore[no-untyped-def]
    data = hand()
    pilot = dataclasses.replace(data, participants=[dataclasses.replace(p, is_test=True) for p in data.participants])
    r = analyze(pilot, mixed=False)
    assert r["sample"]["total"]["included"] == 0 and r["sample"]["total"]["test"] == 9
    assert any(n.startswith("9 test participant(s)") and "--include-test" in n for n in r["notes"])
    assert analyze(pilot, include_test=True, mixed=False)["sample"]["total"]["included"] == 7  # with t1


def test_one_participant_in_a_condition(hand) -> None:  # type: ignore[no-untyped-def]
    data = hand()
    keep = {"p1", "p2", "p3", "q1"}
    data = dataclasses.replace(
        data,
        participants=[p for p in data.participants if p.key in keep],
        trials=[t for t in data.trials if t.participant in keep],
    )
    r = analyze(data, mixed=False)
    cai = r["conditions"]["CAI"]
    assert cai["n_participants"] == 1 and cai["accuracy"]["mean"] == pytest.approx(1 / 3)
    assert cai["accuracy"]["sd"] is None and cai["accuracy"]["ci_t"] is None
    assert any("one participant" in n for n in cai["notes"])
    acc = r["comparisons"][0]["accuracy"]
    assert acc["welch"] is None and acc["cohen_d"] is None
    assert any("at least 2" in n for n in acc["notes"])
    _render_everything(data, r)


def test_everyone_correct_zero_variance(hand) -> None:  # type: ignore[no-untyped-def]
    data = hand()
    trials = [dataclasses.replace(t, response=t.truth) if t.kind == "stimulus" else t for t in data.trials]
    data = dataclasses.replace(data, trials=trials)
    r = analyze(data, mixed=False)
    for code in ("CB", "CAI"):
        a = r["conditions"][code]["accuracy"]
        assert a["mean"] == 1.0 and a["sd"] == 0.0 and a["ci_t"] == [1.0, 1.0] and a["ci_bootstrap"] == [1.0, 1.0]
        assert any("zero variance" in n for n in r["conditions"][code]["notes"])
    acc = r["comparisons"][0]["accuracy"]
    assert acc["welch"] is None and acc["student"] is None
    assert any("no variance" in n for n in acc["notes"])
    assert acc["mann_whitney"]["p"] is None and acc["cohen_d"] is None
    items = r["comparisons"][0]["items"]
    assert items["wilcoxon"] is None and any("same accuracy" in n for n in items["notes"])
    # Every adversarial image recognised: the metric AUC cannot be computed, and says so.
    (l2,) = r["metrics_vs_human"]["metrics"]
    assert l2["auc"] is None and any("fooled" in n for n in l2["notes"])
    _render_everything(data, r)


def test_no_confidence_and_no_rt(hand) -> None:  # type: ignore[no-untyped-def]
    data = hand()
    trials = [dataclasses.replace(t, confidence=None, rt_ms=None) for t in data.trials]
    data = dataclasses.replace(data, trials=trials)
    r = analyze(data, mixed=False)
    cf = r["conditions"]["CB"]["confidence"]
    assert cf["mean"] is None and cf["n_missing"] == 9 and cf["correct"]["mean"] is None
    assert r["comparisons"][0]["confidence"]["welch"] is None
    assert r["conditions"]["CB"]["rt_ms"]["median"] is None
    _render_everything(data, r)


def test_condition_without_anyone_and_no_model_predictions(hand) -> None:  # type: ignore[no-untyped-def]
    data = hand()
    data = dataclasses.replace(
        data,
        conditions=["CB", "CAI", "CAP"],
        stimuli=[dataclasses.replace(s, metrics={}) for s in data.stimuli],
    )
    r = analyze(data, mixed=False)
    assert r["conditions"]["CAP"]["n_participants"] == 0
    assert [(c["a"], c["b"]) for c in r["comparisons"]] == [("CB", "CAI"), ("CB", "CAP"), ("CAI", "CAP")]
    assert r["comparisons"][1]["accuracy"]["welch"] is None
    assert r["metrics_vs_human"]["metrics"] == [] and r["metrics_vs_human"]["error_consistency"] == []
    _render_everything(data, r)


def test_attention_rule_from_the_config(hand) -> None:  # type: ignore[no-untyped-def]
    base = hand()
    extra = ParticipantRecord("f2", "CB", "completed", attention_failures=1)
    trials = [*base.trials, TrialRecord("f2", 0, "stimulus", 1, 0, 0, 5, 100)]
    data = dataclasses.replace(base, participants=[*base.participants, extra], trials=trials)
    assert analyze(data, mixed=False)["sample"]["total"]["included"] == 7  # default threshold 2: f2 counts
    strict = dataclasses.replace(data, options=data.options.model_copy(update={"attention_failure_threshold": 1}))
    assert analyze(strict, mixed=False)["sample"]["total"]["attention"] == 2
    off = dataclasses.replace(data, options=data.options.model_copy(update={"exclude_attention_failures": False}))
    r = analyze(off, mixed=False)
    assert r["sample"]["total"]["attention"] == 0 and r["sample"]["total"]["included"] == 8
    assert analyze(data, include_test=True, mixed=False)["sample"]["total"]["test"] == 0


def test_answers_on_an_excluded_stimulus_do_not_count(hand) -> None:  # type: ignore[no-untyped-def]
    data = hand()
    # Take CB image 2 (stimulus 3) out of the pool: its three answers (5, 2, 2) go.
    stimuli = [
        dataclasses.replace(s, excluded=True, excluded_reason="blurred") if s.id == 3 else s for s in data.stimuli
    ]
    r = analyze(dataclasses.replace(data, stimuli=stimuli), mixed=False)
    assert r["sample"]["answers_on_excluded_stimuli"] == 3
    assert r["sample"]["excluded_stimuli"] == [
        {"stimulus_id": 3, "condition": "CB", "image_index": 2, "reason": "blurred"}
    ]
    cb = r["conditions"]["CB"]
    assert cb["n_answers"] == 6 and cb["accuracy"]["mean"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert r["comparisons"][0]["items"]["n_images"] == 2  # image 2 is no longer paired
    assert "taken out of the pool" in summary_text(r)
    _render_everything(data, r)
