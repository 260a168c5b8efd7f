"""Entries first: during a launch burst, the participant pages' database work waits for the first entries.

A Prolific launch sends hundreds of first entries at once, and each one the server has not answered is a
participant looking at a blank page, the moment they are likeliest to return the study. Participants already in
the study are in the middle of a page they can see. So while entries are in flight in this process, a page
request waits (in the event loop, holding no thread or connection) until none are, but never longer than
MAX_DEFER_S: a steady stream of entries cannot starve the study. The event loop's own work for a page (the
request's parsing, rendering) is small; the database hop and the thread it takes are what the entries need.

Per event loop: a server process has one; tests may run apps on several.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

MAX_DEFER_S = 0.3


class _Gate:
    def __init__(self) -> None:
        self.entries = 0
        self.waiting: list[asyncio.Future[None]] = []


class EntriesFirst:
    def __init__(self, max_defer_s: float = MAX_DEFER_S) -> None:
        self.max_defer_s = max_defer_s
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Gate] = weakref.WeakKeyDictionary()

    def _gate(self) -> _Gate:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = _Gate()
        return gate

    def entries_in_flight(self) -> int:
        return self._gate().entries

    @asynccontextmanager
    async def entry(self) -> AsyncIterator[None]:
        gate = self._gate()
        gate.entries += 1
        try:
            yield
        finally:
            gate.entries -= 1
            if not gate.entries:
                for fut in gate.waiting:
                    if not fut.done():
                        fut.set_result(None)
                gate.waiting.clear()

    async def wait_for_entries(self) -> None:
        """Return once no entry is in flight in this event loop, or after max_defer_s."""
        gate = self._gate()
        if not gate.entries:
            return
        fut = asyncio.get_running_loop().create_future()
        gate.waiting.append(fut)
        try:
            await asyncio.wait_for(fut, self.max_defer_s)
        except TimeoutError:
            pass
        finally:
            if fut in gate.waiting:  # timed out or cancelled: the last entry's release will not see it
                gate.waiting.remove(fut)
