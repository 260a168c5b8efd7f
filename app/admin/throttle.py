"""Login throttling per account and per client address, counted in the database (shared by every server process).

A failed login is recorded; once an account (or an address) has ``max`` failures within the window, further
attempts are refused with 429 and Retry-After *before* any password is hashed, until the oldest of those failures
leaves the window. A successful login clears its account's failures (not its address's)."""

from __future__ import annotations

import datetime as dt
import math

from fastapi import Request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.admin.login_gate import throttled
from app.config import Settings
from app.models import LoginFailure
from app.models.base import utcnow


def client_address(request: Request, settings: Settings) -> str:
    """The client's IP: the proxy's X-Forwarded-For (its last hop, which the proxy itself appended) only when
    LPSTUDY_TRUST_PROXY is set; otherwise the TCP peer."""
    if settings.trust_proxy:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return (request.client.host if request.client else "unknown")[:64]


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _retry_after(session: Session, column, value: str, limit: int, window: dt.timedelta, now: dt.datetime) -> int:  # type: ignore[no-untyped-def]
    recent = list(
        session.scalars(
            select(LoginFailure.at)
            .where(column == value, LoginFailure.at >= now - window)
            .order_by(LoginFailure.at.desc())
            .limit(limit)
        )
    )
    if len(recent) < limit:
        return 0
    return max(1, math.ceil((_aware(recent[-1]) + window - now).total_seconds()))


def check(session: Session, settings: Settings, account: str, address: str, now: dt.datetime | None = None) -> None:
    """Raises LoginThrottled (a 429 with Retry-After) if the account or the address has too many recent failures."""
    now = now or utcnow()
    window = dt.timedelta(seconds=settings.login_window_s)
    account = account.strip().lower()[:254]
    account_wait = _retry_after(
        session, LoginFailure.account, account, settings.login_max_failures_account, window, now
    )
    address_wait = _retry_after(
        session, LoginFailure.address, address, settings.login_max_failures_address, window, now
    )
    if account_wait or address_wait:
        raise throttled(max(account_wait, address_wait), address_wait=address_wait, account_wait=account_wait)


def record_failure(session: Session, settings: Settings, account: str, address: str) -> None:
    now = utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.at < now - dt.timedelta(seconds=settings.login_window_s)))
    session.add(LoginFailure(at=now, account=account.strip().lower()[:254], address=address))
    session.flush()


def clear_account(session: Session, account: str) -> None:
    session.execute(delete(LoginFailure).where(LoginFailure.account == account.strip().lower()[:254]))
