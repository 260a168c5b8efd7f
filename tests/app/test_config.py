"""Settings: LPSTUDY_* environment variables, and production refusing an insecure secret key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import InsecureConfiguration, Settings

# The development key earlier versions shipped in their source: public, so it must sign nothing.
PUBLISHED_KEY = "dev-insecure-secret-key-change-me"

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("LPSTUDY_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_without_environment(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.env == "development"
    assert s.database_url == "sqlite:///lpstudy.db" and s.is_sqlite
    assert s.data_dir == Path("data")
    assert s.secret_key == ""  # none built in: generated per installation when the app starts


def test_every_setting_comes_from_an_lpstudy_prefixed_variable(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("LPSTUDY_DATABASE_URL", "postgresql://u@db:5432/x")
    clean_env.setenv("LPSTUDY_DATA_DIR", str(tmp_path))
    clean_env.setenv("LPSTUDY_SECRET_KEY", "k" * 40)
    clean_env.setenv("LPSTUDY_ENV", "production")
    clean_env.setenv("LPSTUDY_SESSION_MAX_AGE_S", "120")
    clean_env.setenv("LPSTUDY_DB_POOL_SIZE", "3")
    s = Settings()
    assert s.database_url == "postgresql://u@db:5432/x" and not s.is_sqlite
    assert s.data_dir == tmp_path
    assert s.secret_key == "k" * 40
    assert s.env == "production"
    assert s.session_max_age_s == 120 and s.db_pool_size == 3


def test_unprefixed_variables_are_ignored(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://elsewhere/x")
    clean_env.setenv("SECRET_KEY", "z" * 40)
    clean_env.setenv("ENV", "production")
    s = Settings()
    assert s.database_url == "sqlite:///lpstudy.db"
    assert s.secret_key == "" and s.env == "development"


@pytest.mark.parametrize("key", [None, "", "short", "x" * 31])
def test_production_refuses_default_or_short_secret(clean_env: pytest.MonkeyPatch, key: str | None) -> None:
    clean_env.setenv("LPSTUDY_ENV", "production")
    if key is not None:
        clean_env.setenv("LPSTUDY_SECRET_KEY", key)
    with pytest.raises(InsecureConfiguration, match="LPSTUDY_SECRET_KEY.*at least 32 characters"):
        Settings()


def test_production_accepts_a_long_random_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LPSTUDY_ENV", "production")
    clean_env.setenv("LPSTUDY_SECRET_KEY", "x" * 32)
    assert Settings().env == "production"


@pytest.mark.parametrize("env", ["development", "test", "production"])
def test_the_published_development_key_is_refused_everywhere(clean_env: pytest.MonkeyPatch, env: str) -> None:
    clean_env.setenv("LPSTUDY_ENV", env)
    clean_env.setenv("LPSTUDY_SECRET_KEY", PUBLISHED_KEY)
    with pytest.raises(InsecureConfiguration, match="published"):
        Settings()


def test_no_secret_literal_in_the_source() -> None:
    """No key is built into lpstudy: neither the old development key nor any other default value."""
    for path in (REPO / "app").rglob("*.py"):
        text = path.read_text()
        assert "dev-insecure" not in text or path.name == "config.py", path  # config.py only lists it as refused
    assert Settings.model_fields["secret_key"].default == ""


def test_invalid_values_are_rejected(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LPSTUDY_ENV", "staging")
    with pytest.raises(ValueError, match="env"):
        Settings()


def test_cli_in_production_with_default_secret_exits_with_the_message(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("LPSTUDY_ENV", "production")
    clean_env.setenv("LPSTUDY_DATABASE_URL", f"sqlite:///{tmp_path / 'p.db'}")
    result = CliRunner().invoke(cli, ["study", "list"])
    assert result.exit_code != 0
    assert "LPSTUDY_SECRET_KEY" in result.output and "production" in result.output
    assert not isinstance(result.exception, InsecureConfiguration)  # a clean exit, not an escaped exception
    assert not (tmp_path / "p.db").exists()  # refused before touching the database


def test_real_cli_process_in_production_prints_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPSTUDY_")}
    env |= {"LPSTUDY_ENV": "production", "LPSTUDY_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    exe = Path(sys.executable).parent / "lpstudy"
    proc = subprocess.run(
        [str(exe), "study", "list"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Error: LPSTUDY_SECRET_KEY must be set" in proc.stderr
