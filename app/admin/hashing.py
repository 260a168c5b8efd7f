"""Password checks on one low-priority thread, with a bounded queue.

argon2 is meant to be expensive: about 0.2 s of CPU per check here, on every core its lanes can use. Run in the
request threads, 16 concurrent wrong logins took both cores of a small server and made participants' pages 6-8
times slower. Here every check in the process goes through a single thread whose scheduling priority is the
low (Linux nice 10, set per thread and inherited by argon2's lane threads), so participants' requests come
first; when more than ``queue`` checks are already waiting, a new one is refused at once (429) instead of
piling up; and after a check that *failed*, the thread rests ``FAIL_REST_RATIO`` times as long as the check
took before it takes the next one. A nice value only orders runnable threads: a hashing thread that never rests
still takes a share of two small cores, which left a participant walk 1.5x slower under a flood of wrong
passwords. With the rest, wrong passwords get at most 1 / (1 + FAIL_REST_RATIO) of one hashing thread's time
(about 2 checks a second here), the rest of a flood is refused by the queue bound, and a right password costs
nothing extra unless it queues behind wrong ones.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from app.errors import TooManyRequests

T = TypeVar("T")
NICE = 10
FAIL_REST_RATIO = 4.0
MAX_REST_S = 2.0


def _lower_priority() -> None:
    try:  # Linux: nice is per thread (a thread id is a process id to setpriority)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except (AttributeError, OSError):  # pragma: no cover - other systems: no priority change
        pass


class HashingPool:
    def __init__(self, queue: int = 8, fail_rest_ratio: float = FAIL_REST_RATIO) -> None:
        self.queue = queue
        self.fail_rest_ratio = fail_rest_ratio
        self._rest_until = 0.0  # read and written on the hashing thread only
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

    def _job(self, fn: Callable[[], T]) -> T:
        rest = self._rest_until - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        t0 = time.monotonic()
        result = fn()
        if not result:  # a failed check: rest before the next one
            took = time.monotonic() - t0
            self._rest_until = time.monotonic() + min(MAX_REST_S, self.fail_rest_ratio * took)
        return result

    def run(self, fn: Callable[[], T]) -> T:
        """fn() on the hashing thread; a falsy result counts as a failed check (the thread rests after it)."""
        with self._lock:
            if self._waiting >= self.queue:
                raise self.busy()
            self._waiting += 1
        try:
            return self._executor.submit(self._job, fn).result()
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
