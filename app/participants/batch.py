"""First entries claimed together on PostgreSQL: a launch burst's waiting entries share one transaction.

An entry on its own (app.participants.assignment) is four round trips: the study and the PID's participant,
the pick of a free slot, one statement that inserts the participant, their trials and the slot, and the commit.
In a launch burst hundreds arrive within a second, and each pays for all four, on two cores that also run
PostgreSQL. Here the entries that are waiting for a thread when one frees up (``EntryBatcher``, per event loop)
are claimed together (``enter_many``): one look-up of the study and of every PID's participant, then the claim
that a single entry makes on PostgreSQL (``assignment.claim_pg``) for all of them at once: one pick of the lowest
free slots, one statement for all the new participants, their trials and their slots, one commit. When entries
arrive one at a time, each is a batch of one and takes the single-entry path, so nothing waits to be batched.

The guarantees are the single path's, because the batch does what the same entries one after another would:
- they take the lowest free (rank, tiebreak) slots, one each, so conditions stay within one of each other and
  never pass their targets (the slots are locked FOR UPDATE SKIP LOCKED as a single entry's pick is);
- a PID that has a participant resumes it; the same PID twice in one batch gets one participant;
- a study that is missing, closed or full answers each entry as the single path would, and so does the screen
  check (each entry's own);
- a PID that entered at the same moment through another process makes the batch's insert fail on the unique
  (study, PID) constraint: the transaction is rolled back whole and each of its entries goes the single path,
  which resolves that race.
A transient database error fails the whole batch, and the hot pool retries it once; that is safe, as every
entry is keyed on its PID.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from app.errors import DomainError
from app.models import StudyStatus
from app.models.base import utcnow
from app.participants import assignment, direct, slots, viewing
from app.participants.tables import entry_rng
from app.prolific import EntryParams
from app.web import HotPool

# The most entries one batch claims: one statement inserts this many participants and their trials.
MAX_BATCH = 32


@dataclass
class _New:
    """An entry that needs a participant: its params, its measured window width (already checked) and where its
    token goes in the batch's answer."""

    params: EntryParams
    screen: int | str | None
    at: list[int] = field(default_factory=list)


def enter_many(engine: Engine, slug: str, entries: list[tuple[EntryParams, int | str | None]]) -> list[str | Exception]:
    """Each entry's token (as assignment.enter would give it), or the domain error it would raise, in order.
    Entries are (params, measured window width). PostgreSQL only; a batch of one takes the single path."""
    if len(entries) == 1:
        params, screen = entries[0]
        try:
            return [assignment.enter(engine, slug, params, None, None, screen)]
        except (DomainError, viewing.ScreenCheckNeeded) as e:
            return [e]
    rng = entry_rng()
    out: list[str | Exception | None] = [None] * len(entries)
    with direct.for_engine(engine).transaction() as tx:  # two reads; the commit ends the snapshot at once
        study = tx.first(assignment.STUDY_BY_SLUG, {"slug": slug})
        existing = (
            dict(tx.all(assignment.EXISTING_MANY, {"study_id": study.id, "pids": sorted({p.pid for p, _ in entries})}))
            if study is not None
            else {}
        )
    if study is None:
        return [assignment.no_study() for _ in entries]
    closed = assignment.not_active(engine, study.id) if study.status != StudyStatus.ACTIVE else None
    new: dict[str, _New] = {}
    for i, (params, screen) in enumerate(entries):
        if params.pid in existing:
            out[i] = str(existing[params.pid])  # the same PID again: resume
            continue
        try:
            if closed is not None:
                raise closed
            viewing.check_screen(study.config, screen)
        except (DomainError, viewing.ScreenCheckNeeded) as e:
            out[i] = e
            continue
        new.setdefault(params.pid, _New(params, screen)).at.append(i)
    if new:
        for pid, token in _claim_all(engine, slug, study, list(new.values()), rng).items():
            for i in new[pid].at:
                out[i] = token
    assert all(o is not None for o in out)
    return out  # type: ignore[return-value]


def _claim_all(
    engine: Engine, slug: str, study: Any, new: list[_New], rng: random.Random
) -> dict[str, str | Exception]:
    """Tokens for the new entries, claimed together; the single path for all of them if the batch's insert meets
    a PID that entered elsewhere at the same moment."""
    cutoff = utcnow() - dt.timedelta(minutes=study.timeout_minutes)
    got: dict[str, str | Exception] = {}
    remaining = new
    more = True
    try:
        while remaining:
            claimed = assignment.claim_pg(engine, study, [e.params for e in remaining], cutoff, rng)
            got.update(claimed)
            remaining = remaining[len(claimed) :]
            if not remaining:
                break
            if not more:
                for entry in remaining:
                    got[entry.params.pid] = assignment.full()
                break
            # as the single path: make the next block of slots, or claim once more and then it is full
            more = slots.make_slots(engine, study.id, rng)
    except IntegrityError:
        for entry in remaining:
            try:
                got[entry.params.pid] = assignment.enter(engine, slug, entry.params, rng, None, entry.screen)
            except (DomainError, viewing.ScreenCheckNeeded) as e:
                got[entry.params.pid] = e
    return got


@dataclass
class _Waiting:
    slug: str
    params: EntryParams
    screen: int | str | None
    future: asyncio.Future[str]


@dataclass
class _Queue:
    waiting: deque[_Waiting] = field(default_factory=deque)
    running: set[asyncio.Task[None]] = field(default_factory=set)  # held here: the loop keeps only weak ones


class EntryBatcher:
    """Per event loop: first entries wait here for one of `concurrency` runners, which claim whatever is waiting
    (up to MAX_BATCH entries of one study) in one `enter_many` on the entry pool."""

    def __init__(self, pool: HotPool, concurrency: int, max_batch: int = MAX_BATCH) -> None:
        self.pool = pool
        self.concurrency = concurrency
        self.max_batch = max_batch
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()

    async def enter(self, engine: Engine, slug: str, params: EntryParams, screen: int | str | None) -> str:
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            q = self._queues[loop] = _Queue()
        fut: asyncio.Future[str] = loop.create_future()
        q.waiting.append(_Waiting(slug, params, screen, fut))
        if len(q.running) < self.concurrency:
            q.running.add(loop.create_task(self._run(engine, q)))
        return await fut

    def _take(self, q: _Queue) -> list[_Waiting]:
        slug = q.waiting[0].slug
        batch: list[_Waiting] = []
        keep: deque[_Waiting] = deque()
        while q.waiting and len(batch) < self.max_batch:
            w = q.waiting.popleft()
            (batch if w.slug == slug else keep).append(w)
        q.waiting.extendleft(reversed(keep))
        return batch

    async def _run(self, engine: Engine, q: _Queue) -> None:
        try:
            await self._drain(engine, q)
        finally:  # at once, not in a done callback: an entry queued after the last batch must start a runner
            q.running.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _drain(self, engine: Engine, q: _Queue) -> None:
        while q.waiting:
            batch = [w for w in self._take(q) if not w.future.done()]  # a cancelled request is dropped
            if not batch:
                continue
            try:
                results: list[str | Exception] = await self.pool.run(
                    enter_many, engine, batch[0].slug, [(w.params, w.screen) for w in batch]
                )
            except Exception as e:  # the whole batch failed (after the pool's one retry): each entry raises it
                results = [e] * len(batch)
            for w, r in zip(batch, results, strict=True):
                if w.future.done():
                    continue
                if isinstance(r, Exception):
                    w.future.set_exception(r)
                else:
                    w.future.set_result(r)
