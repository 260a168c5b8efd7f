"""Admin security: login throttling (per account, per address, Retry-After), the hashing thread's bound, proxy
addresses, CSRF on every admin form, and several admins."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from fastapi.testclient import TestClient
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.admin import hashing, throttle
from app.errors import TooManyRequests
from app.models import AdminUser, AuditEntry, LoginFailure
from tests.app.admin.conftest import EMAIL, PASSWORD, login
from tests.app.admin.test_auth import _admin_routes, _fill

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _wrong(client: TestClient, email: str = EMAIL, password: str = "wrong password!!"):  # type: ignore[no-untyped-def]
    return login(client, email, password)


def test_account_is_throttled_after_five_failures_with_retry_after(client, admin_user, db) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        assert _wrong(client).status_code == 401
    r = _wrong(client)
    assert r.status_code == 429
    retry = int(r.headers["Retry-After"])
    assert 14 * 60 < retry <= 15 * 60
    assert "Too many failed logins" in HTMLParser(r.text).css_first("main").text()
    # even the right password is refused while throttled: the flood cannot guess it
    assert login(client).status_code == 429
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(LoginFailure)) == 5  # refused attempts are not hashed


@sqlite_only
def test_throttled_attempts_are_not_hashed(client, admin_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        _wrong(client)
    calls = []
    real = hashing.HashingPool.run
    monkeypatch.setattr(hashing.HashingPool, "run", lambda self, fn: calls.append(1) or real(self, fn))
    assert _wrong(client).status_code == 429
    assert calls == []


@sqlite_only
def test_the_window_expires_and_success_clears_the_account(client, admin_user, db, settings) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):
        _wrong(client)
    assert login(client).status_code == 303  # the fifth attempt is right: allowed, and clears the count
    with db.session() as s:
        assert (
            s.scalar(select(func.count()).select_from(LoginFailure).where(LoginFailure.account == EMAIL.lower())) == 0
        )
        # five old failures, all outside the window: no throttle
        old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.login_window_s + 5)
        for _ in range(5):
            s.add(LoginFailure(at=old, account="x@example.org", address="1.2.3.4"))
    with db.session() as s:
        throttle.check(s, settings, "x@example.org", "1.2.3.4")  # no raise


@sqlite_only
def test_address_is_throttled_across_accounts(client, admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    limit = settings.login_max_failures_address
    for i in range(limit):
        assert _wrong(client, email=f"user{i}@example.org").status_code == 401
    r = _wrong(client, email="fresh@example.org")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


@sqlite_only
def test_retry_after_counts_from_the_oldest_failure_that_must_expire(db, settings) -> None:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    with db.session() as s:
        for minutes_ago in (14, 10, 6, 3, 1):
            s.add(LoginFailure(at=now - dt.timedelta(minutes=minutes_ago), account="a@b.org", address="9.9.9.9"))
    with db.session() as s, pytest.raises(TooManyRequests) as err:
        throttle.check(s, settings, "A@B.org ", "8.8.8.8", now=now)
    assert err.value.retry_after == 60  # the one from 14 minutes ago leaves the 15-minute window in 1 minute


def _request(headers: dict[str, str], peer: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    from starlette.requests import Request

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "headers": raw, "client": (peer, 1234), "method": "GET", "path": "/"})


def test_client_address_honours_x_forwarded_for_only_when_trusted(settings) -> None:  # type: ignore[no-untyped-def]
    req = _request({"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
    assert throttle.client_address(req, settings) == "10.0.0.1"
    trusted = settings.model_copy(update={"trust_proxy": True})
    assert throttle.client_address(req, trusted) == "203.0.113.7"  # the hop the proxy appended, not a forgery
    assert throttle.client_address(_request({}), trusted) == "10.0.0.1"


def test_hashing_pool_runs_one_check_at_a_time_and_refuses_a_long_queue() -> None:
    pool = hashing.HashingPool(queue=3)
    running = []
    peak = []
    gate = threading.Event()

    def check() -> bool:
        running.append(1)
        peak.append(len(running))
        gate.wait(5)
        time.sleep(0.01)
        running.pop()
        return True

    results: list[object] = []

    def call() -> None:
        try:
            results.append(pool.run(check))
        except TooManyRequests as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while pool.waiting < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(TooManyRequests) as err:
        pool.run(check)  # a fourth while three wait: refused at once
    assert err.value.retry_after >= 1
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [True, True, True]
    assert max(peak) == 1  # never two password checks at once


def test_the_hashing_thread_rests_after_a_failed_check_only() -> None:
    pool = hashing.HashingPool(fail_rest_ratio=4.0)
    starts: list[float] = []

    def check(ok: bool):  # type: ignore[no-untyped-def]
        def run() -> bool:
            starts.append(time.monotonic())
            time.sleep(0.05)
            return ok

        return run

    assert pool.run(check(True)) is True
    assert pool.run(check(True)) is True
    assert starts[1] - starts[0] < 0.15  # a right password: no rest
    t0 = time.monotonic()
    assert pool.run(check(False)) is False
    assert time.monotonic() - t0 < 0.15  # the failing request itself is answered at once
    assert pool.run(check(True)) is True
    assert starts[3] - starts[2] >= 0.05 + 4.0 * 0.05 - 0.01  # the next check waited 4x the failed one


def test_the_hashing_thread_runs_at_low_priority() -> None:
    import os

    pool = hashing.HashingPool()
    nice = pool.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert nice >= hashing.NICE


def test_a_busy_hashing_queue_answers_429(client, admin_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def busy(self, fn):  # type: ignore[no-untyped-def]
        raise TooManyRequests("Too many logins are being checked right now.", retry_after=2)

    monkeypatch.setattr(hashing.HashingPool, "run", busy)
    r = login(client)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"


# --- CSRF on every admin form ---------------------------------------------------------------------


def test_every_admin_post_refuses_a_logged_in_admin_without_the_csrf_token(app, admin_client, db, make_study) -> None:  # type: ignore[no-untyped-def]
    make_study(db, slug="walk-study", trials=2, pool=3, activate=False)
    posts = [(p, m) for p, m in _admin_routes(app.routes) if m == "POST"]
    assert len(posts) >= 8
    for path, _ in posts:
        for data in ({}, {"csrf_token": "forged"}):
            r = admin_client.post(_fill(path), data=data)
            assert r.status_code in (403, 400), (path, data, r.status_code)
            if r.status_code == 403:
                assert HTMLParser(r.text).css_first("h1").text() == "Form expired", path
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0  # nothing happened
        assert s.scalar(select(func.count()).select_from(AdminUser)) == 1
    assert admin_client.get("/admin").status_code == 200


# --- several admins --------------------------------------------------------------------------------


def test_an_admin_creates_another_who_can_log_in_and_it_is_audited(app, admin_client, db) -> None:  # type: ignore[no-untyped-def]
    page = admin_client.get("/admin/users")
    assert page.status_code == 200
    r = admin_client.post(
        "/admin/users",
        data={
            "email": "Second@Example.org",
            "password": PASSWORD,
            "password2": PASSWORD,
            "csrf_token": admin_client.csrf,
        },
    )
    assert r.status_code == 303
    listed = [
        td.text() for td in HTMLParser(admin_client.get(r.headers["location"]).text).css("table.users td:first-child")
    ]
    assert listed == [EMAIL.lower(), "second@example.org"]
    with TestClient(app, follow_redirects=False) as other:
        assert login(other, "second@example.org", PASSWORD).status_code == 303
    with db.session() as s:
        entry = s.scalar(select(AuditEntry))
        assert (entry.action, entry.target, entry.admin_email) == ("admin.create", "second@example.org", EMAIL.lower())


@pytest.mark.parametrize(
    ("email", "password", "password2", "message"),
    [
        ("x@example.org", "short", "short", "at least 10 characters"),
        ("not-an-email", PASSWORD, PASSWORD, "not a valid email"),
        ("x@example.org", PASSWORD, PASSWORD + "!", "do not match"),
        (EMAIL, PASSWORD, PASSWORD, "already exists"),
    ],
)
@sqlite_only
def test_bad_new_admin_input_is_explained_and_changes_nothing(
    admin_client, db, email, password, password2, message
) -> None:  # type: ignore[no-untyped-def]
    r = admin_client.post(
        "/admin/users",
        data={"email": email, "password": password, "password2": password2, "csrf_token": admin_client.csrf},
    )
    assert r.status_code in (400, 409)
    assert message in HTMLParser(r.text).css_first("p.error").text()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AdminUser)) == 1
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0
