"""Admin test helpers: cheap argon2, an admin user, logging in, reading CSRF tokens."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from pydantic import SecretStr
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import select

from app.admin import auth
from app.models import Participant
from tests.fake_prolific import FakeProlific

EMAIL = "Admin@Example.org"
PSTUDY = "5f" * 12  # the Prolific study of the 'prolific' fixture
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


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    f = FakeProlific().start()
    yield f
    f.stop()


@pytest.fixture
def prolific(app, admin_client, db, make_study, fake):  # type: ignore[no-untyped-def]
    """Study 'people' (see test_participants_pages) whose participants came from Prolific study PSTUDY."""
    from tests.app.admin.test_participants_pages import _people

    make_study(db, slug="people", trials=1, pool=2)
    _people(db)
    with db.session() as s:
        for p in s.scalars(select(Participant)):
            p.prolific_study_id = PSTUDY
    app.state.settings = app.state.settings.model_copy(
        update={"prolific_api_token": SecretStr(fake.token), "prolific_api_url": fake.url}
    )
    # b: completed here, awaiting review there (approvable); e: failed attention, submitted with the right code;
    # a: active here but submitted there (mismatch); 9...: on Prolific, never seen here (mismatch);
    fake.add(PSTUDY, "b" * 24, code="CDONE1")
    fake.add(PSTUDY, "e" * 24, code="CFAILED")
    fake.add(PSTUDY, "a" * 24, code="CDONE1")
    fake.add(PSTUDY, "9" * 24, code="WHATEVER")
    fake.add(PSTUDY, "d" * 24, status="RETURNED")
    return fake
