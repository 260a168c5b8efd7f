"""The data package: a Psych-DS dataset of a study's results, and the loader that reads it back.

Layout (Psych-DS 1.x: a dataset_description.json at the root, data files under data/ named with keyword-value
pairs and the `_data.csv` suffix; every column named in variableMeasured):

    dataset_description.json      schema.org Dataset with variableMeasured (one PropertyValue per column)
    data_dictionary.csv           every column of every table: table, column, type, unit, description
    study.toml                    the study config, verbatim
    README.md                     what is where
    analysis/read_lpstudy.R       read_lpstudy(): the three tables in R with the dictionary's types, empty = NA
    data/study-<slug>_table-trials_data.csv         one row per trial (attention checks included, kind says which)
    data/study-<slug>_table-participants_data.csv   one row per participant, with included and exclusion
    data/study-<slug>_table-stimuli_data.csv        one row per stimulus, one column per stored metric

UTF-8, comma, header row, empty cell = missing, ISO 8601 UTC times: pandas and R read the files unchanged.
R's plain read.csv() guesses types (an empty text cell is "", an all-empty column is logical, times are text);
analysis/read_lpstudy.R reads them as the data dictionary says (checked by tests/app/analysis/test_package.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from app.analysis.load import ParticipantRecord, StimulusRecord, StudyData, TrialRecord, study_config_of
from app.analysis.sample import select_sample
from app.analysis.scoring import is_correct
from app.errors import ConfigError
from app.exports import iso_utc

R_READER = Path(__file__).with_name("read_lpstudy.R")

# (column, type, unit, description) per table. Types are the data dictionary's: integer, number, string,
# boolean (0/1), datetime (ISO 8601, UTC).
TRIALS = [
    ("participant_id", "string", "", "The participant's Prolific ID (PROLIFIC_PID)"),
    ("condition", "string", "", "Between-subjects condition: CB (benign), CAI (adversarial, meant to be "
     "imperceptible) or CAP (adversarial, meant to be perceptible)"),
    ("position", "integer", "", "Order of the trial for this participant, from 1"),
    ("kind", "string", "", "stimulus (an image to label) or attention (an instructed-response check)"),
    ("stimulus_id", "integer", "", "The stimulus shown (stimuli table); empty for an attention check"),
    ("true_label", "integer", "", "The correct answer: the source image's label (0-9), or the label an "
     "attention check instructed"),
    ("response_label", "integer", "", "The label the participant chose (0-9); empty if not answered"),
    ("correct", "boolean", "", "1 if response_label equals true_label, 0 if not, empty if not answered"),
    ("confidence", "integer", "", "The participant's confidence, 1 (a guess) to 5 (certain); empty if not given"),
    ("rt_ms", "integer", "milliseconds", "Response time measured in the browser; empty without JavaScript"),
    ("shown_at", "datetime", "", "When the trial was first shown (server time, UTC)"),
    ("answered_at", "datetime", "", "When the answer was stored (server time, UTC)"),
    ("participant_included", "boolean", "", "1 if the participant counts in the analysis under the study's "
     "preregistered rule (participants.included)"),
    ("participant_exclusion", "string", "", "Why the participant does not count (participants.exclusion): test, "
     "no_consent, not_finished, attention, no_answers; empty when included"),
    ("stimulus_excluded", "boolean", "", "1 if an admin took the stimulus out of the pool (stimuli.excluded): "
     "this answer does not count; empty for an attention check"),
]  # fmt: skip
PARTICIPANTS = [
    ("participant_id", "string", "", "The participant's Prolific ID (PROLIFIC_PID)"),
    ("condition", "string", "", "Between-subjects condition: CB, CAI or CAP"),
    ("status", "string", "", "completed, failed_attention, no_consent or active (in progress or timed out)"),
    ("is_test", "boolean", "", "1 for a test participant (admin preview or lpstudy bots pilot)"),
    ("test_kind", "string", "", "preview or bot for a test participant; empty otherwise"),
    ("included", "boolean", "", "1 if the participant counts in the analysis under the study's preregistered rule"),
    ("exclusion", "string", "", "Why the participant does not count: test, no_consent, not_finished, attention, "
     "no_answers; empty when included"),
    ("attention_failures", "integer", "", "Attention checks failed"),
    ("started_at", "datetime", "", "Arrival from Prolific (UTC)"),
    ("finished_at", "datetime", "", "End of the study (UTC); empty if not finished"),
    ("age", "integer", "years", "Age as reported"),
    ("gender", "string", "", "Gender as reported (female, male, non-binary, other, prefer-not-to-say)"),
    ("student", "string", "", "Student status as reported (yes, no, prefer-not-to-say)"),
    ("employment", "string", "", "Employment status as reported"),
]  # fmt: skip
STIMULI_BASE = [
    ("stimulus_id", "integer", "", "The stimulus (trials.stimulus_id)"),
    ("condition", "string", "", "Between-subjects condition: CB, CAI or CAP"),
    ("image_index", "integer", "", "Index of the source image in the dataset's test split; the same source image "
     "has the same index in every condition"),
    ("true_label", "integer", "", "The source image's label (0-9)"),
    ("excluded", "boolean", "", "1 if an admin took the stimulus out of the pool; its answers do not count"),
    ("excluded_reason", "string", "", "Why it was taken out (empty if not)"),
]  # fmt: skip
METRICS = {
    "l0": ("integer", "pixels", "Pixels changed from the source image (L0 distance)"),
    "l0_frac": ("number", "fraction", "Share of pixels changed"),
    "l2": ("number", "", "L2 distance from the source image, pixels scaled to [0, 1]"),
    "linf": ("number", "", "L-infinity distance from the source image, pixels scaled to [0, 1]"),
    "ssim": ("number", "", "Structural similarity (SSIM) to the source image"),
    "psnr": ("number", "dB", "Peak signal-to-noise ratio against the source image; empty where the stimulus equals "
             "its source (infinite)"),
    "uqi": ("number", "", "Universal quality index against the source image"),
    "model_pred": ("integer", "", "The attacked model's label for the stimulus (0-9)"),
    "model_conf": ("number", "probability", "The attacked model's probability for model_pred"),
    "second_pred": ("integer", "", "An independent model's label for the stimulus (0-9)"),
    "target": ("integer", "", "The label the attack aimed for (0-9); empty for an untargeted stimulus"),
    "success": ("boolean", "", "1 if the attack reached its goal"),
    "budget_ok": ("boolean", "", "1 if the perturbation is within the condition's norm budget"),
    "judges_agree": ("boolean", "", "1 if every judge model gives the stimulus the same label as the attacked one"),
    "k": ("integer", "pixels", "Pixels pasted from the donor digit (L0 paste attack)"),
    "k_drawn": ("integer", "pixels", "Pixels first drawn for the paste, before it was accepted"),
    "min_judge_conf": ("number", "probability", "The judge models' lowest probability for the new label"),
    "iterations": ("integer", "", "Attack iterations spent on the stimulus"),
    "evaluations": ("integer", "", "Model evaluations the L0 search spent on the stimulus"),
    "seconds": ("number", "seconds", "Time the generator spent on the stimulus"),
    "source_position": ("integer", "", "The source image's place in the study's list of source images"),
}
NOT_COLUMNS = {"params", "note", "attack", "model_id", "second_model_id", "ssim_variant", "norm", "budget"}


def _slug_value(slug: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", slug) or "study"


def table_paths(out: Path, slug: str) -> dict[str, Path]:
    base = out / "data"
    v = _slug_value(slug)
    return {t: base / f"study-{v}_table-{t}_data.csv" for t in ("trials", "participants", "stimuli")}


def _ts(value: dt.datetime | None) -> str:
    return iso_utc(value, "microseconds")


def _c(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    return str(v)


def _metric_columns(stimuli: list[StimulusRecord]) -> dict[str, str]:
    """Metric column -> its dictionary type, from the values stored (a key with no value at all is no column).

    The type is what every value fits, so that a reader given the dictionary's types (analysis/read_lpstudy.R) reads
    each cell: boolean if all are booleans, integer if all are whole numbers, number if all are numbers, else string.
    """
    values: dict[str, list[Any]] = {}
    for s in stimuli:
        for k, v in s.metrics.items():
            if k not in NOT_COLUMNS and v is not None and not isinstance(v, dict | list):
                values.setdefault(k, []).append(v)
    order = sorted(values, key=lambda k: (k not in METRICS, list(METRICS).index(k) if k in METRICS else 0, k))
    return {k: _type_of(values[k]) for k in order}


def _type_of(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    return "string"


def _exclusion_of(data: StudyData, include_test: bool) -> dict[str, str]:
    """participant key -> exclusion reason ('' when included): the analysis's own rule (sample.select_sample)."""
    return select_sample(data, include_test=include_test).reason_of


