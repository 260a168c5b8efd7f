"""The CLI's answer to a user's mistake: one line on stderr that says what is wrong and what to run instead, a
non-zero exit code, and nothing created. Every case runs `lpstudy` as a subprocess in a fresh folder and compares
the folder's files before and after (and, for PostgreSQL, that no database appeared)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.db import upgrade
from tests.databases import PG_ADMIN_URL, new_pg_database

REPO = Path(__file__).resolve().parents[2]
BACKENDS = [b for b in os.environ.get("LPSTUDY_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
needs_pg = pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL backend not selected")


def _lpstudy() -> list[str]:
    script = Path(sys.executable).parent / "lpstudy"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _pg_databases() -> set[str]:
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as c:
            return set(c.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Databases the cases copy: migrated to head, and an old one at revision 0003."""
    d = tmp_path_factory.mktemp("cli-error-fixtures")
    upgrade(f"sqlite:///{d / 'migrated.db'}")
    upgrade(f"sqlite:///{d / 'old.db'}", "0003")
    return d


@pytest.fixture(scope="module")
def empty_pg_url() -> Iterator[str]:
    """A PostgreSQL database that exists but was never migrated."""
    if "postgresql" not in BACKENDS:
        yield ""
        return
    with new_pg_database("lpstudy_unmigrated_") as url:
        yield url


MIGRATED = "sqlite:///migrated.db"

