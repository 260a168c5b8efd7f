"""`lpstudy analyze` and `lpstudy report` on a study that real participants walked over HTTP (both backends)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from typer.testing import CliRunner

from app.cli import cli

DEMOGRAPHICS = {"age": "31", "gender": "female", "student": "no", "employment": "full-time"}


def walk(client, slug: str, pid: str, *, answers: int, finish: bool) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": pid, "STUDY_ID": "c" * 24, "SESSION_ID": pid[::-1]})
    url = r.headers["location"]
    assert client.post(f"{url}/consent", data={"consent": "yes"}).status_code == 303
    assert client.post(f"{url}/instructions").status_code == 303
    for i in range(answers):
        form = HTMLParser(client.get(url).text).css_first("form#trial-form")
        data = {"label": str((i * 7 + len(pid)) % 10), "confidence": str(1 + i % 5), "rt_ms": str(900 + 37 * i)}
        assert client.post(form.attributes["action"], data=data).status_code == 303
    if finish:
        assert client.post(f"{url}/demographics", data=DEMOGRAPHICS).status_code == 303


@pytest.fixture
def walked(client, db, make_study, new_pid):  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="analysis-study", trials=4, pool=6, conditions=("CB", "CAP"), target=10)
    for _ in range(4):
        walk(client, slug, new_pid(), answers=4, finish=True)
    walk(client, slug, new_pid(), answers=2, finish=False)
    return slug


def run(settings, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, [*args, "--database-url", settings.database_url])


def test_analyze_matches_the_exported_answers(walked, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = run(settings, "analyze", walked, "--json", "--no-mixed")
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["schema"] == "lpstudy.analysis/1"
    assert r["sample"]["total"]["included"] == 4 and r["sample"]["total"]["not_finished"] == 1
    # The same numbers from the exported trials.csv (its `correct` column is the analysis' scoring).
    assert run(settings, "export", "--study", walked, "--out", str(tmp_path / "x")).exit_code == 0
    with (tmp_path / "x" / "trials.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with (tmp_path / "x" / "participants.csv").open(newline="") as fh:
        done = {p["prolific_pid"] for p in csv.DictReader(fh) if p["status"] == "completed"}
    for code in ("CB", "CAP"):
        per_user: dict[str, list[int]] = {}
        for row in rows:
            if row["condition"] == code and row["prolific_pid"] in done and row["kind"] == "stimulus":
                per_user.setdefault(row["prolific_pid"], []).append(int(row["correct"]))
        c = r["conditions"][code]
        assert c["n_participants"] == len(per_user) and c["n_answers"] == sum(map(len, per_user.values()))
        if per_user:
            expected = sum(sum(v) / len(v) for v in per_user.values()) / len(per_user)
            assert c["accuracy"]["mean"] == pytest.approx(expected)


def test_analyze_text_and_out_folder(walked, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "analysis"
    res = run(settings, "analyze", walked, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "Per condition" in res.output and "Between conditions" in res.output and "Traceback" not in res.output
    names = {p.name for p in out.iterdir()}
    assert {"analysis.json", "conditions.csv", "comparisons.csv", "items.csv", "fig3_accuracy.svg"} <= names
    with (out / "conditions.csv").open(newline="") as fh:
        assert [row["condition"] for row in csv.DictReader(fh)] == ["CB", "CAP"]
    svg = (out / "fig3_accuracy.svg").read_text()
    assert svg.startswith("<?xml") and "Accuracy by condition" in svg


def test_report_is_one_self_contained_file(walked, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "report.html"
    res = run(settings, "report", walked, "--out", str(path))
    assert res.exit_code == 0, res.output
    tree = HTMLParser(path.read_text())
    assert tree.css_first("h1").text() == "Test study"
    imgs = tree.css("figure img")
    assert len(imgs) >= 3 and all(i.attributes["src"].startswith("data:image/svg+xml;base64,") for i in imgs)
    assert not tree.css("script") and not tree.css("link[rel=stylesheet]")  # nothing outside the file
    assert 'slug = "analysis-study"' in tree.css_first("#config + pre").text()  # the config verbatim
    headings = [h.text() for h in tree.css("h2")]
    assert headings[:3] == ["Design", "Participants and exclusions", "Results per condition"]
    # a table wider than the page scrolls in its own box instead of running off the page
    assert tree.css("table") and all(t.parent.attributes.get("class") == "wide" for t in tree.css("table"))
    codes = [c.text() for c in tree.css("p code")]
    assert f"lpstudy analyze {walked} --json" in codes  # the command that gives the same result
    res = run(settings, "report", walked, "--include-test", "--out", str(path))
    assert res.exit_code == 0, res.output
    codes = [c.text() for c in HTMLParser(path.read_text()).css("p code")]
    assert f"lpstudy analyze {walked} --include-test --json" in codes


def test_bad_arguments_are_clear_errors(walked, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = run(settings, "analyze", "no-such-study")
    assert res.exit_code == 1 and "no study with slug 'no-such-study'" in res.output
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    res = run(settings, "analyze", walked, "--out", str(afile))
    assert res.exit_code == 1 and "is not a folder" in res.output
    res = run(settings, "analyze", walked, "--out", str(afile / "sub"))  # below a file: cannot be created
    assert res.exit_code == 1 and "cannot write to" in res.output and "Traceback" not in res.output
    res = run(settings, "package", walked, "--out", str(afile / "sub"))
    assert res.exit_code == 1 and "cannot write to" in res.output
    res = run(settings, "report", walked, "--out", str(tmp_path))
    assert res.exit_code == 1 and "is a folder" in res.output
    res = run(settings, "report", walked, "--out", str(tmp_path / "missing" / "r.html"))
    assert res.exit_code == 1 and "no such folder" in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)


def test_empty_study_analyses_without_error(db, make_study, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="nobody-yet", trials=2, pool=2)
    res = run(settings, "analyze", slug)
    assert res.exit_code == 0, res.output
    assert "No participant counts yet" in res.output
    assert run(settings, "report", slug, "--out", str(tmp_path / "r.html")).exit_code == 0


def test_data_package_is_psych_ds_and_gives_the_same_numbers(walked, settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from app.analysis import analyze
    from app.analysis.package import load_package
    from app.analysis.service import study_data

    out = tmp_path / "package"
    res = run(settings, "package", walked, "--out", str(out))
    assert res.exit_code == 0, res.output
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["@context"] == "https://schema.org" and desc["@type"] == "Dataset"
    measured = {v["name"] for v in desc["variableMeasured"]}
    files = sorted((out / "data").glob("*.csv"))
    assert [f.name for f in files] == [
        "study-analysisstudy_table-participants_data.csv",
        "study-analysisstudy_table-stimuli_data.csv",
        "study-analysisstudy_table-trials_data.csv",
    ]
    dictionary = pd.read_csv(out / "data_dictionary.csv")
    for f in files:  # Psych-DS: every column of every data file is in variableMeasured and the dictionary
        frame = pd.read_csv(f)
        assert set(frame.columns) <= measured
        table = f.name.split("_table-")[1].split("_")[0]
        assert set(frame.columns) == set(dictionary.loc[dictionary["table"] == table, "column"])
    trials = pd.read_csv(files[2])
    assert len(trials) == 4 * 4 + 4  # every trial of every participant (the unfinished one's 2 open trials too)
    for col in ("position", "true_label"):
        assert pd.api.types.is_integer_dtype(trials[col])
    parts = pd.read_csv(files[0])
    assert parts["included"].sum() == 4 and set(parts.loc[parts["included"] == 0, "exclusion"]) == {"not_finished"}
    assert (out / "study.toml").read_text().startswith('\nslug = "analysis-study"')
    # Analysed from the package, the numbers are those from the database.
    with db.session() as s:
        from_db = analyze(study_data(s, walked), mixed=False)
    from_pkg = analyze(load_package(out), mixed=False)
    from_db.pop("seconds"), from_pkg.pop("seconds")
    assert from_pkg == from_db