def write_package(data: StudyData, out: Path, *, include_test: bool = False) -> dict[str, int]:
    """Write the Psych-DS dataset into `out`; returns the number of rows per table."""
    paths = table_paths(out, data.slug)
    paths["trials"].parent.mkdir(parents=True, exist_ok=True)
    exclusion = _exclusion_of(data, include_test)
    keep = {p.key for p in data.participants if include_test or not p.is_test}
    metric_cols = _metric_columns(data.stimuli)
    counts = {
        "trials": _write_csv(paths["trials"], [c[0] for c in TRIALS], _trial_rows(data, keep, exclusion)),
        "participants": _write_csv(
            paths["participants"], [c[0] for c in PARTICIPANTS], _participant_rows(data, keep, exclusion)
        ),
        "stimuli": _write_csv(
            paths["stimuli"], [c[0] for c in STIMULI_BASE] + list(metric_cols), _stimulus_rows(data, metric_cols)
        ),
    }
    dictionary = _dictionary(metric_cols)
    _write_csv(out / "data_dictionary.csv", ["table", "column", "type", "unit", "description"], dictionary)
    (out / "study.toml").write_text(data.config_source, encoding="utf-8")
    (out / "analysis").mkdir(exist_ok=True)
    (out / "analysis" / R_READER.name).write_text(R_READER.read_text(encoding="utf-8"), encoding="utf-8")
    (out / "dataset_description.json").write_text(json.dumps(_description(data, dictionary), indent=2) + "\n")
    (out / "README.md").write_text(_readme(data, paths, out, counts), encoding="utf-8")
    return counts


