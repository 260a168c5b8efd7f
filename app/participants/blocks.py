"""Each participant's stimuli: the rank's block of the condition's pool, in a random order of their own.

The participant at rank r gets the r-th block of `trials_per_participant` images of the condition's pool in a fixed
pseudo-random order (the same in every process; wrapping around), shuffled, with the attention checks at their
positions. Every image is then given the same number of times, within one, with no counting query on the hot path.
The pool is cached per process (PoolCache), at most POOL_CACHE_TTL_S old.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from app.errors import StudyUnavailable
from app.participants import direct
from app.participants.tables import S

# A condition's pool (stimulus ids) is read at most this often per process; pools change only between studies'
# phases (generation, review), and a stale pool still gives valid, distinct stimuli.
POOL_CACHE_TTL_S = 10.0
# The pool: the condition's stimuli that an admin has not excluded.
_POOL = select(S.c.id).where(S.c.condition_id == bindparam("condition_id"), S.c.excluded_at.is_(None)).order_by(S.c.id)


class PoolCache:
    """condition id -> its stimulus ids in the fixed order, per engine, at most POOL_CACHE_TTL_S old."""

    def __init__(self) -> None:
        self._by_engine: weakref.WeakKeyDictionary[Engine, dict[int, tuple[float, list[int]]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self, engine: Engine, condition_id: int, load: Callable[[], list[int]]) -> list[int]:
        """The cached pool, or load() (the condition's stimulus ids by _POOL, in the caller's transaction)."""
        now = time.monotonic()
        with self._lock:
            pools = self._by_engine.setdefault(engine, {})
            hit = pools.get(condition_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        pool = load()
        random.Random(f"lpstudy-pool-{condition_id}").shuffle(pool)  # the same order in every process
        with self._lock:
            pools[condition_id] = (now + POOL_CACHE_TTL_S, pool)
        return pool


pools = PoolCache()


def trials(conn: Connection, study: Any, condition_id: int, rank: int, rng: random.Random) -> list[dict[str, Any]]:
    """The rank's block of the pool (fixed pseudo-random order per condition), in a random order, with the
    attention checks at their positions."""

    def load() -> list[int]:
        return list(conn.execute(_POOL, {"condition_id": condition_id}).scalars())

    return block(pools.get(conn.engine, condition_id, load), study, rank, rng)


def block(pool: list[int], study: Any, rank: int, rng: random.Random) -> list[dict[str, Any]]:
    """trials() from the condition's pool."""
    need = study.trials_per_participant
    if len(pool) < need:
        raise StudyUnavailable("This study is not ready yet. Please return the study on Prolific.", reason="not-ready")
    start = rank * need
    chosen = [pool[(start + i) % len(pool)] for i in range(need)]
    rng.shuffle(chosen)
    attention = set((study.attention or {}).get("positions", []))
    it = iter(chosen)
    trials = []
    for pos in range(need + len(attention)):
        if pos in attention:
            trials.append(
                {"position": pos, "stimulus_id": None, "kind": "attention", "expected_label": rng.randrange(10)}
            )
        else:
            trials.append({"position": pos, "stimulus_id": next(it), "kind": "stimulus", "expected_label": None})
    return trials


def block_for(
    tx: direct.Transaction, study: Any, condition_id: int, rank: int, rng: random.Random
) -> list[dict[str, Any]]:
    """trials() in a direct transaction (PostgreSQL's claims): the pool read there when the cache has none."""

    def load() -> list[int]:
        return [r[0] for r in tx.all(_POOL, {"condition_id": condition_id})]

    return block(pools.get(tx.engine, condition_id, load), study, rank, rng)
