"""Password checks on one low-priority thread, with a bounded queue.

argon2 is meant to be expensive: about 0.2 s of CPU per check here, on every core its lanes can use. Run in the
request threads, 16 concurrent wrong logins took both cores of a small server and made participants' pages 6-8
times slower. Here every check in the process goes through a single thread whose scheduling priority is the
lowest the OS offers (Linux nice 19, set per thread and inherited by argon2's lane threads), so participants'
requests always come first; and when more than ``queue`` checks are already waiting, a new one is refused at once
(429) instead of piling up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from app.errors import TooManyRequests

T = TypeVar("T")
NICE = 10


def _lower_priority() -> None:
    try:  # Linux: nice is per thread (a thread id is a process id to setpriority)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (AttributeError, OSError):  # pragma: no cover - other systems: no priority change
        pass


class HashingPool:
    def __init__(self, queue: int = 8) -> None:
        self.queue = queue
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lpstudy-hash", initializer=_lower_priority
        )
        self._lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    def busy(self) -> TooManyRequests:
        return TooManyRequests(
            "Too many logins are being checked right now. Please try again in a few seconds.", retry_after=2
        )

    def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._waiting >= self.queue:
                raise self.busy()
            self._waiting += 1
        try:
            return self._executor.submit(fn).result()
        finally:
            with self._lock:
                self._waiting -= 1


_pool: HashingPool | None = None
_pool_lock = threading.Lock()


def pool(queue: int = 8) -> HashingPool:
    """The process's pool (made on first use; the queue bound comes from the first caller's settings)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = HashingPool(queue)
        return _pool
