"""Settings: one pydantic-settings class, every field overridable as ``LPSTUDY_<NAME>``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"


class InsecureConfiguration(RuntimeError):
    """Raised when production is started with development defaults."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LPSTUDY_", env_file=None, extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///lpstudy.db"
    data_dir: Path = Path("data")
    secret_key: str = DEFAULT_SECRET_KEY
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

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.env == "production":
            if self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < 32:
                raise InsecureConfiguration(
                    "LPSTUDY_SECRET_KEY must be set to a random value of at least 32 characters in production "
                    "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
