"""The web app never loads torch: importing and serving it leaves torch out of sys.modules, and no app/ file imports it.

torch lives in workers/ (the background worker and the model commands), which the web process must not pay for:
it costs seconds of start-up and hundreds of MB per server process.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision")

PROBE = textwrap.dedent(
    """
    import sys
    import app.main, app.cli, app.asgi
    from fastapi.testclient import TestClient
    from app.config import Settings
    from app.db import upgrade
    from app.main import create_app

    url = sys.argv[1]
    upgrade(url)
    app = create_app(Settings(env="test", database_url=url, secret_key="s" * 40))
    with TestClient(app, follow_redirects=False) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/admin/login").status_code == 200
        assert c.get("/s/no-such-study", params={"PROLIFIC_PID": "a" * 24}).status_code == 404
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    print("LOADED", ",".join(loaded))
    """
).replace("{HEAVY!r}", repr(set(HEAVY)))


def test_importing_and_serving_the_app_does_not_load_torch(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPSTUDY_")}
    # app.asgi builds the app from LPSTUDY_* at import time: point it at a throwaway file.
    env["LPSTUDY_DATABASE_URL"] = f"sqlite:///{tmp_path / 'asgi.db'}"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, f"sqlite:///{tmp_path / 'probe.db'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LOADED"))
    assert line == "LOADED ", f"the web app loaded {line.removeprefix('LOADED ')}"


def test_the_probe_would_notice_torch(tmp_path: Path) -> None:
    """Guard: the same probe reports torch when something imports it (a stand-in torch package, for speed)."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("", encoding="utf-8")
    probe = PROBE.replace("import app.main, app.cli, app.asgi", "import app.main, app.cli, app.asgi, torch")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPSTUDY_")}
    env["LPSTUDY_DATABASE_URL"] = f"sqlite:///{tmp_path / 'asgi.db'}"
    env["PYTHONPATH"] = str(tmp_path / "fake")
    proc = subprocess.run(
        [sys.executable, "-c", probe, f"sqlite:///{tmp_path / 'probe.db'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert next(x for x in proc.stdout.splitlines() if x.startswith("LOADED")) == "LOADED torch"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module name imported anywhere in the file (top level or inside functions), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_file_under_app_imports_torch() -> None:
    files = sorted((REPO / "app").rglob("*.py"))
    assert len(files) > 10
    offenders = [
        f"{path.relative_to(REPO)}:{line}: imports {name}"
        for path in files
        for line, name in _imports(path)
        if name.split(".")[0] in HEAVY
    ]
    assert offenders == [], "\n".join(offenders)


def test_the_import_scan_finds_torch_imports(tmp_path: Path) -> None:
    """Guard for the scan above: each way of importing torch is found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import torch\nimport torch.nn as nn\nfrom torchvision import datasets\n"
        "def f():\n    import importlib\n    return importlib.import_module('torch')\n",
        encoding="utf-8",
    )
    names = [n for _, n in _imports(sample)]
    assert names.count("torch") == 2 and "torch.nn" in names and "torchvision" in names