# (id, args, files to prepare, text the one line must contain, exit code)
# Files: "migrated.db" and "old.db" are copied from the fixtures; "empty.db" is a 0-byte file; "text.db" holds
# text; "adir/" is a folder; "var/lpstudy-demo.db" is the demo's database.
CASES: list[tuple[str, list[str], list[str], str, int]] = [
    ("default-url-missing", ["study", "list"], [], "no database at lpstudy.db (no such file); create it with: "
     "lpstudy db upgrade --database-url sqlite:///lpstudy.db", 1),
    ("default-url-after-demo", ["study", "list"], ["var/lpstudy-demo.db"],
     "the demo's database is --database-url sqlite:///var/lpstudy-demo.db", 1),
    ("sqlite-folder-missing", ["study", "list", "--database-url", "sqlite:///nowhere/x.db"], [],
     "no database at nowhere/x.db (folder nowhere does not exist)", 1),
    ("malformed-url", ["study", "list", "--database-url", "postgres//oops"], [], "'postgres//oops' is not a "
     "database URL; use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname", 1),
    ("unsupported-backend", ["study", "list", "--database-url", "mysql://u@h/db"], [],
     "lpstudy supports SQLite and PostgreSQL only", 1),
    ("in-memory", ["study", "list", "--database-url", "sqlite://"], [], "in-memory database that holds nothing", 1),
    ("folder-as-database", ["study", "list", "--database-url", "sqlite:///adir"], ["adir/"],
     "adir is a folder, not an SQLite database file", 1),
    ("not-a-database", ["study", "list", "--database-url", "sqlite:///text.db"], ["text.db"],
     "text.db is not an SQLite database", 1),
    ("unmigrated-sqlite", ["study", "list", "--database-url", "sqlite:///empty.db"], ["empty.db"],
     "the database at sqlite:///empty.db is empty; run: lpstudy db upgrade --database-url sqlite:///empty.db", 1),
    ("old-revision", ["study", "list", "--database-url", "sqlite:///old.db"], ["old.db"],
     "is at revision 0003, this lpstudy needs", 1),
    ("unknown-slug-activate", ["study", "activate", "ghost", "--database-url", MIGRATED], ["migrated.db"],
     "no study with slug 'ghost'", 1),
    ("unknown-slug-close", ["study", "close", "ghost", "--database-url", MIGRATED], ["migrated.db"],
     "no study with slug 'ghost'", 1),
    ("unknown-slug-status", ["study", "status", "ghost", "--database-url", MIGRATED], ["migrated.db"],
     "no study with slug 'ghost'", 1),
    ("unknown-slug-regenerate", ["study", "regenerate", "ghost", "--database-url", MIGRATED], ["migrated.db"],
     "no study with slug 'ghost'", 1),
    ("unknown-slug-stimuli-export", ["stimuli", "export", "--study", "ghost", "--out", "out", "--database-url",
     MIGRATED], ["migrated.db"], "no study with slug 'ghost'", 1),
    ("unknown-slug-export", ["export", "--study", "ghost", "--out", "out", "--database-url", MIGRATED],
     ["migrated.db"], "no study with slug 'ghost'", 1),
    ("unknown-slug-stimuli-import", ["stimuli", "import", "--study", "ghost", "adir", "--database-url", MIGRATED],
     ["migrated.db", "adir/"], "no study with slug 'ghost'", 1),
    ("config-missing", ["study", "create", "--config", "nope.toml", "--database-url", MIGRATED], ["migrated.db"],
     "nope.toml: no such file", 1),
    ("import-folder-missing", ["stimuli", "import", "--study", "x", "nodir", "--database-url", MIGRATED],
     ["migrated.db"], "nodir: no such folder", 1),
    ("export-out-is-a-file", ["export", "--study", "x", "--out", "text.db", "--database-url", MIGRATED],
     ["migrated.db", "text.db"], "text.db is a file; --out takes a folder", 1),
    ("upgrade-unknown-revision", ["db", "upgrade", "zzz", "--database-url", "sqlite:///new.db"], [],
     "unknown revision 'zzz'", 1),
    ("upgrade-malformed-url", ["db", "upgrade", "--database-url", "sqlite:/x.db"], [], "is not a database URL", 1),
    ("downgrade-missing-db", ["db", "downgrade", "base", "--database-url", "sqlite:///none.db"], [],
     "no database at none.db", 1),
    ("worker-missing-db", ["worker", "--once", "--database-url", "sqlite:///none.db"], [], "no database at none.db",
     1),
    ("serve-missing-db", ["serve", "--database-url", "sqlite:///none.db"], [], "no database at none.db", 1),
    ("serve-port-in-use", ["serve", "--port", "BUSY", "--database-url", MIGRATED], ["migrated.db"],
     "cannot listen on 127.0.0.1:BUSY", 1),
    ("demo-port-in-use", ["demo", "--port", "BUSY"], [], "cannot listen on 127.0.0.1:BUSY", 1),
    ("demo-data-dir-missing", ["demo", "--data-dir", "nodata", "--port", "1"], [], "nodata: no such folder", 1),
    ("admin-bad-email", ["admin", "create-user", "not-an-email", "--password-stdin", "--database-url", MIGRATED],
     ["migrated.db"], "'not-an-email' is not a valid email address", 1),
    ("regenerate-missing-db", ["study", "regenerate", "x", "--database-url", "sqlite:///none.db"], [],
     "no database at none.db", 1),
    ("bad-setting", ["study", "list", "--database-url", MIGRATED, "ENV:LPSTUDY_ENV=prod"], ["migrated.db"],
     "LPSTUDY_ENV: Input should be 'development', 'test' or 'production'", 1),
    ("missing-option", ["study", "create"], [], "Missing option '--config'. (see: lpstudy study create --help)", 2),
    ("no-such-command", ["studies", "list"], [], "No such command 'studies'", 2),
    ("unknown-slug-delete-test", ["participants", "delete-test", "ghost", "--yes", "--database-url", MIGRATED],
     ["migrated.db"], "no study with slug 'ghost'", 1),
    ("unknown-slug-bots", ["bots", "ghost", "-n", "1", "--base-url", "http://127.0.0.1:9", "--database-url",
     MIGRATED], ["migrated.db"], "no study with slug 'ghost'", 1),
    ("bots-bad-responder", ["bots", "x", "--responder", "oracle", "--base-url", "http://127.0.0.1:9"], [],
     "--responder", 2),
    ("bots-server-down", ["bots", "real", "-n", "1", "--base-url", "http://127.0.0.1:PORT0", "--database-url",
     "sqlite:///study.db"], ["study.db"], "cannot reach the server at http://127.0.0.1:PORT0", 1),
    ("bots-bad-base-url", ["bots", "real", "-n", "1", "--base-url", "localhost:8000", "--database-url",
     "sqlite:///study.db"], ["study.db"], "--base-url must start with http:// or https://", 1),
    ("bots-model-without-model", ["bots", "real", "-n", "1", "--responder", "model", "--base-url",
     "http://127.0.0.1:9", "--database-url", "sqlite:///study.db"], ["study.db"],
     "study 'real' names no generation model; pass --model (e.g. mnist-default)", 1),
    ("bots-model-unloadable", ["bots", "real", "-n", "1", "--responder", "model", "--model", "nope.pt",
     "--base-url", "http://127.0.0.1:9", "--database-url", "sqlite:///study.db"], ["study.db"],
     "cannot load model 'nope.pt'", 1),
    ("unknown-slug-analyze", ["analyze", "ghost", "--database-url", MIGRATED], ["migrated.db"],
     "ghost", 1),
    ("report-missing-folder", ["report", "ghost", "--out", "nowhere/r.html", "--database-url", MIGRATED],
     ["migrated.db"], "nowhere: no such folder", 1),
    ("analyze-missing-db", ["analyze", "x", "--database-url", "sqlite:///none.db"], [], "no database at none.db", 1),
    ("unknown-slug-package", ["package", "ghost", "--out", "pk", "--database-url", MIGRATED], ["migrated.db"],
     "no study with slug 'ghost'", 1),
    ("data-fetch-unknown", ["data", "fetch", "bogus"], [], "unknown dataset 'bogus'; choose one of: mnist, cifar10",
     2),
    ("data-info-missing-dir", ["data", "info", "--data-dir", "nowhere"], [], "no such folder: nowhere", 2),
    ("models-train-unknown-arch", ["models", "train", "--dataset", "mnist", "--arch", "nope", "--eps", "0.3",
     "--out", "x.pt"], [], "unknown architecture 'nope'", 2),
    ("models-eval-missing-file", ["models", "eval", "missing.pt", "--dataset", "mnist"], [],
     "file not found: missing.pt", 2),
    ("stimuli-make-missing-data-dir", ["stimuli", "make", "--dataset", "mnist", "--norm", "l0", "--out", "o",
     "--data-dir", "nodata"], [], "data folder not found: nodata", 2),
]


