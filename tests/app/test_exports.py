"""`lpstudy export`: tidy trials.csv and participants.csv after real participants walk the path over HTTP."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.models import Participant, Stimulus, Trial

TRIAL_COLUMNS = [
    "prolific_pid", "session_id", "condition", "position", "stimulus_id", "image_index", "true_label",
    "response_label", "confidence", "rt_ms", "shown_at", "answered_at",
]  # fmt: skip
PARTICIPANT_COLUMNS = [
    "prolific_pid", "study_id", "session_id", "condition", "status", "started_at", "finished_at", "age", "gender",
    "student", "employment",
]  # fmt: skip
DEMOGRAPHICS = {"age": "31", "gender": "female", "student": "no", "employment": "full-time"}


def enter(client, slug: str, pid: str, session_id: str) -> str:  # type: ignore[no-untyped-def]
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": pid, "STUDY_ID": "c" * 24, "SESSION_ID": session_id})
    assert r.status_code == 303, r.text
    return r.headers["location"]


def answer(client, url: str, label: int, confidence: int, rt_ms: int) -> None:  # type: ignore[no-untyped-def]
    r = client.get(url)
    assert r.status_code == 200
    form = HTMLParser(r.text).css_first("form#trial-form")
    assert form is not None, r.text[:300]
    action = form.attributes["action"]
    resp = client.post(action, data={"label": str(label), "confidence": str(confidence), "rt_ms": str(rt_ms)})
    assert resp.status_code == 303


def walk(client, slug: str, pid: str, *, answers: int, finish: bool, consent: str = "yes") -> None:  # type: ignore[no-untyped-def]
    url = enter(client, slug, pid, session_id=pid[::-1])
    assert client.post(f"{url}/consent", data={"consent": consent}).status_code == 303
    if consent != "yes":
        return
    assert client.post(f"{url}/instructions").status_code == 303
    for i in range(answers):
        answer(client, url, label=(i * 3) % 10, confidence=1 + i % 5, rt_ms=800 + 10 * i)
    if finish:
        assert client.post(f"{url}/demographics", data=DEMOGRAPHICS).status_code == 303


@pytest.fixture
def walked(client, db, make_study, new_pid):  # type: ignore[no-untyped-def]
    """Three completed participants, one half-way, one who declined consent."""
    slug = make_study(db, slug="export-study", trials=4, pool=6, conditions=("CB", "CAP"), target=10)
    pids = [new_pid() for _ in range(5)]
    for pid in pids[:3]:
        walk(client, slug, pid, answers=4, finish=True)
    walk(client, slug, pids[3], answers=2, finish=False)
    walk(client, slug, pids[4], answers=0, finish=False, consent="no")
    return slug, pids


def run_export(settings, slug: str, out: Path):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(
        cli, ["export", "--study", slug, "--out", str(out), "--database-url", settings.database_url]
    )


def test_export_columns_rows_and_values(walked, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slug, pids = walked
    out = tmp_path / "results"
    result = run_export(settings, slug, out)
    assert result.exit_code == 0, result.output
    assert f"Wrote 14 trials and 5 participants to {out}." in result.output

    with (out / "trials.csv").open(newline="", encoding="utf-8") as fh:
        trials = list(csv.DictReader(fh))
        header = list(trials[0].keys())
    assert header[: len(TRIAL_COLUMNS)] == TRIAL_COLUMNS
    assert len(trials) == 3 * 4 + 2  # one row per answered trial; unanswered ones are not rows

    with (out / "participants.csv").open(newline="", encoding="utf-8") as fh:
        parts = list(csv.DictReader(fh))
    assert list(parts[0].keys())[: len(PARTICIPANT_COLUMNS)] == PARTICIPANT_COLUMNS
    assert [p["prolific_pid"] for p in parts] == pids  # one row per participant, in arrival order
    assert [p["status"] for p in parts] == ["completed"] * 3 + ["active", "no_consent"]

    # every value matches the database
    with db.session() as s:
        for row in trials:
            p = s.scalar(select(Participant).where(Participant.prolific_pid == row["prolific_pid"]))
            t = s.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == int(row["position"]) - 1))
            st = s.get(Stimulus, t.stimulus_id)
            assert row["session_id"] == p.prolific_session_id == row["prolific_pid"][::-1]
            assert row["condition"] == st.condition.code
            assert (int(row["stimulus_id"]), int(row["image_index"]), int(row["true_label"])) == (
                st.id, st.image_index, st.label,
            )  # fmt: skip
            assert (int(row["response_label"]), int(row["confidence"]), int(row["rt_ms"])) == (
                t.response_label, t.confidence, t.rt_ms,
            )  # fmt: skip
    first = [r for r in trials if r["prolific_pid"] == pids[0]]
    assert [r["position"] for r in first] == ["1", "2", "3", "4"]
    assert [int(r["response_label"]) for r in first] == [0, 3, 6, 9]
    assert [int(r["confidence"]) for r in first] == [1, 2, 3, 4]
    assert [int(r["rt_ms"]) for r in first] == [800, 810, 820, 830]
    done = parts[0]
    assert (done["age"], done["gender"], done["student"], done["employment"]) == ("31", "female", "no", "full-time")
    assert done["study_id"] == "c" * 24 and done["session_id"] == pids[0][::-1]
    assert done["finished_at"] and parts[3]["finished_at"] == "" and parts[3]["age"] == ""
    assert parts[4]["finished_at"] != "" and parts[4]["age"] == ""


def test_csvs_load_in_pandas_with_sane_types(walked, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slug, _ = walked
    out = tmp_path / "results"
    assert run_export(settings, slug, out).exit_code == 0
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.columns[: len(TRIAL_COLUMNS)]) == TRIAL_COLUMNS and len(trials) == 14
    for col in ("position", "stimulus_id", "image_index", "true_label", "response_label", "confidence", "rt_ms"):
        assert pd.api.types.is_integer_dtype(trials[col]), (col, trials[col].dtype)
    for col in ("prolific_pid", "session_id", "condition"):
        assert trials[col].map(type).eq(str).all(), col
    assert set(trials["condition"]) <= {"CB", "CAP"}
    for col in ("shown_at", "answered_at"):
        ts = pd.to_datetime(trials[col], utc=True)
        assert ts.notna().all() and str(ts.dt.tz) == "UTC"
    shown = pd.to_datetime(trials["shown_at"], utc=True)
    answered = pd.to_datetime(trials["answered_at"], utc=True)
    assert (answered >= shown).all()
    assert ((answered - pd.Timestamp.now(tz="UTC")).abs() < pd.Timedelta(minutes=10)).all()

    parts = pd.read_csv(out / "participants.csv")
    assert list(parts.columns[: len(PARTICIPANT_COLUMNS)]) == PARTICIPANT_COLUMNS and len(parts) == 5
    started = pd.to_datetime(parts["started_at"], utc=True)
    finished = pd.to_datetime(parts["finished_at"], utc=True)
    assert started.notna().all() and finished.notna().sum() == 4
    assert (finished.dropna() >= started[finished.notna()]).all()
    # age is missing for two participants: a numeric column with NaN, not text
    assert pd.api.types.is_numeric_dtype(parts["age"]) and parts["age"].isna().sum() == 2
    assert parts.loc[parts["status"] == "completed", "age"].eq(31).all()
    for col in ("prolific_pid", "study_id", "session_id", "condition", "status"):
        assert parts[col].map(type).eq(str).all(), col

    # completed-only rows keep integer ages
    done = pd.read_csv(out / "participants.csv").query("status == 'completed'")
    assert done["age"].astype("int64").eq(31).all()

    # read as text, the files are exactly what the csv module sees: nothing is lost or split
    raw = pd.read_csv(out / "trials.csv", dtype=str, keep_default_na=False)
    with (out / "trials.csv").open(newline="", encoding="utf-8") as fh:
        assert raw.to_dict("records") == list(csv.DictReader(fh))


def test_export_of_a_study_without_participants(db, make_study, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="nobody-yet", trials=2, pool=2)
    out = tmp_path / "empty"
    result = run_export(settings, slug, out)
    assert result.exit_code == 0 and "Wrote 0 trials and 0 participants" in result.output
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 0 and list(trials.columns[: len(TRIAL_COLUMNS)]) == TRIAL_COLUMNS
    assert len(pd.read_csv(out / "participants.csv")) == 0


def test_export_unknown_study_is_a_clear_error(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_export(settings, "no-such", tmp_path / "x")
    assert result.exit_code == 1 and "no study with slug 'no-such'" in result.output
    assert not (tmp_path / "x" / "trials.csv").exists()


def _mark_excluded(db, slug: str) -> int:  # type: ignore[no-untyped-def]
    """An admin's exclusion of the first stimulus anyone answered; its id."""
    import datetime as dt

    from app.models import Study

    with db.session() as s:
        study = s.scalar(select(Study).where(Study.slug == slug))
        first = s.scalar(
            select(Trial.stimulus_id)
            .join(Participant, Participant.id == Trial.participant_id)
            .where(Participant.study_id == study.id, Trial.answered_at.is_not(None))
            .order_by(Trial.id)
            .limit(1)
        )
        stim = s.get(Stimulus, first)
        stim.excluded_at, stim.excluded_reason = dt.datetime.now(dt.UTC), "blurry"
        return int(first)


