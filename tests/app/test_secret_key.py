"""The installation's own secret key: generated once, kept (mode 0600), shared by every process, and the old
public development key no longer opens anything."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer

from app.admin import auth
from app.config import InsecureConfiguration, Settings, installation_secret
from app.db import upgrade
from app.main import create_app

PUBLISHED_KEY = "dev-insecure-secret-key-change-me"
SALT = "lpstudy-admin-session"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LPSTUDY_"):
            monkeypatch.delenv(name)


def _settings(tmp_path: Path, **kw) -> Settings:  # type: ignore[no-untyped-def]
    kw.setdefault("env", "development")
    return Settings(database_url=f"sqlite:///{tmp_path / 'lp.db'}", **kw)


def test_a_key_is_generated_beside_the_database_and_kept(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert s.secret_key == ""
    key = s.with_secret_key().secret_key
    path = tmp_path / "lp.db.secret-key"
    assert path.read_text().strip() == key and len(key) >= 60
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _settings(tmp_path).with_secret_key().secret_key == key  # the next start reads the same key
    other = Settings(database_url=f"sqlite:///{tmp_path / 'other.db'}").with_secret_key().secret_key
    assert other != key  # another installation, another key


def test_a_configured_state_dir_holds_the_key(tmp_path: Path) -> None:
    s = Settings(database_url="postgresql://u@db/x", state_dir=tmp_path / "state")
    key = s.with_secret_key().secret_key
    assert (tmp_path / "state" / "secret-key").read_text().strip() == key


def test_a_configured_key_is_used_as_is_and_nothing_is_written(tmp_path: Path) -> None:
    s = _settings(tmp_path, secret_key="k" * 40)
    assert s.with_secret_key().secret_key == "k" * 40
    assert not (tmp_path / "lp.db.secret-key").exists()


def _race(path: str, q) -> None:  # type: ignore[no-untyped-def]
    q.put(installation_secret(Path(path)))


def test_processes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "race" / "secret-key"
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(path), q)) for _ in range(6)]
    for p in procs:
        p.start()
    keys = {q.get(timeout=60) for _ in procs}
    for p in procs:
        p.join(30)
    assert len(keys) == 1 and keys == {path.read_text().strip()}
    assert [f.name for f in path.parent.iterdir()] == ["secret-key"]  # no temporary files left


def test_an_empty_key_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secret-key"
    path.write_text("")
    key = installation_secret(path)
    assert len(key) >= 60 and path.read_text().strip() == key


def test_production_refuses_to_generate(tmp_path: Path) -> None:
    with pytest.raises(InsecureConfiguration, match="at least 32 characters"):
        _settings(tmp_path, env="production")


def test_a_cookie_forged_with_the_old_public_key_does_not_open_the_dashboard(tmp_path: Path) -> None:
    """The attack from issue 12: a bare installation used to sign admin cookies with a key in the source."""
    s = _settings(tmp_path)
    upgrade(s.database_url)
    app = create_app(s)
    with app.state.db.session() as session:
        user = auth.create_user(session, "admin@example.org", "correct horse battery")
        uid, version = user.id, user.session_version
    forged = URLSafeTimedSerializer(PUBLISHED_KEY, salt=SALT).dumps(
        {"csrf": "x", "uid": uid, "email": "admin@example.org", "sv": version}
    )
    with TestClient(app, follow_redirects=False) as c:
        c.cookies.set(auth.COOKIE, forged)
        r = c.get("/admin")
        assert r.status_code == 303 and r.headers["location"] == "/admin/login"
        # the same cookie signed with the installation's own key does open it: the check is the key, not the form
        real = URLSafeTimedSerializer(app.state.settings.secret_key, salt=SALT).dumps(
            {"csrf": "x", "uid": uid, "email": "admin@example.org", "sv": version}
        )
        c.cookies.set(auth.COOKIE, real)
        assert c.get("/admin").status_code == 200
    app.state.db.dispose()
    assert os.path.exists(tmp_path / "lp.db.secret-key")