def _prepare(cwd: Path, files: list[str], fixtures: Path, study_db: Callable[[], Path]) -> None:
    for f in files:
        target = cwd / f
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.endswith("/"):
            target.mkdir(exist_ok=True)
        elif f in ("migrated.db", "var/lpstudy-demo.db"):
            shutil.copy(fixtures / "migrated.db", target)
        elif f == "old.db":
            shutil.copy(fixtures / "old.db", target)
        elif f == "study.db":
            shutil.copy(study_db(), target)
        elif f == "empty.db":
            target.write_bytes(b"")
        else:
            target.write_text("hello, not a database\n")


def run_cli(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPSTUDY_")}
    env.update({"PYTHONPATH": str(REPO), "COLUMNS": "200", **(env_extra or {})})
    return subprocess.run(
        [*_lpstudy(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, input=""
    )


@pytest.fixture(scope="module")
def study_db(fixtures_dir: Path, make_study) -> Callable[[], Path]:  # type: ignore[no-untyped-def]
    """A migrated SQLite database holding an active study 'real' (for the bots cases)."""
    path = fixtures_dir / "study.db"

    def make() -> Path:
        if not path.exists():
            from app.config import Settings
            from app.db import Database

            shutil.copy(fixtures_dir / "migrated.db", path)
            db = Database(Settings(env="test", database_url=f"sqlite:///{path}", secret_key="e" * 40))
            make_study(db, slug="real", trials=2, pool=3)
            db.dispose()
        return path

    return make


@pytest.fixture(scope="module")
def case_results(tmp_path_factory, fixtures_dir, study_db):  # type: ignore[no-untyped-def]
    """Every case run at once (a few at a time): id -> (result, expected text, files before, files after)."""
    from concurrent.futures import ThreadPoolExecutor

    held: list[socket.socket] = []
    jobs = {}
    for case_id, args, files, expected, _code in CASES:
        cwd = tmp_path_factory.mktemp(f"cli-{case_id}")
        _prepare(cwd, files, fixtures_dir, study_db)
        env_extra = dict(a[4:].split("=", 1) for a in args if a.startswith("ENV:"))
        args = [a for a in args if not a.startswith("ENV:")]
        for marker, listen in (("BUSY", True), ("PORT0", False)):
            if any(marker in a for a in args):
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                if listen:
                    sock.listen()  # held until every case ran: the port is taken
                    held.append(sock)
                port = str(sock.getsockname()[1])
                if not listen:
                    sock.close()  # bound and closed again: nothing listens there
                args = [a.replace(marker, port) for a in args]
                expected = expected.replace(marker, port)
        jobs[case_id] = (cwd, args, env_extra, expected, _files(cwd))
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {k: pool.submit(run_cli, v[1], v[0], v[2]) for k, v in jobs.items()}
            return {k: (f.result(), jobs[k][3], jobs[k][4], _files(jobs[k][0])) for k, f in futures.items()}
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(("case_id", "code"), [(c[0], c[4]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_and_creates_nothing(case_id, code, case_results) -> None:  # type: ignore[no-untyped-def]
    r, expected, before, after = case_results[case_id]
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("Error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in r.stdout + r.stderr
    assert after == before  # nothing created: no database file, no folder


@needs_pg
@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("unreachable", "cannot connect to PostgreSQL at 127.0.0.1:1"),
        ("no-such-database", "has no database 'lpstudy_no_such_db_x'; create it (createdb -h 127.0.0.1 -U postgres"),
        ("unmigrated", "is empty; run: lpstudy db upgrade --database-url postgresql"),
    ],
)
def test_postgresql_mistakes_are_one_line(which, expected, tmp_path, empty_pg_url) -> None:  # type: ignore[no-untyped-def]
    url = {
        "unreachable": "postgresql://postgres@127.0.0.1:1/lpstudy",
        "no-such-database": "postgresql://postgres@127.0.0.1:5432/lpstudy_no_such_db_x",
        "unmigrated": empty_pg_url,
    }[which]
    for args in (["study", "list"], ["export", "--study", "x", "--out", "out"], ["db", "downgrade", "base"]):
        if which == "unmigrated" and args[0] == "db":
            continue  # downgrading an empty database is allowed (it is at base already)
        r = run_cli([*args, "--database-url", url], tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert expected in lines[0], lines[0]
    assert "lpstudy_no_such_db_x" not in _pg_databases()  # (other databases come and go: tests run in parallel)
    assert not list(tmp_path.iterdir())
    if which == "unmigrated":  # nothing was created inside the database either
        engine = create_engine(url)
        with engine.connect() as c:
            n = c.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"))
            assert n.scalar() == 0
        engine.dispose()


def test_db_upgrade_creates_the_database_and_then_commands_work(tmp_path: Path) -> None:
    """The way out that the messages name works: db upgrade creates the file (and folder), then list runs."""
    r = run_cli(["study", "list", "--database-url", "sqlite:///sub/new.db"], tmp_path)
    assert r.returncode == 1 and "lpstudy db upgrade --database-url sqlite:///sub/new.db" in r.stderr
    assert run_cli(["db", "upgrade", "--database-url", "sqlite:///sub/new.db"], tmp_path).returncode == 0
    r = run_cli(["study", "list", "--database-url", "sqlite:///sub/new.db"], tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "No studies.", r.stderr
