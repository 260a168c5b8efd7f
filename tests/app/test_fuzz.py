"""No 500 from any input: a seeded fuzzer sends bad values to every route of the app, on SQLite and PostgreSQL.

Every route of `app.routes` (included routers and mounts flattened) gets requests with its path parameters,
query parameters and form fields filled from a table of hostile values (NUL bytes, huge and negative numbers,
non-ASCII and binary text, very long strings, empty), fields missing or sent twice, bad cookies and CSRF tokens,
both anonymous and logged in as an admin. The test fails on any 5xx and names the requests.
"""

from __future__ import annotations

import random
import re
from urllib.parse import quote, urlencode

import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from starlette.routing import Mount

from app.admin import auth
from app.web import HotRoute

SEED = 20261201
REQUESTS = 2200
EMAIL, PASSWORD = "fuzz@example.org", "a long fuzz password"

try:
    from fastapi.routing import iter_route_contexts as _contexts
except ImportError:  # pragma: no cover - older FastAPI lists routes directly

    def _contexts(routes):  # type: ignore[no-untyped-def]
        return iter(routes)


HOSTILE = [
    "\x00", "a\x00b", "%00", "0\x00", "-1", "0", "1", "2147483648", "-2147483649", "99999999999999999999999",
    "1e309", "nan", "inf", "-0", "1.5", "0x10", "é", "名前", "🙂", "\u202e", "\ufeff1", "１２３", "٣", "\x7f",
    "\x01\x02\x03", "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"), "ÿþ", "A" * 5000, "", " ", "\n",
    "<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd", "yes", "no", "true", "female", "full-time",
    "%", "%%", "\\", "{}", "[]", "null",
]  # fmt: skip


def _routes(routes, prefix: str = ""):  # type: ignore[no-untyped-def]
    """(path, methods, query names, form names) for every route, mounts and included routers flattened."""
    for rc in _contexts(routes):
        original = getattr(rc, "original_route", rc)
        if isinstance(original, Mount):
            if getattr(original, "routes", None):
                yield from _routes(original.routes, prefix + original.path)
            else:  # a mounted app (static files): its one path
                yield prefix + original.path + "/{path}", {"GET"}, [], []
            continue
        route = original if isinstance(original, APIRoute | HotRoute) else rc
        path = prefix + (getattr(rc, "path", None) or getattr(route, "path", ""))
        dependant = getattr(route, "dependant", None)
        queries = [p.alias for p in dependant.query_params] if dependant else []
        forms = [p.alias for p in dependant.body_params] if dependant else []
        # form fields declared in nested dependencies too
        for sub in dependant.dependencies if dependant else []:
            queries += [p.alias for p in sub.query_params]
            forms += [p.alias for p in sub.body_params]
        # the participant path's plain Starlette routes declare their fields (app.web.HotRoute)
        queries += list(getattr(route, "query_names", ()))
        forms += list(getattr(route, "form_names", ()))
        yield path, set(getattr(rc, "methods", None) or getattr(route, "methods", None) or {"GET"}), queries, forms


