"""The deployment files: docker-compose.yml is valid (docker-compose config -q), scalable, secret-free, and
docs/deploy.md is true to it and to the CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import cli

REPO = Path(__file__).resolve().parent.parent
SECRETS = {
    "POSTGRES_PASSWORD": "pw-for-validation",
    "LPSTUDY_SECRET_KEY": "k" * 40,
    "LPSTUDY_DOMAIN": "study.example.org",
}
needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("LPSTUDY_")}
    return subprocess.run(
        ["docker-compose", "-f", str(REPO / "docker-compose.yml"), *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def config() -> dict:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed")
    r = compose("config", env=SECRETS)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


@needs_compose
def test_compose_file_is_valid() -> None:
    r = compose("config", "-q", env=SECRETS)
    assert r.returncode == 0, r.stderr


@needs_compose
@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_every_secret_must_come_from_the_environment(missing: str) -> None:
    r = compose("config", "-q", env={k: v for k, v in SECRETS.items() if k != missing})
    assert r.returncode != 0 and missing in r.stderr


def test_no_secret_in_the_compose_file() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for var in ("POSTGRES_PASSWORD", "LPSTUDY_SECRET_KEY"):
        for m in re.finditer(r"\$\{" + var + r"([^}]*)\}", text):
            assert m.group(1).startswith(":?"), m.group(0)  # required, never a default


def test_services_are_what_the_docs_say(config: dict) -> None:
    s = config["services"]
    assert {"db", "migrate", "web", "worker", "caddy"} <= set(s)
    assert s["db"]["image"].startswith("postgres:16")
    volumes = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in s["db"]["volumes"]]
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in volumes), volumes
    assert "pgdata" in config["volumes"]
    assert "pg_isready" in " ".join(s["db"]["healthcheck"]["test"])
    assert s["migrate"]["command"] == ["lpstudy", "db", "upgrade"]
    assert s["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    web = s["web"]
    assert web["command"][:2] == ["lpstudy", "serve"] and "--workers" in web["command"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert web["environment"]["LPSTUDY_ENV"] == "production"
    for name in ("web", "worker"):  # scalable: no fixed name, no host port
        assert "container_name" not in s[name] and "ports" not in s[name], name
    dev = s["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert "gpu" in dev["capabilities"] and dev["driver"] == "nvidia"
    assert s["worker"]["command"][:2] == ["lpstudy", "worker"]
    caddy = s["caddy"]
    assert caddy["image"].startswith("caddy:2")
    published = {str(p["published"]) if isinstance(p, dict) else p.split(":")[0] for p in caddy["ports"]}
    assert {"80", "443"} <= published, caddy["ports"]
    caddyfile = (REPO / "deploy" / "Caddyfile").read_text()
    assert "name web" in caddyfile and "port 8000" in caddyfile and "{$LPSTUDY_DOMAIN}" in caddyfile


def test_deploy_doc_is_true_to_the_compose_file_and_the_cli() -> None:
    doc = (REPO / "docs" / "deploy.md").read_text()
    compose_text = (REPO / "docker-compose.yml").read_text()
    services = set(yaml.safe_load(compose_text)["services"])
    for m in re.finditer(r"--scale (\w[\w-]*)=", doc):
        assert m.group(1) in services, m.group(0)
    for m in re.finditer(r"docker-compose (?:[\w-]+ )*?(?:run|logs|exec|restart|stop)(?: --rm)? ([a-z][\w-]*)", doc):
        assert m.group(1) in services, m.group(0)
    for var in set(re.findall(r"\b(LPSTUDY_[A-Z_]+|POSTGRES_PASSWORD)\b", doc)):
        in_settings = var.removeprefix("LPSTUDY_").lower() in __import__("app.config").config.Settings.model_fields
        assert var in compose_text or in_settings or var in ("LPSTUDY_DOMAIN", "LPSTUDY_DATA"), var
    # every `lpstudy ...` command the doc shows exists
    for m in set(
        re.findall(r"lpstudy ((?:db|study|stimuli|admin|models|data) [a-z-]+|serve|worker|export|demo)\b", doc)
    ):
        r = CliRunner().invoke(cli, [*m.split(), "--help"])
        assert r.exit_code == 0, (m, r.output)
    for needed in ("pg_dump", "lpstudy db backup", "lpstudy db upgrade", "--scale web=", "--scale worker="):
        assert needed in doc, needed
