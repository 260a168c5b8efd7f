"""The `lpstudy` command through typer's CliRunner: study create/list/activate/close and db upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from app.cli import cli
from app.models import Base, Study
from app.studies.service import get_study

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(autouse=True)
def _no_production_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LPSTUDY_ENV", raising=False)


def run(settings, *args: str) -> Result:  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, [*args, "--database-url", settings.database_url])


def clean_failure(result: Result) -> None:
    """A user error: exit code 1, a message on the output, no escaped exception."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and result.output.startswith("Error: ")


def study_count(db) -> int:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Study)) or 0


def test_study_create_from_a_file(db, settings, toml_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "study.toml"
    source = "# preregistered 2024-05-01\n" + toml_for(slug="cli-study", conditions=("CB", "CAP"))
    cfg.write_text(source, encoding="utf-8")
    r = run(settings, "study", "create", "--config", str(cfg))
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "Created study 'cli-study' (CB, CAP); status draft."
    with db.session() as s:
        st = get_study(s, "cli-study")
        assert st.config_source == source and st.status == "draft"
        assert [c.code for c in st.conditions] == ["CB", "CAP"]


@sqlite_only
def test_study_create_with_a_bad_config_names_field_and_line(db, settings, toml_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.toml"
    source = toml_for(slug="bad-study").replace("timeout_minutes = 30", "timeout_minutes = -1")
    cfg.write_text(source, encoding="utf-8")
    line = next(n for n, text in enumerate(source.splitlines(), 1) if text.startswith("timeout_minutes"))
    r = run(settings, "study", "create", "--config", str(cfg))
    clean_failure(r)
    assert f"{cfg}:{line}: timeout_minutes: Input should be greater than or equal to 1" in r.output
    assert study_count(db) == 0


@sqlite_only
def test_study_create_with_invalid_toml(db, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "broken.toml"
    cfg.write_text('slug = "x"\ntitle = \n', encoding="utf-8")
    r = run(settings, "study", "create", "--config", str(cfg))
    clean_failure(r)
    assert f"{cfg}:2: not valid TOML" in r.output
    assert study_count(db) == 0


@sqlite_only
def test_study_create_missing_or_unreadable_file(db, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run(settings, "study", "create", "--config", str(tmp_path / "nope.toml"))
    clean_failure(r)
    assert f"{tmp_path / 'nope.toml'}: no such file" in r.output
    latin = tmp_path / "latin1.toml"
    latin.write_bytes('title = "Caf\xe9"\n'.encode("latin-1"))
    r = run(settings, "study", "create", "--config", str(latin))
    clean_failure(r)
    assert "not UTF-8" in r.output
    assert study_count(db) == 0


def test_study_create_twice_is_a_clear_error(db, settings, toml_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "study.toml"
    cfg.write_text(toml_for(slug="twice"), encoding="utf-8")
    assert run(settings, "study", "create", "--config", str(cfg)).exit_code == 0
    r = run(settings, "study", "create", "--config", str(cfg))
    clean_failure(r)
    assert "a study with slug 'twice' already exists" in r.output
    assert study_count(db) == 1


def test_study_list(db, settings, make_study) -> None:  # type: ignore[no-untyped-def]
    r = run(settings, "study", "list")
    assert r.exit_code == 0 and r.output.strip() == "No studies."
    make_study(db, slug="listed-one", trials=2, pool=3, conditions=("CB", "CAI"), target=7)
    make_study(db, slug="listed-two", trials=2, pool=2, conditions=("CAP",), activate=False)
    r = run(settings, "study", "list")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "listed-one\tactive\tmnist/l0\tTest study"
    assert lines[1] == "  CB: stimuli 3, target 7, active 0, completed 0, timed out 0"
    assert lines[2] == "  CAI: stimuli 3, target 7, active 0, completed 0, timed out 0"
    assert lines[3] == "listed-two\tdraft\tmnist/l0\tTest study"
    assert lines[4] == "  CAP: stimuli 2, target 10, active 0, completed 0, timed out 0"


def test_study_activate_and_close(db, settings, make_study, toml_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="ready-one", trials=2, pool=3, activate=False)
    r = run(settings, "study", "activate", "ready-one")
    assert r.exit_code == 0 and r.output.strip() == "Study 'ready-one' is now active.", r.output
    r = run(settings, "study", "close", "ready-one")
    assert r.exit_code == 0 and r.output.strip() == "Study 'ready-one' is now closed.", r.output
    with db.session() as s:
        assert get_study(s, "ready-one").status == "closed"
    # a study without stimuli cannot be activated, and stays a draft
    cfg = tmp_path / "empty.toml"
    cfg.write_text(toml_for(slug="no-stimuli", trials=3, conditions=("CB",)), encoding="utf-8")
    assert run(settings, "study", "create", "--config", str(cfg)).exit_code == 0
    r = run(settings, "study", "activate", "no-stimuli")
    clean_failure(r)
    assert "cannot activate study 'no-stimuli': condition CB has 0 stimuli; each participant needs 3" in r.output
    with db.session() as s:
        assert get_study(s, "no-stimuli").status == "draft"


@sqlite_only
@pytest.mark.parametrize("action", ["activate", "close"])
def test_unknown_slug_is_a_clear_error(settings, action) -> None:  # type: ignore[no-untyped-def]
    r = run(settings, "study", action, "ghost-study")
    clean_failure(r)
    assert "no study with slug 'ghost-study'" in r.output


@sqlite_only
@pytest.mark.parametrize(
    "args",
    [
        ("export", "--study", "ghost-study", "--out", "OUT"),
        ("stimuli", "export", "--study", "ghost-study", "--out", "OUT"),
        ("stimuli", "import", "--study", "ghost-study", "DIR"),
    ],
)
def test_unknown_slug_in_data_commands(settings, tmp_path, args) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "dir").mkdir()
    args = tuple(str(tmp_path / "out") if a == "OUT" else str(tmp_path / "dir") if a == "DIR" else a for a in args)
    r = run(settings, *args)
    clean_failure(r)
    assert "no study with slug 'ghost-study'" in r.output


def test_db_upgrade_and_downgrade_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fresh.db"
    url = f"sqlite:///{path}"
    r = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url])
    assert r.exit_code == 0, r.output
    assert "is at revision head" in r.output
    with sqlite3.connect(path) as c:
        tables = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert set(Base.metadata.tables) | {"alembic_version"} <= tables
        assert c.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
    # upgrading again is a no-op, not an error
    assert CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url]).exit_code == 0
    r = CliRunner().invoke(cli, ["db", "downgrade", "base", "--database-url", url])
    assert r.exit_code == 0 and "downgraded to base" in r.output
    with sqlite3.connect(path) as c:
        tables = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not set(Base.metadata.tables) & tables


def test_db_upgrade_uses_lpstudy_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("LPSTUDY_DATABASE_URL", f"sqlite:///{path}")
    r = CliRunner().invoke(cli, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1


def test_help_lists_every_command() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    for name in ("db", "study", "stimuli", "export", "admin", "serve", "demo"):
        assert name in r.output
    r = CliRunner().invoke(cli, ["study", "--help"])
    for name in ("create", "list", "activate", "close"):
        assert name in r.output
