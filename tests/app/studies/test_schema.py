"""The study config (TOML): every field is validated and every error names the field and its line."""

from __future__ import annotations

import re

import pytest

from app.errors import ConfigError
from app.studies.schema import DEFAULT_LABELS, parse_study_config

# A complete, valid config; each case below edits one line of it.
VALID = """\
slug = "paper-l2-mnist"
title = "Which digit?"
dataset = "mnist"
norm = "l2"
labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
trials_per_participant = 25
scales = [1, 2, 4]
conditions = ["CB", "CAI", "CAP"]
participants_per_condition = 40
timeout_minutes = 45

[completion_codes]
completed = "C1DONE"
no_consent = "C2NOCONSENT"
failed_attention = "C3FAILED"

[attention_checks]
count = 2
fail_threshold = 2

[texts]
consent = "Do you agree?"
instructions = "Pick the digit."
"""


def line_no(source: str, needle: str) -> int:
    """1-based line of the first line containing needle."""
    return next(n for n, line in enumerate(source.splitlines(), start=1) if needle in line)


def error_of(source: str, filename: str = "study.toml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_study_config(source, filename=filename)
    assert info.value.status_code == 422
    return info.value.message


def test_the_valid_config_parses_with_every_value() -> None:
    cfg = parse_study_config(VALID)
    assert cfg.slug == "paper-l2-mnist" and cfg.title == "Which digit?"
    assert (cfg.dataset, cfg.norm) == ("mnist", "l2")
    assert cfg.labels is not None and cfg.labels[0] == "zero" and len(cfg.labels) == 10
    assert cfg.trials_per_participant == 25 and cfg.scales == [1, 2, 4]
    assert cfg.conditions == ["CB", "CAI", "CAP"]
    assert cfg.participants_per_condition == 40 and cfg.timeout_minutes == 45
    assert (cfg.completion_codes.completed, cfg.completion_codes.no_consent) == ("C1DONE", "C2NOCONSENT")
    assert cfg.completion_codes.failed_attention == "C3FAILED"
    assert cfg.attention_checks is not None and cfg.attention_checks.fail_threshold == 2
    assert len(cfg.attention_positions()) == 2 and cfg.total_trials == 27
    assert cfg.texts.consent == "Do you agree?" and cfg.texts.instructions == "Pick the digit."


def test_defaults_for_optional_fields() -> None:
    src = "\n".join(
        line
        for line in VALID.splitlines()
        if not line.startswith(("labels", "trials_per_participant", "scales", "conditions", "timeout_minutes"))
    )
    src = src.replace("[attention_checks]\ncount = 2\nfail_threshold = 2\n", "")
    cfg = parse_study_config(src)
    assert cfg.labels == DEFAULT_LABELS["mnist"]
    assert cfg.trials_per_participant == 25 and cfg.scales == [1, 2, 4]
    assert cfg.conditions == ["CB", "CAI", "CAP"] and cfg.timeout_minutes == 60
    assert cfg.attention_checks is None and cfg.attention_positions() == []


def test_cifar10_gets_its_class_names_by_default() -> None:
    src = VALID.replace('dataset = "mnist"', 'dataset = "cifar10"')
    src = "\n".join(line for line in src.splitlines() if not line.startswith("labels"))
    assert parse_study_config(src).labels == DEFAULT_LABELS["cifar10"]


# (description, old text, new text, the field the error must name, the line to expect (a needle), message part)
CASES = [
    ("slug with capitals", 'slug = "paper-l2-mnist"', 'slug = "Paper L2"', "slug", "slug =", "lowercase"),
    ("slug too short", 'slug = "paper-l2-mnist"', 'slug = "ab"', "slug", "slug =", "3-64"),
    ("slug ends with dash", 'slug = "paper-l2-mnist"', 'slug = "paper-"', "slug", "slug =", "'-'"),
    ("slug not a string", 'slug = "paper-l2-mnist"', "slug = 12", "slug", "slug =", "string"),
    ("empty title", 'title = "Which digit?"', 'title = ""', "title", "title =", "at least 1"),
    ("unknown dataset", 'dataset = "mnist"', 'dataset = "imagenet"', "dataset", "dataset =", "'mnist' or 'cifar10'"),
    ("unknown norm", 'norm = "l2"', 'norm = "l1"', "norm", "norm =", "'l0', 'l2' or 'linf'"),
    ("nine labels", '"eight", "nine"]', '"eight"]', "labels", "labels =", "exactly 10 label names"),
    ("eleven labels", '"nine"]', '"nine", "ten"]', "labels", "labels =", "got 11"),
    ("duplicate labels", '"one", "two"', '"one", "one"', "labels", "labels =", "distinct"),
    ("empty label", '"one", "two"', '"one", " "', "labels", "labels =", "cannot be empty"),
    (
        "zero trials",
        "trials_per_participant = 25",
        "trials_per_participant = 0",
        "trials_per_participant",
        "trials_per_participant",
        "greater than or equal to 1",
    ),
    (
        "fractional trials",
        "trials_per_participant = 25",
        "trials_per_participant = 2.5",
        "trials_per_participant",
        "trials_per_participant",
        "integer",
    ),
    (
        "trials as text",
        "trials_per_participant = 25",
        'trials_per_participant = "25x"',
        "trials_per_participant",
        "trials_per_participant",
        "integer",
    ),
    ("scale zero", "scales = [1, 2, 4]", "scales = [0, 2]", "scales", "scales =", "1 to 16"),
    ("scale huge", "scales = [1, 2, 4]", "scales = [1, 32]", "scales", "scales =", "1 to 16"),
    ("no scales", "scales = [1, 2, 4]", "scales = []", "scales", "scales =", "at least one"),
    ("duplicate scales", "scales = [1, 2, 4]", "scales = [2, 2]", "scales", "scales =", "distinct"),
    ("unknown condition", '"CB", "CAI", "CAP"]', '"CB", "XX"]', "conditions.1", "conditions =", "'CB', 'CAI' or 'CAP'"),
    ("duplicate conditions", '"CB", "CAI", "CAP"]', '"CB", "CB"]', "conditions", "conditions =", "distinct"),
    (
        "no conditions",
        'conditions = ["CB", "CAI", "CAP"]',
        "conditions = []",
        "conditions",
        "conditions =",
        "at least one condition",
    ),
    (
        "zero participants",
        "participants_per_condition = 40",
        "participants_per_condition = 0",
        "participants_per_condition",
        "participants_per_condition",
        "greater than or equal to 1",
    ),
    (
        "negative participants",
        "participants_per_condition = 40",
        "participants_per_condition = -5",
        "participants_per_condition",
        "participants_per_condition",
        "greater than or equal to 1",
    ),
    (
        "zero timeout",
        "timeout_minutes = 45",
        "timeout_minutes = 0",
        "timeout_minutes",
        "timeout_minutes",
        "greater than or equal to 1",
    ),
    (
        "timeout over a day",
        "timeout_minutes = 45",
        "timeout_minutes = 10000",
        "timeout_minutes",
        "timeout_minutes",
        "less than or equal to 1440",
    ),
    (
        "completion code with space",
        'completed = "C1DONE"',
        'completed = "C1 DONE"',
        "completion_codes.completed",
        "completed =",
        "2-64 letters or digits",
    ),
    (
        "empty no-consent code",
        'no_consent = "C2NOCONSENT"',
        'no_consent = ""',
        "completion_codes.no_consent",
        "no_consent =",
        "2-64 letters or digits",
    ),
    (
        "failed-attention code too long",
        'failed_attention = "C3FAILED"',
        f'failed_attention = "{"A" * 65}"',
        "completion_codes.failed_attention",
        "failed_attention =",
        "2-64 letters or digits",
    ),
    (
        "missing completion code",
        'failed_attention = "C3FAILED"',
        "",
        "completion_codes.failed_attention",
        "[completion_codes]",
        "required",
    ),
    (
        "fail threshold of 1 (Prolific: two failures)",
        "fail_threshold = 2",
        "fail_threshold = 1",
        "attention_checks.fail_threshold",
        "fail_threshold",
        "greater than or equal to 2",
    ),
    (
        "fail threshold above the number of checks",
        "fail_threshold = 2",
        "fail_threshold = 3",
        "attention_checks",
        "[attention_checks]",
        "cannot exceed the number of checks",
    ),
    (
        "attention positions out of range",
        "count = 2",
        "positions = [1, 99]",
        "attention_checks",
        "[attention_checks]",
        "[99] are outside 1..27",
    ),
    (
        "duplicate attention positions",
        "count = 2",
        "positions = [3, 3]",
        "attention_checks",
        "[attention_checks]",
        "distinct",
    ),
    (
        "typo at top level",
        "timeout_minutes = 45",
        "timout_minutes = 45",
        "timout_minutes",
        "timout_minutes",
        "unknown field",
    ),
    (
        "typo in a table",
        'completed = "C1DONE"',
        'completed = "C1DONE"\ncompleted_code = "X1"',
        "completion_codes.completed_code",
        "completed_code",
        "unknown field",
    ),
    (
        "typo in texts",
        'instructions = "Pick the digit."',
        'instuctions = "Pick the digit."',
        "texts.instuctions",
        "instuctions",
        "unknown field",
    ),
    ("missing consent text", 'consent = "Do you agree?"', "", "texts.consent", "[texts]", "required"),
    (
        "empty instructions",
        'instructions = "Pick the digit."',
        'instructions = ""',
        "texts.instructions",
        "instructions =",
        "at least 1",
    ),
    (
        "consent states another number of images",
        'consent = "Do you agree?"',
        'consent = "You will see 30 small images. Do you agree?"',
        "texts",
        "[texts]",
        "consent: says '30 small images' but each participant labels 25 images",
    ),
    (
        "instructions state another number of images",
        'instructions = "Pick the digit."',
        'instructions = "Pick the digit in each of the 27 images."',
        "texts",
        "[texts]",
        "instructions: says '27 images'",
    ),
    (
        "minimum window width too small",
        "timeout_minutes = 45",
        "timeout_minutes = 45\nmin_viewport_width = 100",
        "min_viewport_width",
        "min_viewport_width =",
        "greater than or equal to 200",
    ),
    (
        "incompatible-device code with a space",
        'failed_attention = "C3FAILED"',
        'failed_attention = "C3FAILED"\nincompatible_device = "NO DEVICE"',
        "completion_codes.incompatible_device",
        "incompatible_device =",
        "2-64 letters or digits",
    ),
    (
        "unknown placeholder",
        'instructions = "Pick the digit."',
        'instructions = "Pick the digit in each of the {image} images."',
        "texts",
        "[texts]",
        "unknown placeholder {image}",
    ),
]


@pytest.mark.parametrize(("what", "old", "new", "field", "needle", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_invalid_field_is_named_with_its_line(
    what: str, old: str, new: str, field: str, needle: str, message: str
) -> None:
    assert old in VALID, what
    source = VALID.replace(old, new, 1)
    err = error_of(source)
    expected_line = line_no(source, needle)
    pattern = rf"^  study\.toml:{expected_line}: {re.escape(field)}: .*{re.escape(message)}"
    assert re.search(pattern, err, re.MULTILINE), f"{what}: expected line {expected_line}, field {field}:\n{err}"


def test_error_uses_the_given_file_name() -> None:
    err = error_of(VALID.replace('norm = "l2"', 'norm = "l3"'), filename="configs/my-study.toml")
    assert f"configs/my-study.toml:{line_no(VALID, 'norm =')}: norm:" in err


def test_all_problems_are_reported_at_once() -> None:
    src = VALID.replace('norm = "l2"', 'norm = "l9"').replace("scales = [1, 2, 4]", "scales = [0]")
    err = error_of(src)
    assert f"study.toml:{line_no(src, 'norm =')}: norm:" in err
    assert f"study.toml:{line_no(src, 'scales =')}: scales:" in err


@pytest.mark.parametrize("field", ["slug", "title", "dataset", "norm", "participants_per_condition"])
def test_missing_required_top_level_field(field: str) -> None:
    src = "\n".join(line for line in VALID.splitlines() if not line.startswith(f"{field} ="))
    err = error_of(src)
    assert re.search(rf"^  study\.toml(:\d+)?: {field}: this field is required$", err, re.MULTILINE), err


@pytest.mark.parametrize("table", ["texts", "completion_codes"])
def test_missing_required_table(table: str) -> None:
    start = VALID.index(f"[{table}]")
    end = VALID.find("\n[", start + 1)
    src = VALID[:start] + (VALID[end + 1 :] if end != -1 else "")
    err = error_of(src)
    assert re.search(rf"^  study\.toml: {table}: this field is required$", err, re.MULTILINE), err


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (VALID.replace('slug = "paper-l2-mnist"', "slug = paper"), "slug = paper"),
        (VALID.replace("timeout_minutes = 45", "timeout_minutes = 45\ntimeout_minutes = 46"), "timeout_minutes = 46"),
        (VALID.replace("[texts]", "[texts"), "[texts"),
        ('slug = "abc"\ntitle = """never closed\n', "never closed"),
    ],
)
def test_invalid_toml_names_the_line(source: str, needle: str) -> None:
    err = error_of(source)
    assert err.startswith(f"study.toml:{line_no(source, needle)}: not valid TOML:"), err


def test_attention_checks_can_be_disabled_or_placed() -> None:
    off = parse_study_config(VALID.replace("count = 2", "enabled = false\ncount = 2"))
    assert off.attention_positions() == [] and off.total_trials == 25
    placed = parse_study_config(VALID.replace("count = 2", "positions = [27, 5]"))
    assert placed.attention_positions() == [4, 26] and placed.total_trials == 27


def test_texts_get_the_configs_numbers_for_their_placeholders() -> None:
    src = VALID.replace('consent = "Do you agree?"', 'consent = "You will see {images} images. Do you agree?"')
    src = src.replace('instructions = "Pick the digit."', 'instructions = "{attention_checks} pages are checks."')
    cfg = parse_study_config(src)
    assert cfg.filled_texts() == ("You will see 25 images. Do you agree?", "2 pages are checks.")
    # the number written out in full agrees too, and is accepted
    cfg = parse_study_config(src.replace("{images} images", "25 images"))
    assert cfg.filled_texts()[0] == "You will see 25 images. Do you agree?"


def test_the_demo_texts_agree_with_the_demo_config() -> None:
    from app.demo.service import demo_config

    cfg = parse_study_config(demo_config())
    consent, instructions = cfg.filled_texts()
    assert f"You will see {cfg.trials_per_participant} small images" in consent
    assert f"there are {len(cfg.attention_positions())} attention checks" in instructions
    assert "{" not in consent + instructions


# --- [generation]: attacks per condition, dataset-norm pairs, defaults from the vocabulary ---------------

GEN_L0 = VALID.replace('norm = "l2"', 'norm = "l0"') + "\n[generation]\nseed = 3\n"


def test_generation_defaults_come_from_the_vocabulary() -> None:
    from app.design import DEFAULT_SOURCE_IMAGES

    cfg = parse_study_config(GEN_L0)
    gen = cfg.generation
    assert gen is not None and gen.images == DEFAULT_SOURCE_IMAGES["l0"] == 75
    assert gen.model == "mnist-default" and gen.judges == ["mnist-second", "mnist-advertorch-lenet5"]
    assert {c: a.name for c, a in gen.attacks.items()} == {"CB": "benign", "CAI": "l0_search", "CAP": "l0_paste"}
    assert gen.attacks["CAP"].params["mean_fraction"] == 0.0448  # every parameter is stored, defaults filled in
    l2 = parse_study_config(VALID.replace('dataset = "mnist"', 'dataset = "cifar10"') + "\n[generation]\n")
    assert l2.generation is not None and l2.generation.images == 100 and l2.generation.judges == []


def test_an_attack_and_its_parameters_can_be_chosen_per_condition() -> None:
    src = GEN_L0 + '\n[generation.attacks.CAI]\nname = "jsma"\nparams = { theta = 0.5, max_targets = 3 }\n'
    cfg = parse_study_config(src)
    assert cfg.generation is not None
    assert cfg.generation.attacks["CAI"].params["theta"] == 0.5
    assert cfg.generation.attacks["CAI"].params["max_targets"] == 3


@pytest.mark.parametrize(
    ("table", "needle", "message"),
    [
        ('[generation.attacks.CAI]\nname = "fgsm"\n', 'name = "fgsm"', "unknown attack 'fgsm'"),
        ('[generation.attacks.CAP]\nname = "jsma"\n', 'name = "jsma"', "does not make CAP stimuli for the l0 study"),
        ('[generation.attacks.CAP]\nname = "l0_paste"\nparams = { judge_models = ["x"] }\n', "params =", "unknown"),
        ('[generation.attacks.CAI]\nname = "jsma"\nparams = { thetta = 1 }\n', "params =", "unknown parameter"),
        ('[generation.attacks.CAI]\nname = "jsma"\nparams = { theta = 5 }\n', "params =", "less than or equal to 1"),
        ('[generation.attacks.CB]\nname = "jsma"\n', 'name = "jsma"', "does not make CB stimuli"),
    ],
)
def test_a_bad_attack_choice_is_an_error_with_file_and_line(table: str, needle: str, message: str) -> None:
    src = GEN_L0 + "\n" + table
    msg = error_of(src, filename="l0.toml")
    assert f"l0.toml:{line_no(src, needle)}:" in msg and message in msg, msg


def test_an_attack_for_a_condition_the_study_does_not_have() -> None:
    src = GEN_L0.replace('conditions = ["CB", "CAI", "CAP"]', 'conditions = ["CB", "CAI"]')
    src += '\n[generation.attacks.CAP]\nname = "l0_cap"\n'
    msg = error_of(src)
    assert "generation.attacks.CAP" in msg and "not one of the study's conditions" in msg


def test_cifar10_with_l0_is_refused_when_the_config_is_read() -> None:
    src = VALID.replace('dataset = "mnist"', 'dataset = "cifar10"').replace('norm = "l2"', 'norm = "l0"')
    msg = error_of(src, filename="c.toml")
    assert f"c.toml:{line_no(src, 'norm =')}: norm:" in msg and "does not run on cifar10" in msg


def test_judges_and_second_model_are_one_or_the_other() -> None:
    msg = error_of(GEN_L0 + 'judges = ["a"]\nsecond_model = "b"\n')
    assert "either judges or second_model" in msg
    cfg = parse_study_config(GEN_L0 + 'second_model = "b"\n')
    assert cfg.generation is not None and cfg.generation.judges == ["b"] and cfg.generation.second_model is None

def test_minimum_window_width_and_incompatible_device_code() -> None:
    cfg = parse_study_config(VALID)
    assert cfg.min_viewport_width is None and cfg.completion_codes.incompatible_device is None
    src = VALID.replace("timeout_minutes = 45", "timeout_minutes = 45\nmin_viewport_width = 768").replace(
        'failed_attention = "C3FAILED"', 'failed_attention = "C3FAILED"\nincompatible_device = "C4DEVICE"'
    )
    cfg = parse_study_config(src)
    assert cfg.min_viewport_width == 768 and cfg.completion_codes.incompatible_device == "C4DEVICE"
