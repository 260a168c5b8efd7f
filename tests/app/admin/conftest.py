"""Admin test helpers: cheap argon2, an admin user, logging in, reading CSRF tokens."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from app.admin import auth

EMAIL = "Admin@Example.org"
PASSWORD = "correct horse battery"
REAL_HASHER = auth._hasher


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with tiny costs so that the suite stays fast; the production parameters are checked apart."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def admin_user(db) -> str:  # type: ignore[no-untyped-def]
    with db.session() as s:
        auth.create_user(s, EMAIL, PASSWORD)
    return EMAIL.lower()


def csrf_of(html: str) -> str:
    node = HTMLParser(html).css_first('input[name="csrf_token"]')
    assert node is not None
    return node.attributes["value"] or ""


def login(client: TestClient, email: str = EMAIL, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    r = client.get("/admin/login")
    assert r.status_code == 200
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": csrf_of(r.text)})


@pytest.fixture
def admin_client(client, admin_user):  # type: ignore[no-untyped-def]
    """A logged-in admin; `admin_client.csrf` is the token for its forms."""
    r = login(client)
    assert r.status_code == 303, r.text[:300]
    client.csrf = csrf_of(client.get("/admin").text)
    return client
