"""The validation issue #9 asks for last: the same study, run through the real server with `lpstudy bots`, gives
the same numbers from the database as from the exported files.

A uvicorn subprocess serves the test database (SQLite file or PostgreSQL); `lpstudy bots` walks simulated
participants through the real HTTP pages (truth responder, then random); the analysis from the database is
compared with the per-user accuracies recomputed from `lpstudy export`'s trials.csv and with the analysis of the
Psych-DS package that `lpstudy package` wrote.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.analysis import analyze
from app.analysis.package import load_package
from app.analysis.service import study_data
from app.cli import cli
from tests.servers import server_env, uvicorn_server

ATTENTION = "[attention_checks]\ncount = 2\nfail_threshold = 2\n"


@pytest.fixture
def served(settings, db, make_study) -> Iterator[tuple[str, str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="bots-study", trials=5, pool=8, target=30, extra=ATTENTION)
    env = server_env(settings.database_url, settings.secret_key)
    with uvicorn_server(env) as base:
        yield slug, base, env


def _cli(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, [*args, "--database-url", env["LPSTUDY_DATABASE_URL"]], env=env)
    assert res.exit_code == 0, res.output
    return res


def _from_export(folder: Path) -> dict[str, float]:
    """Mean per-user accuracy per condition, from trials.csv and participants.csv alone."""
    with (folder / "participants.csv").open(newline="") as fh:
        done = {p["prolific_pid"] for p in csv.DictReader(fh) if p["status"] == "completed"}
    per_user: dict[tuple[str, str], list[int]] = {}
    with (folder / "trials.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["kind"] == "stimulus" and row["prolific_pid"] in done:
                per_user.setdefault((row["condition"], row["prolific_pid"]), []).append(int(row["correct"]))
    out: dict[str, list[float]] = {}
    for (cond, _pid), v in per_user.items():
        out.setdefault(cond, []).append(sum(v) / len(v))
    return {c: sum(v) / len(v) for c, v in out.items()}


@pytest.mark.slow
def test_bots_through_the_real_server_give_the_same_numbers_everywhere(served, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slug, base, env = served
    _cli(env, "bots", slug, "-n", "6", "--base-url", base, "--responder", "truth", "--seed", "1", "-c", "2")
    with db.session() as s:
        truth_only = analyze(study_data(s, slug), include_test=True, mixed=False)
        real_only = analyze(study_data(s, slug), mixed=False)
    # Bots are test participants: left out by default, counted with --include-test.
    assert real_only["sample"]["total"]["included"] == 0 and real_only["sample"]["total"]["test"] == 6
    assert truth_only["sample"]["total"]["included"] == 6
    for c in truth_only["conditions"].values():  # the truth responder answers every image correctly
        if c["n_participants"]:
            assert c["accuracy"]["mean"] == 1.0 and c["majority_vote"]["accuracy"] == 1.0

    _cli(env, "bots", slug, "-n", "9", "--base-url", base, "--responder", "random", "--seed", "2", "-c", "3")
    res = _cli(env, "analyze", slug, "--include-test", "--json", "--no-mixed")
    from_cli = json.loads(res.output)
    with db.session() as s:
        from_db = analyze(study_data(s, slug), include_test=True, mixed=False)
    total = from_db["sample"]["total"]
    # Random bots answer attention checks at random too: those who fail two are excluded by the study's rule.
    assert total["test"] == 0 and total["included"] + total["attention"] == 15 and total["included"] >= 6

    # 1. Against lpstudy export's CSVs (their `correct` column is the same scoring, the averaging is redone here).
    _cli(env, "export", "--study", slug, "--include-test", "--out", str(tmp_path / "export"))
    expected = _from_export(tmp_path / "export")
    for code, c in from_db["conditions"].items():
        if c["n_participants"]:
            assert c["accuracy"]["mean"] == pytest.approx(expected[code], abs=1e-12), code
    # 2. Against the Psych-DS package, analysed from its files alone: every number the same.
    _cli(env, "package", slug, "--include-test", "--out", str(tmp_path / "package"))
    from_pkg = analyze(load_package(tmp_path / "package"), include_test=True, mixed=False)
    for r in (from_db, from_pkg, from_cli):
        r.pop("seconds")
    assert from_pkg == from_db
    assert from_cli == json.loads(json.dumps(from_db))
