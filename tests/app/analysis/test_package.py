"""The data package in R: `analysis/read_lpstudy.R` reads every table with the data dictionary's types and NA for
every empty cell, and plain read.csv() behaves as the package README says. The R tests run only where `Rscript`
exists (CI has no R; docs/analysis.md says so)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from app.analysis import analyze
from app.analysis.package import R_READER, load_package, table_paths, write_package

R_CLASS = {"integer": "integer", "number": "numeric", "string": "character", "boolean": "logical",
           "datetime": "POSIXct"}  # fmt: skip

needs_r = pytest.mark.skipif(shutil.which("Rscript") is None, reason="R (Rscript) is not installed")

# One line per column: table, column, class, NAs, and the values (numbers summed, booleans counted, times as
# epoch seconds summed, text joined), so that Python can recompute each from the CSV.
SUMMARY = r"""
args <- commandArgs(trailingOnly = TRUE)
source(file.path(args[1], "analysis", "read_lpstudy.R"))
pkg <- read_lpstudy(args[1])
for (t in names(pkg)) for (col in names(pkg[[t]])) {
  v <- pkg[[t]][[col]]
  value <- if (inherits(v, "POSIXct")) sprintf("%.6f", sum(as.numeric(v), na.rm = TRUE))
           else if (is.logical(v)) as.character(sum(v, na.rm = TRUE))
           else if (is.numeric(v)) sprintf("%.6f", sum(v, na.rm = TRUE))
           else paste(ifelse(is.na(v), "<NA>", v), collapse = "|")
  cat(t, col, class(v)[1], sum(is.na(v)), value, sep = "\t"); cat("\n")
}
"""
PLAIN = r"""
args <- commandArgs(trailingOnly = TRUE)
for (f in args) { x <- read.csv(f); for (col in names(x)) {
  cat(basename(f), col, class(x[[col]])[1], sum(is.na(x[[col]])),
      if (is.character(x[[col]])) sum(x[[col]] == "") else 0, sep = "\t"); cat("\n") } }
"""


def _rscript(tmp_path: Path, script: str, *args: str) -> list[list[str]]:
    path = tmp_path / "check.R"
    path.write_text(script)
    res = subprocess.run(["Rscript", str(path), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return [line.split("\t") for line in res.stdout.splitlines() if line]


def _package(hand, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    data = hand()
    # one value left out of a text column (besides the hand data's missing ages, confidences and times)
    data.participants[:] = [dataclasses.replace(p, student=None) if p.key == "p2" else p for p in data.participants]
    out = tmp_path / "pkg"
    write_package(data, out, include_test=True)
    return out


def test_the_package_carries_the_r_reader(hand, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = _package(hand, tmp_path)
    assert (out / "analysis" / "read_lpstudy.R").read_text() == R_READER.read_text()
    assert "read_lpstudy" in (out / "README.md").read_text()


@needs_r
def test_r_reads_every_table_with_the_dictionary_types_and_na(hand, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = _package(hand, tmp_path)
    dictionary = {(r["table"], r["column"]): r["type"] for r in csv.DictReader((out / "data_dictionary.csv").open())}
    got = {(t, c): (cls, int(na), value) for t, c, cls, na, value in _rscript(tmp_path, SUMMARY, str(out))}
    assert set(got) == set(dictionary)  # every column of every table, nothing else
    for table, path in table_paths(out, "hand").items():
        rows = list(csv.DictReader(path.open(newline="")))
        assert rows, table
        for col in rows[0]:
            typ = dictionary[(table, col)]
            cls, na, value = got[(table, col)]
            cells = [r[col] for r in rows]
            assert cls == R_CLASS[typ], (table, col, cls)
            assert na == sum(c == "" for c in cells), (table, col)  # every empty cell is NA, in text columns too
            present = [c for c in cells if c != ""]
            if typ in ("integer", "number"):
                assert float(value) == pytest.approx(sum(float(c) for c in present)), (table, col)
            elif typ == "boolean":
                assert set(present) <= {"0", "1"} and int(value) == present.count("1"), (table, col)
            elif typ == "datetime":
                secs = sum(dt.datetime.fromisoformat(c.replace("Z", "+00:00")).timestamp() for c in present)
                assert float(value) == pytest.approx(secs, abs=1e-3), (table, col)
            else:
                assert value.split("|") == [c if c != "" else "<NA>" for c in cells], (table, col)
    # the columns the hand data leaves empty: times never recorded, an unanswered confidence, a missing age
    assert got[("trials", "shown_at")][:2] == ("POSIXct", len(rows_of(out, "trials")))
    assert got[("participants", "student")][1] == 4 and got[("participants", "age")][1] == 4


def rows_of(out: Path, table: str) -> list[dict[str, str]]:
    return list(csv.DictReader(table_paths(out, "hand")[table].open(newline="")))


@needs_r
def test_plain_read_csv_guesses_types_as_the_readme_says(hand, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = _package(hand, tmp_path)
    paths = table_paths(out, "hand")
    got = {(f, c): (cls, int(na), int(empty)) for f, c, cls, na, empty in
           _rscript(tmp_path, PLAIN, *(str(p) for p in paths.values()))}  # fmt: skip
    trials, participants = paths["trials"].name, paths["participants"].name
    assert got[(trials, "shown_at")][0] == "logical"  # no value at all: logical, every cell NA
    assert got[(participants, "started_at")][0] == "character"  # times stay text
    assert got[(trials, "correct")][0] == "integer"  # booleans stay 0/1
    assert got[(trials, "confidence")][:2] == ("integer", 1)  # an empty number cell is NA ...
    assert got[(participants, "student")] == ("character", 0, 4)  # ... an empty text cell is ""


def test_metric_types_follow_the_values_and_read_back_unchanged(hand, toml_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # What the worker stores beside the measures: booleans (judges_agree), a key that is null everywhere
    # (ssim_opt), an integer-valued measure stored as a float by a manifest (l0 = 3.0), text.
    data = dataclasses.replace(hand(), config_source=toml_for("hand", 3, ("CB", "CAI")))
    extra = {"judges_agree": True, "ssim_opt": None, "l0": 3.0, "attack_name": "paste", "k": 7}
    data.stimuli[:] = [dataclasses.replace(s, metrics={**s.metrics, **extra, "success": s.id % 2 == 0})
                       for s in data.stimuli]  # fmt: skip
    out = tmp_path / "pkg"
    write_package(data, out)
    types = {r["column"]: r["type"] for r in csv.DictReader((out / "data_dictionary.csv").open())
             if r["table"] == "stimuli"}  # fmt: skip
    assert "ssim_opt" not in types  # no value at all: no column
    assert (types["judges_agree"], types["success"], types["l0"], types["k"]) == ("boolean", "boolean", "number",
                                                                                   "integer")  # fmt: skip
    assert types["attack_name"] == "string" and types["model_pred"] == "integer" and types["l2"] == "number"
    back = load_package(out)
    want = [{k: v for k, v in s.metrics.items() if v is not None} for s in data.stimuli]
    assert [s.metrics for s in back.stimuli] == want
    assert [type(s.metrics["judges_agree"]) for s in back.stimuli] == [bool] * len(want)
    # so the package's analysis is the database's: a boolean is no metric against humans in either
    same_rules = dataclasses.replace(data, options=back.options, fail_threshold=back.fail_threshold)
    a, b = analyze(same_rules, mixed=False), analyze(back, mixed=False)
    assert a["metrics_vs_human"] == b["metrics_vs_human"] and a["conditions"] == b["conditions"]
    assert "judges_agree" not in {m["metric"] for m in a["metrics_vs_human"]["metrics"]}
