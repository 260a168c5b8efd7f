"""Keyboard shortcuts of the trial page, decided once per label set so that the key shown is the key that works.

- A label that is a single letter or digit is selected by that very key: MNIST's "0".."9" by the digits 0-9.
- Any other label gets a digit in display order, "1".."9" then "0", skipping digits that a single-character
  label already uses (CIFAR-10: airplane = 1, automobile = 2, ..., truck = 0).
- Confidence 1-5 is chosen with the first of CONFIDENCE_KEY_SETS whose keys no label uses: by default the home
  row A S D F G (1 = A ... 5 = G), letters so that they never clash with the digits that labels use;
  then Q W E R T, Z X C V B, and 1-5 for label sets of letters.

The template writes each key into the radio button's `data-key` and next to it; `static/js/trial.js` reads only
`data-key`, so the hint and the behaviour cannot disagree. Keys are lower case; hints show them upper case.
"""

from __future__ import annotations

from collections.abc import Sequence

DIGIT_ORDER = "1234567890"
CONFIDENCE_KEY_SETS = ("asdfg", "qwert", "zxcvb", "12345")


def label_keys(labels: Sequence[str]) -> tuple[str, ...]:
    """One key per label ("" where no key is free)."""
    own = [s.lower() if len(s) == 1 and s.isascii() and s.isalnum() else "" for s in labels]
    taken = {k for k in own if k}
    if len(taken) != sum(1 for k in own if k):  # "a" and "A": the same key twice
        own = ["" for _ in own]
        taken = set()
    free = iter(d for d in DIGIT_ORDER if d not in taken)
    return tuple(k or next(free, "") for k in own)


def confidence_keys(used: Sequence[str], levels: int = 5) -> tuple[str, ...]:
    """Keys for confidence 1..levels that clash with no label key ("" each when every set clashes)."""
    for keys in CONFIDENCE_KEY_SETS:
        if len(keys) >= levels and not set(keys[:levels]) & set(used):
            return tuple(keys[:levels])
    return tuple("" for _ in range(levels))


def hints(labels: Sequence[str], keys: Sequence[str]) -> tuple[str, ...]:
    """The hint shown next to each label: its key in upper case; none at all when every label is its own key
    (MNIST's "3" is selected by 3: a badge "3" beside it would only repeat it)."""
    if all(k and s.lower() == k for s, k in zip(labels, keys, strict=True)):
        return tuple("" for _ in labels)
    return tuple(k.upper() for k in keys)


def help_text(labels: Sequence[str], keys: Sequence[str], conf: Sequence[str]) -> str:
    """One sentence that says which keys do what, for the line under the answers."""
    if all(keys) and not any(hints(labels, keys)):
        what = "the digit you see" if all(s.isdigit() for s in labels) else "the key of your answer"
        parts = [f"press {what}"]
    elif any(keys):
        parts = ["press the key shown next to your answer"]
    else:
        parts = []
    if all(conf):
        named = " ".join(k.upper() for k in conf)
        parts.append(f"{named} for how confident you are, from 1 to {len(conf)}")
    text = " and ".join(parts)
    return text + "." if text else ""
