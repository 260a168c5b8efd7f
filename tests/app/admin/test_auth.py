"""Admin auth: argon2 users, login, the signed cookie, CSRF on every POST, and a walk over every admin route."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select, update
from starlette.routing import Mount
from typer.testing import CliRunner

from app.admin import auth
from app.cli import cli
from app.errors import BadRequest, Conflict
from app.models import AdminUser, Participant
from app.studies.service import get_study
from tests.app.admin.conftest import EMAIL, PASSWORD, REAL_HASHER, csrf_of, login

# Logic that is the same on both backends runs on SQLite only (the suite shares two cores).
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def set_cookie_header(resp) -> str:  # type: ignore[no-untyped-def]
    headers = [v for k, v in resp.headers.multi_items() if k.lower() == "set-cookie" and v.startswith(auth.COOKIE)]
    assert len(headers) == 1, resp.headers
    return headers[0]


SALT = "lpstudy-admin-session"


def session_payload(client: TestClient) -> dict:  # type: ignore[type-arg]
    raw = client.cookies.get(auth.COOKIE)
    assert raw
    key = client.app.state.settings.secret_key  # type: ignore[attr-defined]
    return URLSafeTimedSerializer(key, salt=SALT).loads(raw)


# --- users ---------------------------------------------------------------------------------------


def test_the_real_hasher_is_argon2id_with_strong_parameters() -> None:
    h = REAL_HASHER.hash(PASSWORD)
    assert h.startswith("$argon2id$")
    params = dict(kv.split("=") for kv in h.split("$")[3].split(","))
    assert int(params["m"]) >= 19456 and int(params["t"]) >= 2  # at least OWASP's argon2id minimum
    assert REAL_HASHER.verify(h, PASSWORD)


def test_create_user_stores_an_argon2id_hash(db, admin_user) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        user = s.scalar(select(AdminUser))
        assert user.email == "admin@example.org"
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        assert auth.authenticate(s, " ADMIN@example.org ", PASSWORD) is not None
        assert auth.authenticate(s, EMAIL, PASSWORD + "x") is None
        assert auth.authenticate(s, "nobody@example.org", PASSWORD) is None


@pytest.mark.parametrize(
    ("email", "password", "error", "message"),
    [
        ("a@b.org", "short", BadRequest, "at least 10 characters"),
        ("a@b.org", "123456789", BadRequest, "at least 10 characters"),
        ("not-an-email", PASSWORD, BadRequest, "not a valid email"),
        ("a b@c.org", PASSWORD, BadRequest, "not a valid email"),
        ("@c.org", PASSWORD, BadRequest, "not a valid email"),
        ("ADMIN@example.org", PASSWORD, Conflict, "already exists"),
    ],
)
@sqlite_only
def test_create_user_rejects_bad_input(db, admin_user, email, password, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message), db.session() as s:
        auth.create_user(s, email, password)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AdminUser)) == 1


@sqlite_only
def test_cli_create_user_prompts_twice(db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    r = CliRunner().invoke(cli, ["admin", "create-user", "New@Example.org", "--database-url", settings.database_url])
    assert r.exit_code == 0, r.output
    assert "Admin user new@example.org created." in r.output
    assert prompts == ["Password: ", "Repeat password: "]
    with db.session() as s:
        assert s.scalar(select(AdminUser.password_hash)).startswith("$argon2id$")


@sqlite_only
def test_cli_create_user_mismatch_creates_nothing(db, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    r = CliRunner().invoke(cli, ["admin", "create-user", "x@example.org", "--database-url", settings.database_url])
    assert r.exit_code == 1 and "the passwords do not match" in r.output
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AdminUser)) == 0


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("x@example.org", "short", "at least 10 characters"),
        ("bad-email", PASSWORD, "not a valid email address"),
        ("admin@example.org", PASSWORD, "already exists"),
    ],
)
@sqlite_only
def test_cli_create_user_from_stdin_rejects_bad_input(db, settings, admin_user, email, password, message) -> None:  # type: ignore[no-untyped-def]
    args = ["admin", "create-user", email, "--password-stdin", "--database-url", settings.database_url]
    r = CliRunner().invoke(cli, args, input=password + "\n")
    assert r.exit_code == 1 and message in r.output, r.output
    assert "Traceback" not in r.output
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AdminUser)) == 1


def test_cli_create_user_from_stdin(db, settings) -> None:  # type: ignore[no-untyped-def]
    args = ["admin", "create-user", "ops@example.org", "--password-stdin", "--database-url", settings.database_url]
    r = CliRunner().invoke(cli, args, input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    with db.session() as s:
        assert auth.authenticate(s, "ops@example.org", PASSWORD) is not None


# --- login, cookie, logout ----------------------------------------------------------------------


def test_login_form_and_successful_login(client, admin_user, db) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/admin").status_code == 303
    r = login(client)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    assert session_payload(client)["email"] == admin_user
    assert client.get("/admin").status_code == 200
    with db.session() as s:
        assert s.scalar(select(AdminUser.last_login_at)) is not None


@sqlite_only
def test_login_rotates_the_csrf_token(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    before = csrf_of(client.get("/admin/login").text)
    login(client)
    after = csrf_of(client.get("/admin").text)
    assert after and after != before


@pytest.mark.parametrize(
    ("email", "password"), [(EMAIL, "wrong password!"), ("nobody@example.org", PASSWORD), (EMAIL, "")]
)
@sqlite_only
def test_wrong_credentials_get_401_and_no_session(client, admin_user, email, password) -> None:  # type: ignore[no-untyped-def]
    r = login(client, email, password)
    assert r.status_code == 401
    assert HTMLParser(r.text).css_first("p.error").text() == "Wrong email or password."
    assert session_payload(client)["uid"] is None
    assert client.get("/admin").status_code == 303


@sqlite_only
def test_cookie_is_httponly_and_samesite_lax_but_not_secure_over_http(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    r = login(client)
    cookie = set_cookie_header(r).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie.replace("httponly", "")
    assert "max-age=" in cookie


def test_cookie_is_secure_over_https(app, admin_user) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as c:
        form = c.get("/admin/login")
        assert "secure" in set_cookie_header(form).lower().split("; ")
        r = c.post("/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf_of(form.text)})
        assert r.status_code == 303
        parts = set_cookie_header(r).lower().split("; ")
        assert {"secure", "httponly", "samesite=lax"} <= set(parts)
        assert c.get("/admin").status_code == 200


@sqlite_only
def test_cookie_value_is_plain_cookie_octets(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    """RFC 6265: no quotes, commas, spaces or backslashes in the value (raw JSON would need all four)."""
    for resp in (client.get("/admin/login"), login(client)):
        value = set_cookie_header(resp).split(";", 1)[0].split("=", 1)[1]
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+", value), value


@sqlite_only
def test_tampered_cookies_are_rejected(client, admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    login(client)
    good = client.cookies.get(auth.COOKIE)
    assert client.get("/admin").status_code == 200
    data = session_payload(client)
    payload, ts, sig = good.rsplit(".", 2)
    forged = URLSafeTimedSerializer("x", salt=SALT).dumps({**data, "uid": data["uid"] + 1}).rsplit(".", 2)[0]
    forgeries = [
        f"{payload}.{ts}.{sig[:-2]}{'AA' if not sig.endswith('AA') else 'BB'}",  # bad signature
        f"{forged}.{ts}.{sig}",  # changed payload, old signature
        f"{payload}.{ts}",  # no signature
        "garbage",
        URLSafeTimedSerializer("another-secret-key" * 3, salt=SALT).dumps(data),  # signed with another key
        URLSafeTimedSerializer(settings.secret_key, salt="another-salt").dumps(data),  # another purpose
        URLSafeTimedSerializer(settings.secret_key, salt=SALT).dumps(["not", "a", "session"]),
    ]
    for value in forgeries:
        client.cookies.clear()
        client.cookies.set(auth.COOKIE, value)
        r = client.get("/admin")
        assert r.status_code == 303 and r.headers["location"] == "/admin/login", value


@sqlite_only
def test_an_expired_cookie_is_rejected(client, admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    login(client)
    data = session_payload(client)

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - settings.session_max_age_s - 5

    old = URLSafeTimedSerializer(settings.secret_key, salt=SALT, signer=Past).dumps(data)
    fresh = URLSafeTimedSerializer(settings.secret_key, salt=SALT).dumps(data)
    client.cookies.clear()
    client.cookies.set(auth.COOKIE, old)
    assert client.get("/admin").status_code == 303
    client.cookies.clear()
    client.cookies.set(auth.COOKIE, fresh)  # the same payload signed now is accepted: expiry is what failed
    assert client.get("/admin").status_code == 200


def test_logout(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    login(client)
    token = csrf_of(client.get("/admin").text)
    r = client.post("/admin/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    cookie = set_cookie_header(r).lower()
    assert "max-age=0" in cookie or "expires=thu, 01 jan 1970" in cookie
    assert client.cookies.get(auth.COOKIE) is None
    assert client.get("/admin").status_code == 303


@sqlite_only
def test_a_cookie_copied_before_logout_is_dead_after_logout(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    login(client)
    stolen = client.cookies.get(auth.COOKIE)
    client.post("/admin/logout", data={"csrf_token": csrf_of(client.get("/admin").text)})
    client.cookies.set(auth.COOKIE, stolen)
    assert client.get("/admin").status_code == 303


# --- CSRF ----------------------------------------------------------------------------------------


@sqlite_only
def test_login_without_or_with_a_wrong_csrf_token_is_refused(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    # no cookie at all
    r = client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 403 and auth.COOKIE not in r.headers.get("set-cookie", "")
    # a cookie, but the token is missing or wrong
    client.get("/admin/login")
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged-token"}):
        r = client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD, **data})
        assert r.status_code == 403, data
        assert HTMLParser(r.text).css_first("h1").text() == "Form expired"
    # a token taken from another visitor's form does not fit this visitor's cookie
    with TestClient(client.app, follow_redirects=False) as other:
        foreign = csrf_of(other.get("/admin/login").text)
    r = client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": foreign})
    assert r.status_code == 403
    assert session_payload(client)["uid"] is None
    assert client.get("/admin").status_code == 303


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_admin_posts_without_a_valid_csrf_token_change_nothing(client, db, make_study, admin_user, token) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="draft-one", trials=2, pool=3, activate=False)
    make_study(db, slug="live-one", trials=2, pool=3, activate=True)
    login(client)
    data = {} if token is None else {"csrf_token": token}
    for path, slug, status in (
        ("/admin/studies/draft-one/activate", "draft-one", "draft"),
        ("/admin/studies/live-one/close", "live-one", "active"),
    ):
        r = client.post(path, data=data)
        assert r.status_code == 403, path
        with db.session() as s:
            assert get_study(s, slug).status == status
    r = client.post("/admin/logout", data=data)
    assert r.status_code == 403
    assert client.get("/admin").status_code == 200  # still logged in


def test_admin_posts_with_the_csrf_token_work(client, db, make_study, admin_user) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="draft-one", trials=2, pool=3, activate=False)
    make_study(db, slug="too-small", trials=4, pool=3, activate=False)
    login(client)
    page = client.get("/admin/studies/draft-one")
    assert page.status_code == 200
    token = csrf_of(page.text)
    assert 'slug = "draft-one"' in HTMLParser(page.text).css_first("pre.config").text()
    r = client.post("/admin/studies/draft-one/activate", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/admin/studies/draft-one"
    r = client.post("/admin/studies/too-small/activate", data={"csrf_token": token})
    assert r.status_code == 409 and "has 3 stimuli" in r.text
    r = client.post("/admin/studies/draft-one/close", data={"csrf_token": token})
    assert r.status_code == 303
    with db.session() as s:
        assert get_study(s, "draft-one").status == "closed"
        assert get_study(s, "too-small").status == "draft"
    assert client.post("/admin/studies/ghost/close", data={"csrf_token": token}).status_code == 404


# --- every admin route refuses anyone not logged in ---------------------------------------------

PUBLIC_ADMIN = {("/admin/login", "GET"), ("/admin/login", "POST")}

try:  # FastAPI >= 0.16x wraps included routers; this flattens them (older versions list routes directly)
    from fastapi.routing import iter_route_contexts as _contexts
except ImportError:  # pragma: no cover

    def _contexts(routes):  # type: ignore[no-untyped-def]
        return iter(routes)


def _admin_routes(routes, prefix: str = ""):  # type: ignore[no-untyped-def]
    """(path, method) for every route of app.routes, mounts and included routers included."""
    for rc in _contexts(routes):
        original = getattr(rc, "original_route", rc)
        if isinstance(original, Mount):
            yield from _admin_routes(original.routes, prefix + original.path)
            continue
        path = prefix + (rc.path or "")
        if path == "/admin" or path.startswith("/admin/"):
            for method in sorted(rc.methods or ()):
                if (path, method) not in PUBLIC_ADMIN:
                    yield path, method


def _fill(path: str) -> str:
    """Path parameters ({slug}, {id:int}, ...) get a dummy value: the slug of a real study."""
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "1" if m.group(2) == ":int" else "walk-study", path)


def test_every_admin_route_refuses_anyone_not_logged_in(app, client, db, make_study, admin_user) -> None:  # type: ignore[no-untyped-def]
    # a real, activatable draft study behind the dummy slug: an unguarded POST would change it
    make_study(db, slug="walk-study", trials=2, pool=3, activate=False)
    walked = list(_admin_routes(app.routes))
    paths = {p for p, _ in walked}
    assert {"/admin", "/admin/logout", "/admin/studies/{slug}", "/admin/studies/{slug}/activate"} <= paths
    assert len(walked) >= 5

    anonymous = TestClient(app, follow_redirects=False)
    half = TestClient(app, follow_redirects=False)  # has visited the login form: a cookie and a CSRF token, no user
    half_token = csrf_of(half.get("/admin/login").text)
    for path, method in walked:
        url = _fill(path)
        for who, c in (("anonymous", anonymous), ("login form only", half)):
            r = c.request(method, url, data={"csrf_token": half_token} if method != "GET" else None)
            if method in ("GET", "HEAD"):
                assert r.status_code == 303, (who, method, path, r.status_code)
                assert r.headers["location"] == "/admin/login"
            else:
                assert r.status_code == 403, (who, method, path, r.status_code)
                assert "Log in" in r.text or "log in" in r.text
    with db.session() as s:
        assert get_study(s, "walk-study").status == "draft"
    anonymous.close()
    half.close()


@sqlite_only
def test_the_route_walk_would_catch_an_unguarded_route(app, client) -> None:  # type: ignore[no-untyped-def]
    """A new admin route without the dependency is found by the walk and answers 200: the walk test fails."""

    @app.get("/admin/forgotten")
    def forgotten() -> dict[str, str]:
        return {"secret": "yes"}

    assert ("/admin/forgotten", "GET") in list(_admin_routes(app.routes))
    assert TestClient(app, follow_redirects=False).get("/admin/forgotten").status_code == 200


# --- dashboard -----------------------------------------------------------------------------------


def _counts(html: str, slug: str) -> dict[str, tuple[int, int, int]]:
    section = HTMLParser(html).css_first(f'section.study[data-slug="{slug}"]')
    assert section is not None, html[:500]
    out = {}
    for tr in section.css("tr[data-condition]"):
        cells = [int(tr.css_first(f"td.{k}").text()) for k in ("active", "completed", "timed-out")]
        out[tr.attributes["data-condition"] or ""] = (cells[0], cells[1], cells[2])
    return out


def test_dashboard_lists_studies_with_per_condition_counts(client, app, db, make_study, new_pid, admin_user) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="dash-one", trials=1, pool=2, conditions=("CB",), target=10)
    make_study(db, slug="dash-two", trials=1, pool=2, conditions=("CAI", "CAP"), activate=False)
    visitor = TestClient(app, follow_redirects=False)
    tokens = []
    for _ in range(4):
        r = visitor.get("/s/dash-one", params={"PROLIFIC_PID": new_pid()})
        assert r.status_code == 303
        tokens.append(r.headers["location"])
    # one completes
    url = tokens[0]
    visitor.post(f"{url}/consent", data={"consent": "yes"})
    visitor.post(f"{url}/instructions")
    action = HTMLParser(visitor.get(url).text).css_first("form#trial-form").attributes["action"]
    visitor.post(action, data={"label": "1", "confidence": "3"})
    r = visitor.post(
        f"{url}/demographics", data={"age": "30", "gender": "male", "student": "no", "employment": "other"}
    )
    assert r.status_code == 303
    visitor.close()
    # one times out (timeout_minutes = 30)
    with db.session() as s:
        s.execute(
            update(Participant)
            .where(Participant.token == tokens[1].rsplit("/", 1)[1])
            .values(last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=45))
        )

    login(client)
    r = client.get("/admin")
    assert r.status_code == 200
    doc = HTMLParser(r.text)
    assert [n.attributes["data-slug"] for n in doc.css("section.study")] == ["dash-one", "dash-two"]
    assert _counts(r.text, "dash-one") == {"CB": (2, 1, 1)}
    assert _counts(r.text, "dash-two") == {"CAI": (0, 0, 0), "CAP": (0, 0, 0)}
    statuses = [n.text() for n in doc.css("section.study span.status")]
    assert statuses == ["active", "draft"]
    assert admin_user in r.text  # who is logged in
