"""Every response's edge (app/http.py): security headers, HEAD on every GET route, request ids, the last-resort
500 page, pages free of inline script and style, and the optional metrics."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import select

from app.admin import auth
from app.logs import JsonFormatter, RequestIdFilter
from app.main import create_app
from app.models import Stimulus
from app.web import HotRoute

REPO = Path(__file__).resolve().parents[2]
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
EMAIL, PASSWORD = "edge@example.org", "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def assert_secure(r, *, https: bool = False) -> None:  # type: ignore[no-untyped-def]
    h = r.headers
    csp = h.get("content-security-policy", "")
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives.get("script-src") == "'self'" and directives.get("style-src") == "'self'", csp
    assert directives.get("frame-ancestors") == "'none'" and directives.get("object-src") == "'none'", csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert h.get("x-content-type-options") == "nosniff"
    assert h.get("referrer-policy") == "no-referrer"
    assert h.get("x-frame-options") == "DENY"
    assert re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", h.get("x-request-id", ""))
    if https:
        assert h.get("strict-transport-security", "").startswith("max-age=")
    else:
        assert "strict-transport-security" not in h


def login(c: TestClient) -> None:
    form = HTMLParser(c.get("/admin/login").text).css_first('input[name="csrf_token"]')
    r = c.post("/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": form.attributes["value"]})
    assert r.status_code == 303


def _walk_values(db, make_study, new_pid, client: TestClient) -> dict[str, str]:  # type: ignore[no-untyped-def]
    slug = make_study(db, slug="edge-study", trials=2, pool=3)
    r = client.get(f"/s/{slug}", params={"PROLIFIC_PID": new_pid()})
    token = r.headers["location"].rsplit("/", 1)[1]
    with db.session() as s:
        public_id = s.scalar(select(Stimulus.public_id))
        auth.create_user(s, EMAIL, PASSWORD)
    return {"slug": slug, "token": token, "public_id": public_id}


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "1"), path)


try:  # FastAPI >= 0.16x wraps included routers; this flattens them (older versions list routes directly)
    from fastapi.routing import iter_route_contexts as _contexts
except ImportError:  # pragma: no cover

    def _contexts(routes):  # type: ignore[no-untyped-def]
        return iter(routes)


def get_routes(app) -> list[str]:  # type: ignore[no-untyped-def]
    """Every GET route of the app (included routers flattened; the /static mount is checked separately)."""
    out = set()
    for rc in _contexts(app.routes):
        original = getattr(rc, "original_route", rc)
        if isinstance(original, APIRoute | HotRoute) and "GET" in (rc.methods or original.methods or ()):
            out.add(rc.path or original.path)
    return sorted(out)


def test_every_get_route_answers_head_like_get_with_the_headers(app, client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    values = _walk_values(db, make_study, new_pid, client)
    paths = get_routes(app)
    assert {"/", "/healthz", "/s/{slug}", "/p/{token}", "/img/{public_id}", "/admin", "/admin/login"} <= set(paths)
    for who in ("anonymous", "admin"):
        if who == "admin":
            login(client)
        for path in paths:
            url = _fill(path, values)
            if path == "/s/{slug}":
                url += "?PROLIFIC_PID=" + "e" * 24
            got = client.get(url)
            head = client.head(url)
            assert head.status_code != 405, (who, path)
            assert head.status_code == got.status_code, (who, path, head.status_code, got.status_code)
            assert head.content == b"", (who, path)
            if "content-length" in got.headers:
                assert head.headers.get("content-length") == got.headers["content-length"], (who, path)
            assert head.headers.get("content-type") == got.headers.get("content-type"), (who, path)
            assert_secure(got)
            assert_secure(head)
    # static files and errors too
    for url in ("/static/css/site.css", "/static/js/trial.js", "/no/such/page", "/p/not-a-token"):
        assert_secure(client.get(url))
        assert client.head(url).status_code == client.get(url).status_code
    r = client.post("/healthz")
    assert r.status_code == 405
    assert_secure(r)


@sqlite_only
def test_hsts_only_over_https(app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url="https://study.example.org") as c:
        assert_secure(c.get("/healthz"), https=True)
        assert_secure(c.get("/admin/login"), https=True)
    with TestClient(app) as c:
        assert_secure(c.get("/healthz"))


@sqlite_only
def test_request_ids_are_echoed_or_made(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123.x"}).headers["x-request-id"] == "abc-123.x"
    made = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(made) == 5
    bad = client.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 200}).headers["x-request-id"]
    assert "<" not in bad and len(bad) <= 128


@sqlite_only
def test_an_unhandled_error_is_a_polite_500_with_the_headers_logged_with_its_request_id(app, caplog) -> None:  # type: ignore[no-untyped-def]
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    caplog.set_level(logging.ERROR)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom", headers={"X-Request-ID": "req-500"})
    assert r.status_code == 500
    assert_secure(r)
    assert "text/html" in r.headers["content-type"]
    assert HTMLParser(r.text).css_first("h1").text() == "Something went wrong"
    assert "Internal Server Error" not in r.text and "kaboom" not in r.text
    rec = [x for x in caplog.records if "unhandled error" in x.getMessage()]
    assert rec and rec[0].exc_info is not None


def test_every_page_of_the_walk_is_free_of_inline_script_and_style(
    client, db, make_study, new_pid, rendered_pages, inline_check
) -> None:  # type: ignore[no-untyped-def]
    """The autouse check in conftest covers every test; this one makes sure every template gets rendered."""
    from app.studies.service import get_study

    slug = make_study(db, slug="inline-walk", trials=2, pool=3)
    with db.session() as s:
        get_study(s, slug).attention = {"positions": [1], "fail_threshold": 2}  # an attention-check page too
    url = client.get(f"/s/{slug}", params={"PROLIFIC_PID": new_pid()}).headers["location"]
    client.get(url)
    client.post(f"{url}/consent", data={"consent": "yes"})
    client.get(url)
    client.post(f"{url}/instructions")
    for _ in range(3):
        page = client.get(url)
        action = HTMLParser(page.text).css_first("form#trial-form").attributes["action"]
        client.post(action, data={"label": "1", "confidence": "3"})
    client.get(url)
    client.post(f"{url}/demographics", data={"age": "30", "gender": "female", "student": "no", "employment": "other"})
    client.get(url)
    client.get("/")
    client.get("/no/such/page")
    client.get("/s/no-such-study", params={"PROLIFIC_PID": new_pid()})
    client.get("/admin/login")
    with db.session() as s:
        auth.create_user(s, EMAIL, PASSWORD)
    login(client)
    client.get("/admin")
    client.get(f"/admin/studies/{slug}")
    names = {n for n, _ in rendered_pages}
    core = {
        "participant/consent.html",
        "participant/instructions.html",
        "participant/trial.html",
        "participant/demographics.html",
        "participant/done.html",
        "message.html",
        "admin/login.html",
        "admin/dashboard.html",
        "admin/study.html",
    }
    assert core <= names, core - names
    for name, html in rendered_pages:
        assert inline_check(html) == [], name


def test_the_inline_check_finds_what_the_csp_would_block(inline_check) -> None:  # type: ignore[no-untyped-def]
    ok = '<html><head><script src="/static/js/trial.js" defer></script></head><body><p>x</p></body></html>'
    assert inline_check(ok) == []
    for bad in (
        "<script>alert(1)</script>",
        '<script src="/a.js">x()</script>',
        "<style>p{color:red}</style>",
        '<p style="color:red">x</p>',
        '<button onclick="go()">x</button>',
        '<img src="/x.png" onerror="go()">',
        '<a href="javascript:go()">x</a>',
    ):
        assert len(inline_check(f"<html><body>{bad}</body></html>")) == 1, bad


def test_static_scripts_do_nothing_the_csp_forbids() -> None:
    for js in (REPO / "static").rglob("*.js"):
        text = js.read_text()
        for bad in ("eval(", "new Function", 'setAttribute("style"', "setAttribute('style'", "document.write"):
            assert bad not in text, (js, bad)
        assert not re.search(r"\.innerHTML\s*=.*(<script|style=|on\w+=)", text), js


# --- logs ----------------------------------------------------------------------------------------


def test_json_log_lines_carry_the_request_id() -> None:
    from app.logs import REQUEST_ID

    rec = logging.LogRecord("lpstudy.x", logging.WARNING, __file__, 1, "db %s", ("down",), None)
    token = REQUEST_ID.set("rid-42")
    try:
        RequestIdFilter().filter(rec)
    finally:
        REQUEST_ID.reset(token)
    out = json.loads(JsonFormatter().format(rec))
    assert out["request_id"] == "rid-42" and out["msg"] == "db down" and out["level"] == "WARNING"
    assert out["ts"].endswith("Z")


@sqlite_only
def test_access_log_lines_name_the_request(settings, db, caplog) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings.model_copy(update={"access_log": True}), db)
    caplog.set_level(logging.INFO, logger="lpstudy.access")
    with TestClient(app) as c:
        c.get("/healthz", headers={"X-Request-ID": "acc-1"})
    rec = [r for r in caplog.records if r.name == "lpstudy.access"]
    assert rec and rec[-1].request_id == "acc-1" and rec[-1].status == 200 and rec[-1].route == "/healthz"


# --- metrics -------------------------------------------------------------------------------------


@sqlite_only
def test_metrics_are_off_unless_a_token_is_configured(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/metrics").status_code == 404


@sqlite_only
def test_metrics_need_the_token_or_an_admin_and_count_requests(settings, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    token = "m" * 24
    s = settings.model_copy(update={"metrics_token": token, "state_dir": tmp_path / "state"})
    app = create_app(s, db)
    with TestClient(app, follow_redirects=False) as c:
        for _ in range(3):
            c.get("/healthz")
        assert c.get("/metrics").status_code == 303  # neither token nor admin: to the login page
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 303
        r = c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert_secure(r)
        assert 'lpstudy_http_requests_total{method="GET",route="/healthz",status="200"} 3' in r.text
        assert 'lpstudy_http_request_duration_seconds_count{method="GET",route="/healthz"} 3' in r.text
        with db.session() as session:
            auth.create_user(session, EMAIL, PASSWORD)
        login(c)
        assert c.get("/metrics").status_code == 200
    # another process of the same installation: its snapshot file is added in
    (tmp_path / "state" / "metrics" / "999999.json").write_text(
        json.dumps({"series": [["GET", "/healthz", 200, 2, 0.01] + [2] + [0] * 10], "db_unavailable": 1})
    )
    with TestClient(app) as c:
        text = c.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    assert 'lpstudy_http_requests_total{method="GET",route="/healthz",status="200"} 5' in text
    assert "lpstudy_db_unavailable_total 1" in text


def test_fastapi_opentelemetry_is_off_unless_asked_for(settings, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With a tracer provider configured globally (as `opentelemetry-instrument` does), FastAPI's built-in
    instrumentation runs only when LPSTUDY_OPENTELEMETRY asks for it; by default it does not even look (the
    per-request look-up was ~2% of the participant path's CPU). `_native_telemetry` is FastAPI's own object."""
    from opentelemetry import trace

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.NoOpTracerProvider())
    assert not create_app(settings, db)._native_telemetry.enabled()
    on = create_app(settings.model_copy(update={"opentelemetry": True}), db)
    assert on._native_telemetry.enabled()
