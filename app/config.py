"""Settings: one pydantic-settings class, every field overridable as ``LPSTUDY_<NAME>``.

No secret is built in. Without ``LPSTUDY_SECRET_KEY`` a development or demo installation generates a random key
once and keeps it in a file of its own (mode 0600; see ``secret_key_path``); production refuses to start
without a configured key of at least 32 characters.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

# Keys that were published (in an earlier version's source) and so sign nothing: refused everywhere.
PUBLISHED_KEYS = frozenset({"dev-insecure-secret-key-change-me"})
MIN_SECRET_LEN = 32
SECRET_FILE_SUFFIX = ".secret-key"


class InsecureConfiguration(RuntimeError):
    """Raised when production is started without a proper secret, or with a published one."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LPSTUDY_", env_file=None, extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///lpstudy.db"
    data_dir: Path = Path("data")
    # Empty: generated once per installation and kept in secret_key_path (development, test and the demo only).
    secret_key: str = ""
    # Where an installation keeps what it generates (the secret key, metrics snapshots). Default: beside the
    # SQLite file, or ./var for PostgreSQL.
    state_dir: Path | None = None
    # Where participants are sent at the end; the completion code is appended as ?cc=CODE.
    prolific_complete_url: str = "https://app.prolific.com/submissions/complete"
    # Admin session lifetime.
    session_max_age_s: int = Field(default=12 * 3600, ge=60)
    # SQLAlchemy pool size per process (PostgreSQL).
    db_pool_size: int = Field(default=10, ge=1, le=200)
    log_level: str = "INFO"
    # The address participants reach this server at, e.g. https://study.example.org (no trailing slash). Used for
    # the study URL shown to admins; without it the request's own scheme and host are used.
    public_base_url: str | None = None
    # Behind a reverse proxy: trust its X-Forwarded-Proto/-Host/-For headers (only if it sets them itself).
    trust_proxy: bool = False
    # Admin login throttling: failures per account and per client address within the window.
    login_window_s: int = Field(default=15 * 60, ge=1)
    login_max_failures_account: int = Field(default=5, ge=1)
    login_max_failures_address: int = Field(default=30, ge=1)
    # Password checks waiting for the (single, low-priority) hashing thread beyond this are refused with a 429.
    login_hash_queue: int = Field(default=8, ge=1)
    # A login refused from memory (an address or account already blocked) is answered after this pause, at most
    # login_max_delayed at a time: a client that waits for each answer then tries about once a second.
    login_refusal_delay_s: float = Field(default=1.0, ge=0, le=10)
    login_max_delayed: int = Field(default=256, ge=0)
    # Prolific API (optional). The token is never shown back or logged.
    prolific_api_token: SecretStr | None = None
    prolific_api_url: str = "https://api.prolific.com"

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        if v is None or v.strip() == "":
            return None
        v = v.strip().rstrip("/")
        if not (v.startswith("https://") or v.startswith("http://")) or " " in v or "?" in v or "#" in v:
            raise ValueError("public_base_url must be an http(s) address such as https://study.example.org")
        return v

    # "text" for people, "json" for one JSON object per line (log shippers); both carry the request id.
    log_format: Literal["text", "json"] = "text"
    # One log line per HTTP request (method, path, status, duration, request id).
    access_log: bool = False
    # Prometheus metrics at /metrics, for a scraper that sends "Authorization: Bearer <token>" (or a logged-in
    # admin). Empty: /metrics does not exist.
    metrics_token: str = ""
    # FastAPI's built-in OpenTelemetry (traces, metrics and logs through the globally configured providers, e.g.
    # under `opentelemetry-instrument`). Off by default: lpstudy has its own metrics and logs, and looking up the
    # global providers on every request cost ~2% of the participant path's server CPU with nothing listening.
    opentelemetry: bool = False

    @model_validator(mode="after")
    def _refuse_insecure(self) -> Settings:
        if self.secret_key in PUBLISHED_KEYS:
            raise InsecureConfiguration(
                "LPSTUDY_SECRET_KEY is a published example key and signs nothing: unset it (a key is then "
                "generated for this installation) or set a random one"
            )
        if self.env == "production" and len(self.secret_key) < MIN_SECRET_LEN:
            raise InsecureConfiguration(
                "LPSTUDY_SECRET_KEY must be set to a random value of at least 32 characters in production "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.metrics_token and len(self.metrics_token) < 16:
            raise InsecureConfiguration("LPSTUDY_METRICS_TOKEN must be at least 16 characters long")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def resolved_state_dir(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir
        if self.is_sqlite:
            db = make_url(self.database_url).database
            if db and db != ":memory:":
                return Path(db).parent
        return Path("var")

    def secret_key_path(self) -> Path:
        """The file a generated key lives in: state_dir/secret-key, or beside a SQLite file as <db>.secret-key
        (so each SQLite database has its own, like the demo's var/lpstudy-demo.db.secret-key)."""
        if self.state_dir is None and self.is_sqlite:
            db = make_url(self.database_url).database
            if db and db != ":memory:":
                return Path(db + SECRET_FILE_SUFFIX)
        return self.resolved_state_dir() / "secret-key"

    def with_secret_key(self) -> Settings:
        """These settings with a usable secret key: the configured one, else this installation's own."""
        if self.secret_key:
            return self
        return self.model_copy(update={"secret_key": installation_secret(self.secret_key_path())})


def installation_secret(path: Path) -> str:
    """Read the key kept at `path`, creating it (random, mode 0600) if there is none. Safe when several
    processes start at once: the key is written to a private temporary file and linked into place, so every
    process ends up with the one that won."""
    try:
        key = path.read_text(encoding="ascii").strip()
        if len(key) >= MIN_SECRET_LEN:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(tmp, path)  # fails if another process won the race: then use theirs
        except FileExistsError:
            existing = path.read_text(encoding="ascii").strip()
            if len(existing) < MIN_SECRET_LEN:  # an empty or truncated file: replace it
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
