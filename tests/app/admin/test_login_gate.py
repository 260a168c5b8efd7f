"""The in-process front of the login throttle: once the database throttle has refused an address or an account,
this process refuses them (429, Retry-After) without parsing the form, checking CSRF or querying the database,
until the block ends; then a correct login works again."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import event, update

from app.admin import login_gate, throttle
from app.models import LoginFailure
from tests.app.admin.conftest import EMAIL, csrf_of, login

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(app) -> Clock:  # type: ignore[no-untyped-def]
    c = Clock()
    app.state.login_gate = login_gate.LoginGate(clock=c)
    return c


@pytest.fixture
def queries(db):  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def record(*args):  # type: ignore[no-untyped-def]
        seen.append(args[2])

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def _age_failures(db, settings) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        s.execute(update(LoginFailure).values(at=LoginFailure.at - dt.timedelta(seconds=settings.login_window_s)))


def _post(client, email: str, password: str = "wrong password!!", csrf: str | None = None):  # type: ignore[no-untyped-def]
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": csrf or ""})


@sqlite_only
def test_a_blocked_address_is_refused_in_memory_form_and_post(
    client, admin_user, db, settings, clock, queries, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    for i in range(settings.login_max_failures_address):
        assert login(client, f"user{i}@example.org", "wrong password!!").status_code == 401
    first = login(client, "fresh@example.org", "wrong password!!")  # the database throttle refuses: learned
    assert first.status_code == 429
    wait = int(first.headers["Retry-After"])
    checks: list[int] = []
    real_check = throttle.check
    monkeypatch.setattr(throttle, "check", lambda *a, **k: checks.append(1) or real_check(*a, **k))
    queries.clear()
    form = client.get("/admin/login")  # not even the form: it could only lead to a 429
    assert form.status_code == 429 and 0 < int(form.headers["Retry-After"]) <= wait
    assert "Too many failed logins" in HTMLParser(form.text).css_first("main").text()
    r = _post(client, EMAIL)  # no CSRF token either: refused before the form is read
    assert r.status_code == 429 and int(r.headers["Retry-After"]) <= wait
    assert checks == [] and queries == []
    _age_failures(db, settings)
    clock.t += wait  # the block ends when the database throttle said it would
    queries.clear()
    r = client.get("/admin/login")
    assert r.status_code == 200
    assert _post(client, EMAIL, "correct horse battery", csrf_of(r.text)).status_code == 303
    assert checks == [1] and queries  # asked the database again: it stays the authority


@sqlite_only
def test_a_blocked_account_is_refused_in_memory_then_logs_in_after_the_window(
    client, admin_user, db, settings, clock, queries, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    for _ in range(settings.login_max_failures_account):
        assert login(client, EMAIL, "wrong password!!").status_code == 401
    r = login(client)  # even the right password: refused by the database throttle, and learned
    assert r.status_code == 429
    wait = int(r.headers["Retry-After"])
    token = csrf_of(client.get("/admin/login").text)  # the address is not blocked: the form is served
    queries.clear()
    r = _post(client, " ADMIN@example.org", "correct horse battery", token)  # the same account, any spelling
    assert r.status_code == 429 and queries == []
    assert _post(client, "other@example.org", "wrong password!!", token).status_code == 401  # others still checked
    _age_failures(db, settings)  # the window passes: in the database and in this process
    clock.t += wait
    assert login(client).status_code == 303


def test_the_gate_is_bounded_and_forgets_expired_blocks() -> None:
    clock = Clock()
    gate = login_gate.LoginGate(max_keys=3, clock=clock)
    for k in "abc":
        gate.block(k, 10)
    gate.block("d", 10)  # full, nothing expired: not remembered (the database throttle still refuses it)
    assert len(gate) == 3 and gate.wait("d") == 0 and gate.wait("a") == 10
    clock.t += 5
    assert gate.wait("a") == 5
    gate.block("a", 1)  # a shorter block never shortens a longer one
    assert gate.wait("a") == 5
    clock.t += 5
    assert gate.wait("a") == 0 and len(gate) == 2  # expired: dropped on the next look
    gate.block("d", 10)  # room again
    gate.block("e", 10)  # full: the expired b and c are dropped to make room
    assert gate.wait("d") == 10 and gate.wait("e") == 10 and len(gate) == 2


def test_only_what_the_database_refused_is_learned() -> None:
    gate = login_gate.LoginGate()
    gate.learn(login_gate.throttled(60, account_wait=60), "1.2.3.4", "A@b.org ")
    assert gate.wait(login_gate.account_key("a@b.org")) == 60
    assert gate.wait(login_gate.address_key("1.2.3.4")) == 0  # the account was blocked, not the address


@sqlite_only
def test_a_full_hashing_queue_is_refused_before_any_database_work(
    client, admin_user, settings, queries, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from app.admin import hashing

    busy = hashing.HashingPool(queue=1)
    monkeypatch.setattr(hashing, "_pool", busy)
    token = csrf_of(client.get("/admin/login").text)
    busy._waiting = 1  # one check waiting already: the next would be refused by the thread
    queries.clear()
    r = _post(client, EMAIL, "correct horse battery", token)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2" and queries == []
    busy._waiting = 0
    assert _post(client, EMAIL, "correct horse battery", token).status_code == 303


def test_refusals_from_memory_pause_at_most_max_delayed_at_a_time() -> None:
    import asyncio

    gate = login_gate.LoginGate(delay_s=0.3, max_delayed=2)

    async def timed() -> float:
        t = time.perf_counter()
        await gate.pause(retry_after=60)
        return time.perf_counter() - t

    async def main() -> list[float]:
        return list(await asyncio.gather(timed(), timed(), timed()))

    took = sorted(asyncio.run(main()))
    assert took[0] < 0.1  # the third found two pausing already: answered at once
    assert took[1] >= 0.29 and took[2] >= 0.29
    assert gate.delayed == 0
    short = login_gate.LoginGate(delay_s=5.0)
    t = time.perf_counter()
    asyncio.run(short.pause(retry_after=0))  # never longer than the block itself (0 s here: no pause)
    assert time.perf_counter() - t < 1
