"""Entries first (app/participants/priority.py): a page's database work waits while first entries are in flight
in its event loop, goes at once when the last one is done, and never waits longer than the cap."""

from __future__ import annotations

import asyncio
import time

from app.participants.priority import EntriesFirst


def test_no_entry_in_flight_means_no_wait() -> None:
    async def go() -> float:
        gate = EntriesFirst(max_defer_s=5)
        t = time.perf_counter()
        await gate.wait_for_entries()
        return time.perf_counter() - t

    assert asyncio.run(go()) < 0.05


def test_a_page_waits_for_the_entries_and_goes_when_the_last_is_done() -> None:
    async def go() -> list[str]:
        gate = EntriesFirst(max_defer_s=5)
        order: list[str] = []
        release = asyncio.Event()

        async def entry(name: str) -> None:
            async with gate.entry():
                await release.wait()
                order.append(name)

        async def page() -> None:
            await gate.wait_for_entries()
            order.append("page")

        entries = [asyncio.create_task(entry(f"entry{i}")) for i in range(3)]
        await asyncio.sleep(0)  # the entries are in flight
        assert gate.entries_in_flight() == 3
        waiting = asyncio.create_task(page())
        await asyncio.sleep(0.05)
        assert order == []  # the page is still waiting
        release.set()
        await asyncio.wait_for(asyncio.gather(*entries, waiting), 1)
        assert gate.entries_in_flight() == 0
        return order

    assert asyncio.run(go()) == ["entry0", "entry1", "entry2", "page"]


def test_a_stream_of_entries_cannot_hold_a_page_longer_than_the_cap() -> None:
    async def go() -> float:
        gate = EntriesFirst(max_defer_s=0.1)
        stop = asyncio.Event()

        async def endless() -> None:
            async with gate.entry():
                await stop.wait()

        task = asyncio.create_task(endless())
        await asyncio.sleep(0)
        t = time.perf_counter()
        await gate.wait_for_entries()
        waited = time.perf_counter() - t
        stop.set()
        await task
        return waited

    waited = asyncio.run(go())
    assert 0.09 <= waited < 1.0


def test_a_failed_entry_still_releases_the_pages() -> None:
    async def go() -> None:
        gate = EntriesFirst(max_defer_s=5)

        async def failing() -> None:
            async with gate.entry():
                await asyncio.sleep(0.01)
                raise ValueError("study full")

        task = asyncio.create_task(failing())
        await asyncio.sleep(0)
        t = time.perf_counter()
        await gate.wait_for_entries()
        assert time.perf_counter() - t < 1
        assert gate.entries_in_flight() == 0
        try:
            await task
        except ValueError:
            pass

    asyncio.run(go())
