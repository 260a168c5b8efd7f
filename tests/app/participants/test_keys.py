"""Keyboard shortcuts: the key shown next to an option is the key that selects it (app/participants/keys.py)."""

from __future__ import annotations

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from app.participants import keys
from app.studies.schema import DEFAULT_LABELS

from .test_flow import answer_form, walk_to_trials

MNIST, CIFAR = DEFAULT_LABELS["mnist"], DEFAULT_LABELS["cifar10"]


def test_digit_labels_are_their_own_keys() -> None:
    assert keys.label_keys(MNIST) == tuple("0123456789")
    assert keys.hints(MNIST, keys.label_keys(MNIST)) == ("",) * 10  # no badge "3" beside "3"
    # in any order: the key of "7" is 7
    shuffled = ["7", "2", "9", "0", "4", "1", "3", "8", "6", "5"]
    assert keys.label_keys(shuffled) == tuple(shuffled)


def test_word_labels_get_digits_in_display_order_and_show_them() -> None:
    k = keys.label_keys(CIFAR)
    assert k == tuple("1234567890")
    assert keys.hints(CIFAR, k) == tuple("1234567890")


def test_single_letters_keep_their_letter_and_mixed_sets_skip_taken_digits() -> None:
    assert keys.label_keys(list("abcdefghij")) == tuple("abcdefghij")
    mixed = ["1", "cat", "dog", "3", "a", "b", "c", "d", "e", "f"]
    k = keys.label_keys(mixed)
    assert k == ("1", "2", "4", "3", "a", "b", "c", "d", "e", "f")
    assert len(set(k)) == 10
    # not every label is its own key: every hint is shown, so the page says how to pick each one
    assert keys.hints(mixed, k) == tuple(x.upper() for x in k)


def test_same_letter_twice_in_two_cases_falls_back_to_digits() -> None:
    labels = ["A", "a", "b", "c", "d", "e", "f", "g", "h", "i"]
    assert keys.label_keys(labels) == tuple("1234567890")


@pytest.mark.parametrize("labels", [MNIST, CIFAR, list("abcdefghij"), list("asdfgqwert"), list("asdfgqwerz")])
def test_confidence_keys_never_clash_with_label_keys(labels: list[str]) -> None:
    lk = keys.label_keys(labels)
    ck = keys.confidence_keys(lk)
    assert len(ck) == 5 and all(ck) and len(set(ck)) == 5
    assert not set(ck) & set(lk)


def test_confidence_keys_are_the_home_row_for_digit_and_word_labels() -> None:
    for labels in (MNIST, CIFAR):
        assert keys.confidence_keys(keys.label_keys(labels)) == tuple("asdfg")


def test_help_text_names_the_keys() -> None:
    lk = keys.label_keys(MNIST)
    assert keys.help_text(MNIST, lk, keys.confidence_keys(lk)) == (
        "press the digit you see and A S D F G for how confident you are, from 1 to 5."
    )


def test_trial_page_writes_each_key_into_its_radio_and_next_to_it(client, db, make_study, new_pid) -> None:
    slug = make_study(db, trials=2, pool=3, conditions=("CB",))
    url = walk_to_trials(client, slug, new_pid())
    r, _ = answer_form(client, url)
    doc = HTMLParser(r.text)
    for opt in doc.css("fieldset.labels label"):
        radio = opt.css_first('input[name="label"]')
        text = opt.css_first("span.option-text").text()
        assert radio.attributes["data-key"] == text == MNIST[int(radio.attributes["value"])]
        assert opt.css_first("kbd") is None
    conf = doc.css("fieldset.confidence label")
    assert len(conf) == 5
    for opt, key in zip(conf, "asdfg", strict=True):
        radio = opt.css_first('input[name="confidence"]')
        assert radio.attributes["data-key"] == key
        assert opt.css_first("kbd.key-hint").text() == key.upper()
        assert opt.css_first("span.option-text").text() == radio.attributes["value"]
    assert "A S D F G" in doc.css_first("p.key-help").text()
    # the script only reads data-key: no key table of its own that could disagree
    assert doc.css_first('script[src="/static/js/trial.js"]') is not None
