"""The cheap front of the login throttle: refusals this process already knows about, answered in memory.

The database throttle (throttle.py) is the authority, shared by every server process. Once it has refused an
address or an account, the answer stays true until the Retry-After it gave: refused attempts are not recorded, so
nothing can move the end of the block sooner (a correct login is refused too, so nothing clears it either). This
gate remembers each block until then and refuses further attempts from that address, or for that account, before
any form parsing, CSRF check or database query, and before the login form is even rendered. What a flood costs
the server is then one small in-memory lookup and a short 429 per request, not a thread, a query and a template.

A refusal from memory is answered after ``delay_s`` (an asyncio sleep: no thread, no CPU), at most ``max_delayed``
at a time (beyond that, at once): a flood that waits for each answer, as password-guessing tools do, then sends
about one request per connection per ``delay_s`` instead of as many as the server can answer.

Bounded: at most ``max_keys`` blocks are remembered; when full, expired ones are dropped, and if that does not
make room the new block is simply not remembered (the database throttle still refuses it, only less cheaply).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import anyio
from starlette.requests import Request

from app.errors import TooManyRequests


class LoginGate:
    def __init__(
        self,
        *,
        max_keys: int = 10_000,
        delay_s: float = 0.0,
        max_delayed: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_keys = max_keys
        self.delay_s = delay_s
        self.max_delayed = max_delayed
        self.delayed = 0
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def block(self, key: str, seconds: int) -> None:
        until = self._clock() + seconds
        with self._lock:
            if key not in self._until and len(self._until) >= self.max_keys:
                now = self._clock()
                self._until = {k: t for k, t in self._until.items() if t > now}
                if len(self._until) >= self.max_keys:
                    return
            self._until[key] = max(until, self._until.get(key, 0.0))

    def wait(self, key: str) -> int:
        """Seconds until ``key`` may try again (0: not blocked here; ask the database throttle)."""
        until = self._until.get(key)
        if until is None:
            return 0
        left = until - self._clock()
        if left <= 0:
            with self._lock:
                if self._until.get(key) == until:
                    del self._until[key]
            return 0
        return max(1, math.ceil(left))

    def refusal(self, *keys: str) -> TooManyRequests | None:
        wait = max((self.wait(k) for k in keys), default=0)
        return throttled(wait) if wait else None

    async def pause(self, retry_after: int) -> None:
        """The pause before a refusal from memory (none when ``max_delayed`` are already pausing)."""
        if self.delay_s <= 0 or self.delayed >= self.max_delayed:
            return
        self.delayed += 1  # on the event loop only: no lock needed
        try:
            await anyio.sleep(min(self.delay_s, retry_after))
        finally:
            self.delayed -= 1

    def learn(self, exc: LoginThrottled, address: str, account: str) -> None:
        """Remember a refusal of the database throttle for whichever of the two it was about."""
        if exc.address_wait:
            self.block(address_key(address), exc.address_wait)
        if exc.account_wait:
            self.block(account_key(account), exc.account_wait)

    def __len__(self) -> int:
        return len(self._until)


class LoginThrottled(TooManyRequests):
    """The throttle's refusal, saying how long the address and the account are each blocked for."""

    def __init__(self, message: str, *, retry_after: int, address_wait: int = 0, account_wait: int = 0) -> None:
        super().__init__(message, retry_after=retry_after)
        self.address_wait = address_wait
        self.account_wait = account_wait


def throttled(wait: int, *, address_wait: int = 0, account_wait: int = 0) -> LoginThrottled:
    minutes = math.ceil(wait / 60)
    return LoginThrottled(
        f"Too many failed logins. Please wait {minutes} minute{'s' if minutes != 1 else ''} and try again.",
        retry_after=wait,
        address_wait=address_wait,
        account_wait=account_wait,
    )


def address_key(address: str) -> str:
    return "address:" + address


def account_key(account: str) -> str:
    return "account:" + account.strip().lower()[:254]


def gate(request: Request) -> LoginGate:
    """The app's gate (one per app, so per server process), made on first use."""
    state = request.app.state
    found = getattr(state, "login_gate", None)
    if found is None:
        settings = state.settings
        found = state.login_gate = LoginGate(
            delay_s=settings.login_refusal_delay_s, max_delayed=settings.login_max_delayed
        )
    return found  # type: ignore[no-any-return]