def _csrf(html: str) -> str | None:
    node = HTMLParser(html).css_first('input[name="csrf_token"]')
    return node.attributes.get("value") if node is not None else None


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.mark.timeout(300)
def test_no_input_gets_a_server_error(app, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    slug = make_study(db, slug="fuzz-study", trials=3, pool=4)
    make_study(db, slug="fuzz-draft", trials=2, pool=3, activate=False, seed=1)
    with db.session() as s:
        auth.create_user(s, EMAIL, PASSWORD)
        from sqlalchemy import select

        from app.models import Stimulus

        public_id = s.scalar(select(Stimulus.public_id))

    anon = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    admin = TestClient(app, follow_redirects=False, raise_server_exceptions=False)

    def log_in() -> str:
        admin.cookies.clear()
        r = admin.get("/admin/login")
        admin.post("/admin/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _csrf(r.text) or ""})
        return _csrf(admin.get("/admin").text) or ""

    csrf = log_in()
    entry = anon.get(f"/s/{slug}", params={"PROLIFIC_PID": new_pid()})
    assert entry.status_code == 303
    token = entry.headers["location"].rsplit("/", 1)[1]
    anon.post(f"/p/{token}/consent", data={"consent": "yes"})
    anon.post(f"/p/{token}/instructions")

    real = {"slug": slug, "token": token, "public_id": public_id, "position": "0", "path": "css/site.css"}
    routes = list(_routes(app.routes))
    assert len(routes) > 20, routes  # the walk found the admin and participant routes
    counts: dict[tuple[str, str], int] = {}
    failures: list[str] = []

    def value() -> str:
        return rng.choice(HOSTILE)

    def fill(path: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if rng.random() < 0.5 and name in real:
                v = real[name]
            elif rng.random() < 0.3 and name in ("slug", "study", "study_slug"):
                v = rng.choice([slug, "fuzz-draft"])
            else:
                v = value()
            if name == "path" and m.group(2) == ":path":
                return quote(v, safe="/")
            return quote(v, safe="")

        return re.sub(r"\{(\w+)(:\w+)?\}", one, path)

    plan = [(p, m, q, f) for p, methods, q, f in routes for m in sorted(methods - {"HEAD"}) or ["GET"]]
    for i in range(REQUESTS):
        path, method, queries, forms = plan[i % len(plan)] if i < len(plan) * 4 else rng.choice(plan)
        client = admin if rng.random() < 0.6 else anon
        if client is admin and i % 150 == 0:
            csrf = log_in()  # a fuzzed logout or a forged cookie may have ended the session
        url = fill(path)
        params = [(n, value()) for n in queries if rng.random() < 0.7]
        params += [("PROLIFIC_PID", value())] if path.startswith("/s/") and rng.random() < 0.5 else []
        data: list[tuple[str, str]] = []
        for n in forms:
            r = rng.random()
            if r < 0.15:
                continue  # missing
            v = value() if rng.random() < 0.7 else rng.choice(["1", "yes", "CB", slug, "0"])
            data.append((n, v))
            if r > 0.9:
                data.append((n, value()))  # sent twice
        if method == "POST":
            c = rng.random()
            if c < 0.5:
                data.append(("csrf_token", csrf))
            elif c < 0.8:
                data.append(("csrf_token", rng.choice(["ü" * 32, "\x00", "", "A" * 500, csrf + "x", "名前"])))
        cookies = None
        if rng.random() < 0.1:
            cookies = {auth.COOKIE: rng.choice(["garbage", "a.b.c", "%00", "A" * 4000, "eyJ1aWQiOjF9.x.y"])}
        try:
            kwargs: dict = {"params": params}
            if cookies:
                client.cookies.set(auth.COOKIE, cookies[auth.COOKIE])
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                if rng.random() < 0.05:
                    kwargs["content"] = bytes(rng.randrange(256) for _ in range(64))
                    kwargs["headers"] = {"content-type": "application/x-www-form-urlencoded"}
                else:  # url-encoded by hand: a list keeps duplicated fields (httpx's data= takes a dict)
                    kwargs["content"] = urlencode(data).encode()
                    kwargs["headers"] = {"content-type": "application/x-www-form-urlencoded"}
            resp = client.request(method, url, **kwargs)
        finally:
            if cookies:
                client.cookies.delete(auth.COOKIE)
        counts[(path, method)] = counts.get((path, method), 0) + 1
        if resp.status_code >= 500:
            failures.append(f"{resp.status_code} {method} {url} params={params!r:.200} data={data!r:.300}")
    assert not failures, f"{len(failures)} server errors in {REQUESTS} requests:\n" + "\n".join(failures[:25])
    missed = [k for k in {(p, m) for p, m, _q, _f in plan} if counts.get(k, 0) == 0]
    assert not missed, missed  # every route got requests
    assert sum(counts.values()) >= 2000


def test_a_participants_bad_answer_says_what_was_wrong_and_links_back(client, db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=3, conditions=("CB",))
    url = client.get(f"/s/{slug}", params={"PROLIFIC_PID": new_pid()}).headers["location"]
    client.post(f"{url}/consent", data={"consent": "yes"})
    client.post(f"{url}/instructions")
    cases = [
        ({"confidence": "3"}, "Please choose a label. Nothing was saved."),
        ({"label": "12", "confidence": "3"}, "The label you sent is not one of the options. Nothing was saved."),
        ({"label": "１", "confidence": "3"}, "The label you sent is not one of the options. Nothing was saved."),
        ({"label": "1", "confidence": "9"}, "The confidence you sent is not one of 1 to 5. Nothing was saved."),
    ]
    for data, message in cases:
        r = client.post(f"{url}/trial/0", data=data)
        assert r.status_code == 400
        doc = HTMLParser(r.text)
        assert doc.css_first("p.message").text() == message
        assert doc.css_first("a#back-link").attributes["href"] == url
    r = client.post(f"{url}/trial/99999999999", data={"label": "1", "confidence": "3"})
    assert r.status_code == 400 and HTMLParser(r.text).css_first("a#back-link").attributes["href"] == url
    r = client.post(f"{url}/trial/abc", data={"label": "1", "confidence": "3"})
    assert r.status_code == 400 and HTMLParser(r.text).css_first("a#back-link").attributes["href"] == url


def test_nul_bytes_are_a_400_that_names_them(client) -> None:  # type: ignore[no-untyped-def]
    for r in (
        client.get("/admin/studies/a%00b"),
        client.get("/s/x", params={"PROLIFIC_PID": "\x00"}),
        client.post("/admin/login", data={"email": "a\x00@b.c", "password": "x", "csrf_token": "t"}),
    ):
        assert r.status_code == 400 and "NUL character" in r.text


def test_an_unexpected_error_is_a_page_not_a_dropped_connection(app) -> None:  # type: ignore[no-untyped-def]
    @app.get("/boom-for-test")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom-for-test")
        assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
        assert HTMLParser(r.text).css_first("h1").text() == "Something went wrong"
        assert "a bug" not in r.text and "Traceback" not in r.text
        assert r.headers.get("connection", "keep-alive") != "close"
        assert c.get("/healthz").status_code == 200  # and the next request on the client is served