def _write_csv(path: Path, header: list[str], rows: Iterable[Sequence[Any]]) -> int:
    """One table: UTF-8, comma, a header row. Returns the number of rows below the header."""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def _trial_rows(data: StudyData, keep: set[str], exclusion: dict[str, str]) -> Iterator[list[Any]]:
    cond_of = {p.key: p.condition for p in data.participants}
    excluded_stimuli = {s.id for s in data.stimuli if s.excluded}
    for t in data.trials:
        if t.participant not in keep:
            continue
        ok = is_correct(t.response, t.truth)
        why = exclusion[t.participant]
        gone = "" if t.stimulus_id is None else int(t.stimulus_id in excluded_stimuli)
        yield [t.participant, cond_of[t.participant], t.position + 1, t.kind, _c(t.stimulus_id), _c(t.truth),
               _c(t.response), "" if ok is None else int(ok), _c(t.confidence), _c(t.rt_ms),
               _ts(t.shown_at), _ts(t.answered_at), int(not why), why, gone]  # fmt: skip


def _participant_rows(data: StudyData, keep: set[str], exclusion: dict[str, str]) -> Iterator[list[Any]]:
    for p in data.participants:
        if p.key not in keep:
            continue
        why = exclusion[p.key]
        yield [p.key, p.condition, p.status, int(p.is_test), _c(p.test_kind), int(not why), why,
               p.attention_failures, _ts(p.started_at), _ts(p.finished_at), _c(p.age), _c(p.gender),
               _c(p.student), _c(p.employment)]  # fmt: skip


def _stimulus_rows(data: StudyData, metric_cols: dict[str, str]) -> Iterator[list[Any]]:
    for s in data.stimuli:
        yield [s.id, s.condition, s.image_index, s.label, int(s.excluded), _c(s.excluded_reason)] + [
            _c(s.metrics.get(k)) for k in metric_cols
        ]


