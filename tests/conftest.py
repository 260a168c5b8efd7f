"""Shared fixtures: every DB test runs on SQLite and on a real PostgreSQL, both built by `alembic upgrade head`."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db import Database, upgrade
from app.models import Base
from tests import servers
from tests.databases import new_pg_database

REPO = Path(__file__).resolve().parent.parent
BACKENDS = [b for b in os.environ.get("LPSTUDY_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]


def real_data_dir() -> Path | None:
    """LPSTUDY_DATA_DIR, else ../shared/data beside the checkout; None when absent."""
    env = os.environ.get("LPSTUDY_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir() and (cand / "mnist").is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def pg_template_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once."""
    with new_pg_database("lpstudy_test_") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        tpl: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "test.db"
        shutil.copy(tpl, path)
        yield f"sqlite:///{path}"
    else:
        url: str = request.getfixturevalue("pg_template_url")
        engine = create_engine(url)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as c:
            c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        yield url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(env="test", database_url=db_url, data_dir=tmp_path / "data", secret_key="t" * 40)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
    from app.main import create_app

    return create_app(settings, db)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app, follow_redirects=False) as c:
        yield c


STUDY_TOML = """
slug = "{slug}"
title = "Test study"
dataset = "mnist"
norm = "l0"
trials_per_participant = {trials}
conditions = [{conditions}]
participants_per_condition = {target}
timeout_minutes = 30
{extra}

[completion_codes]
completed = "CDONE1"
no_consent = "CNOCONS"
failed_attention = "CFAILED"

[texts]
consent = "Consent text"
instructions = "Instruction text"
"""


def study_toml(
    slug: str = "test-study",
    trials: int = 5,
    conditions: tuple[str, ...] = ("CB", "CAI", "CAP"),
    target: int = 10,
    extra: str = "",
) -> str:
    conds = ", ".join(f'"{c}"' for c in conditions)
    return STUDY_TOML.format(slug=slug, trials=trials, conditions=conds, target=target, extra=extra)


def _make_study(
    db: Database,
    *,
    slug: str = "test-study",
    trials: int = 5,
    pool: int = 8,
    conditions: tuple[str, ...] = ("CB", "CAI", "CAP"),
    target: int = 10,
    activate: bool = True,
    extra: str = "",
    seed: int = 0,
) -> str:
    """Create a study with `pool` synthetic 28x28 stimuli per condition; returns the slug."""
    from app.stimuli.service import add_stimulus
    from app.studies.service import activate_study, create_study

    rng = np.random.default_rng(seed)
    with db.session() as s:
        study = create_study(s, study_toml(slug, trials, conditions, target, extra))
        for cond in study.conditions:
            for i in range(pool):
                pixels = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
                add_stimulus(
                    s,
                    study,
                    cond,
                    image_index=i,
                    label=i % 10,
                    pixels=pixels,
                    extra={"l0": 3, "ssim": 0.9, "model_pred": (i + 1) % 10},
                )
        s.flush()
        if activate:
            activate_study(s, study)
    return slug


def _prolific_id(rng: random.Random | None = None) -> str:
    r = rng or random
    return "".join(r.choice("0123456789abcdef") for _ in range(24))


@pytest.fixture(scope="session")
def make_study():  # type: ignore[no-untyped-def]
    """make_study(db, slug=..., trials=..., pool=..., conditions=..., target=..., activate=...) -> slug"""
    return _make_study


@pytest.fixture
def new_pid():  # type: ignore[no-untyped-def]
    return _prolific_id


@pytest.fixture
def toml_for():  # type: ignore[no-untyped-def]
    return study_toml


@pytest.fixture(scope="session")
def wait_http_up():  # type: ignore[no-untyped-def]
    """wait_http_up(proc, base, timeout=60): block until a server subprocess answers /healthz (tests/servers.py)."""
    return servers.wait_http_up


# --- the strict CSP: no inline script or style in any page the suite renders ---------------------------------


def inline_violations(html: str) -> list[str]:
    """What a strict Content-Security-Policy (script-src/style-src 'self', no 'unsafe-inline') would block."""
    from selectolax.lexbor import LexborHTMLParser

    doc = LexborHTMLParser(html)
    found: list[str] = []
    for node in doc.css("script"):
        if "src" not in node.attributes or (node.text() or "").strip():
            found.append(f"inline <script>: {(node.text() or '')[:60]!r}")
    for node in doc.css("style"):
        found.append(f"<style> element: {(node.text() or '')[:60]!r}")
    for node in doc.css("*"):
        for name, value in node.attributes.items():
            if name == "style":
                found.append(f"style attribute on <{node.tag}>: {value!r}")
            elif name.startswith("on"):
                found.append(f"inline event handler {name} on <{node.tag}>")
            elif name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                found.append(f"javascript: URL in {name} on <{node.tag}>")
    return found


@pytest.fixture(autouse=True)
def _no_inline_script_or_style(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every template rendered in any test is checked, so a page added later cannot slip an inline script,
    style or event handler past the CSP (it would simply not work in a browser)."""
    from app import web

    pages: list[tuple[str, str]] = []
    original = web.templates.TemplateResponse

    def checked(*args, **kwargs):  # type: ignore[no-untyped-def]
        response = original(*args, **kwargs)
        if "html" in (response.media_type or "html"):
            name = kwargs.get("name") or (args[1] if len(args) > 1 else "?")
            pages.append((str(name), bytes(response.body).decode("utf-8", "replace")))
        return response

    monkeypatch.setattr(web.templates, "TemplateResponse", checked)
    yield pages
    problems = [f"{name}: {v}" for name, html in pages for v in inline_violations(html)]
    if problems:
        pytest.fail("inline script/style (blocked by the CSP) in rendered pages:\n" + "\n".join(problems[:20]))


@pytest.fixture
def rendered_pages(_no_inline_script_or_style: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(template name, HTML) of every page rendered so far in this test."""
    return _no_inline_script_or_style


@pytest.fixture
def inline_check():  # type: ignore[no-untyped-def]
    """inline_check(html) -> list of what a strict CSP would block (empty when the page is clean)."""
    return inline_violations