def _analysis_sample(db, slug: str):  # type: ignore[no-untyped-def]
    from app.analysis.load import load_study
    from app.analysis.sample import select_sample
    from app.models import Study

    with db.session() as s:
        return select_sample(load_study(s, s.scalar(select(Study).where(Study.slug == slug))))


def test_exports_say_who_and_what_the_analysis_excludes(walked, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slug, pids = walked
    gone = _mark_excluded(db, slug)
    out = tmp_path / "results"
    assert run_export(settings, slug, out).exit_code == 0
    parts = pd.read_csv(out / "participants.csv", dtype=str, keep_default_na=False)
    trials = pd.read_csv(out / "trials.csv", dtype=str, keep_default_na=False)
    assert list(parts["included"]) == ["1", "1", "1", "0", "0"]
    assert list(parts["exclusion"]) == ["", "", "", "not_finished", "no_consent"]
    by_pid = dict(zip(parts["prolific_pid"], parts["exclusion"], strict=True))
    assert (trials["participant_exclusion"] == trials["prolific_pid"].map(by_pid)).all()
    assert (trials["participant_included"] == (trials["participant_exclusion"] == "").astype(int).astype(str)).all()
    assert set(trials.loc[trials["stimulus_excluded"] == "1", "stimulus_id"]) == {str(gone)}
    assert set(trials["stimulus_excluded"]) == {"0", "1"}
    # the files alone reproduce the analysis's sample: who counts, and how many answers
    sample = _analysis_sample(db, slug)
    kept = trials[(trials["participant_included"] == "1") & (trials["stimulus_excluded"] == "0")]
    assert set(parts.loc[parts["included"] == "1", "prolific_pid"]) == {p.key for p in sample.included}
    assert len(kept) == len(sample.answers) > 0
    assert len(kept) < (trials["participant_included"] == "1").sum()  # the exclusion removed some answers


def test_the_data_package_trials_carry_the_same_exclusions(walked, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.analysis.load import load_study
    from app.analysis.package import load_package, table_paths, write_package
    from app.models import Study

    slug, _ = walked
    gone = _mark_excluded(db, slug)
    with db.session() as s:
        data = load_study(s, s.scalar(select(Study).where(Study.slug == slug)))
    write_package(data, tmp_path / "pkg")
    paths = table_paths(tmp_path / "pkg", slug)
    trials = pd.read_csv(paths["trials"], dtype=str, keep_default_na=False)
    parts = pd.read_csv(paths["participants"], dtype=str, keep_default_na=False)
    by_pid = dict(zip(parts["participant_id"], parts["exclusion"], strict=True))
    assert (trials["participant_exclusion"] == trials["participant_id"].map(by_pid)).all()
    assert set(trials.loc[trials["stimulus_excluded"] == "1", "stimulus_id"]) == {str(gone)}
    sample = _analysis_sample(db, slug)
    kept = trials[(trials["participant_included"] == "1") & (trials["stimulus_excluded"] == "0")]
    kept = kept[(kept["kind"] == "stimulus") & (kept["response_label"] != "")]
    assert len(kept) == len(sample.answers) > 0
    dictionary = pd.read_csv(tmp_path / "pkg" / "data_dictionary.csv", dtype=str, keep_default_na=False)
    described = set(dictionary.loc[dictionary["table"] == "trials", "column"])
    assert {"participant_included", "participant_exclusion", "stimulus_excluded"} <= described
    assert list(trials.columns) == list(dictionary.loc[dictionary["table"] == "trials", "column"])
    load_package(tmp_path / "pkg")  # still reads back