def _dictionary(metric_cols: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    rows = [("trials", *c) for c in TRIALS] + [("participants", *c) for c in PARTICIPANTS]
    rows += [("stimuli", *c) for c in STIMULI_BASE]
    for k, typ in metric_cols.items():
        _known, unit, desc = METRICS.get(k, (typ, "", f"Stimulus metric '{k}' as stored with the stimulus"))
        rows.append(("stimuli", k, typ, unit, desc))  # the type the values have (a manifest may store l0 as 3.0)
    return rows


def _description(data: StudyData, dictionary: list[tuple[str, str, str, str, str]]) -> dict[str, Any]:
    variables: dict[str, dict[str, Any]] = {}
    for table, col, typ, unit, desc in dictionary:
        v = variables.setdefault(col, {"@type": "PropertyValue", "name": col, "description": desc})
        v.setdefault("tables", []).append(table)
        v["valueType"] = typ
        if unit:
            v["unitText"] = unit
    return {
        "@context": "https://schema.org",
        "@type": "Dataset",
        "name": data.title,
        "identifier": data.slug,
        "description": (
            f"Human labels of {data.dataset} images in conditions {', '.join(data.conditions)} ({data.norm} study; "
            "after Sharif, Bauer & Reiter 2018), collected with lpstudy."
        ),
        "dateCreated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "keywords": ["adversarial examples", "human perception", "Lp norms", data.dataset, data.norm],
        "variableMeasured": list(variables.values()),
    }


def _readme(data: StudyData, paths: dict[str, Path], out: Path, counts: dict[str, int]) -> str:
    lines = [f"# {data.title} ({data.slug})", "", "A Psych-DS dataset written by `lpstudy package`.", ""]
    for t, p in paths.items():
        lines.append(f"- `{p.relative_to(out)}`: {counts[t]} rows")
    lines += [
        "- `data_dictionary.csv`: every column, its type, unit and meaning",
        "- `dataset_description.json`: the same as schema.org metadata (variableMeasured)",
        "- `study.toml`: the study config, verbatim (the analysis rules are its [analysis] table)",
        f"- `analysis/{R_READER.name}`: reads the tables in R with the dictionary's types",
        "",
        "Empty cells are missing values; times are ISO 8601 in UTC.",
        "",
        "In pandas: `pd.read_csv(file)` (empty cells are NaN; integer columns with an empty cell become floats).",
        "",
        f"In R: `source(\"analysis/{R_READER.name}\"); pkg <- read_lpstudy(\".\")` gives `pkg$trials`,",
        "`pkg$participants` and `pkg$stimuli` typed as `data_dictionary.csv` says (booleans logical, times POSIXct",
        "in UTC, every empty cell NA). Plain `read.csv(file, na.strings = \"\")` reads the same values but guesses",
        "the types: a column with no value at all comes back logical, times stay text, booleans stay 0/1.",
        "",
    ]
    return "\n".join(lines)


# --- reading a package back -----------------------------------------------------------------------


def _int(v: str) -> int | None:
    return int(v) if v != "" else None


def _time(v: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(v.replace("Z", "+00:00")) if v else None


def _typed(v: str, typ: str | None) -> Any:
    """A stimulus metric cell as the data dictionary types it (a package without a dictionary entry: guessed)."""
    if typ == "boolean":
        return v == "1"
    if typ == "integer":
        return int(v)
    if typ == "number":
        return float(v)
    if typ == "string":
        return v
    return _number(v)


def _number(v: str) -> Any:
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def load_package(folder: Path) -> StudyData:
    """The StudyData of a package written by write_package (for re-analysis, and to check it against the database)."""
    toml = folder / "study.toml"
    if not toml.is_file():
        raise ConfigError(f"{folder}: not an lpstudy data package (no study.toml)")
    source = toml.read_text(encoding="utf-8")
    cfg = study_config_of(source)
    if cfg is None:
        raise ConfigError(f"{toml}: not a valid study config")
    paths = table_paths(folder, cfg.slug)
    for p in paths.values():
        if not p.is_file():
            raise ConfigError(f"{folder}: missing {p.relative_to(folder)}")

    def rows(name: str) -> list[dict[str, str]]:
        with paths[name].open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    base = {c[0] for c in STIMULI_BASE}
    types: dict[str, str] = {}
    if (folder / "data_dictionary.csv").is_file():
        with (folder / "data_dictionary.csv").open(newline="", encoding="utf-8") as fh:
            types = {r["column"]: r["type"] for r in csv.DictReader(fh) if r.get("table") == "stimuli"}
    stimuli = [
        StimulusRecord(int(r["stimulus_id"]), r["condition"], int(r["image_index"]), int(r["true_label"]),
                       {k: _typed(v, types.get(k)) for k, v in r.items() if k not in base and v != ""},
                       excluded=r["excluded"] == "1", excluded_reason=r["excluded_reason"] or None)
        for r in rows("stimuli")
    ]  # fmt: skip
    participants = [
        ParticipantRecord(r["participant_id"], r["condition"], r["status"], is_test=r["is_test"] == "1",
                          test_kind=r["test_kind"] or None, attention_failures=int(r["attention_failures"]),
                          started_at=_time(r["started_at"]), finished_at=_time(r["finished_at"]), age=_int(r["age"]),
                          gender=r["gender"] or None, student=r["student"] or None,
                          employment=r["employment"] or None)
        for r in rows("participants")
    ]  # fmt: skip
    trials = [
        TrialRecord(r["participant_id"], int(r["position"]) - 1, r["kind"], _int(r["stimulus_id"]),
                    _int(r["true_label"]), _int(r["response_label"]), _int(r["confidence"]), _int(r["rt_ms"]),
                    answered_at=_time(r["answered_at"]), shown_at=_time(r["shown_at"]))
        for r in rows("trials")
    ]  # fmt: skip
    ac = cfg.attention_checks
    title = cfg.title
    desc = folder / "dataset_description.json"
    if desc.is_file():
        try:
            title = json.loads(desc.read_text(encoding="utf-8")).get("name") or title
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{desc}: not valid JSON ({exc})") from exc
    return StudyData(
        slug=cfg.slug, title=title, dataset=cfg.dataset, norm=cfg.norm, conditions=list(cfg.conditions),
        labels=list(cfg.labels or []), trials_per_participant=cfg.trials_per_participant, config_source=source,
        options=cfg.analysis, fail_threshold=ac.fail_threshold if ac is not None and ac.enabled else None,
        participants=participants, trials=trials, stimuli=stimuli,
    )  # fmt: skip
