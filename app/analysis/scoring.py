"""Scoring: whether an answer was correct. Defined once, here; the exports, the analysis and the dashboard use it."""

from __future__ import annotations

STIMULUS = "stimulus"
ATTENTION = "attention"


def truth_of(kind: str, stimulus_label: int | None, expected_label: int | None) -> int | None:
    """The answer that counts as correct: the source image's true label, or an attention check's instructed label."""
    return stimulus_label if kind == STIMULUS else expected_label


def is_correct(response: int | None, truth: int | None) -> bool | None:
    """True or False; None when the trial has no answer or no known truth (never counted either way)."""
    if response is None or truth is None:
        return None
    return int(response) == int(truth)
