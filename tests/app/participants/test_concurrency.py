"""Assignment under real concurrency: two server processes, many simultaneous entries, one database.

Each backend gets a fresh database (a new PostgreSQL database, or a new SQLite file) and two uvicorn processes
on it. Entries are fired at once over HTTP (asyncio + aiohttp), split across both servers. The database then
shows: conditions balanced within +-1, exactly one participant per PID, distinct stimuli per participant, one
participant for a PID that entered ten times at once, and never more participants than the targets allow.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from sqlalchemy import func, select

from app.config import Settings
from app.db import Database, upgrade
from app.models import Condition, Participant, Trial
from tests.databases import new_pg_database
from tests.servers import server_env, start_uvicorn, stop_server, wait_http_up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BACKENDS = [b for b in os.environ.get("LPSTUDY_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
ENTRANTS = 200


@pytest.fixture(scope="module", params=BACKENDS)
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Database, list[str]]]:
    """A fresh migrated database and two server processes on it: (Database, [base URL, base URL])."""
    with ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(new_pg_database("lpstudy_conc_"))
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('concurrency') / 'conc.db'}"
        upgrade(url)
        db = Database(Settings(env="test", database_url=url, secret_key="c" * 40))
        stack.callback(db.dispose)
        procs = []
        for _ in range(2):
            procs.append(start_uvicorn(server_env(url, "c" * 40)))
            stack.callback(stop_server, procs[-1][0])
        for proc, base in procs:
            wait_http_up(proc, base)
        yield db, [base for _, base in procs]


async def _enter_all(entries: list[tuple[str, str, str]]) -> list[tuple[int, str, str]]:
    """GET every (base, slug, pid) entry link at once; returns (status, location, body) per entry, in order."""
    import aiohttp

    start = asyncio.Event()

    async def one(session: aiohttp.ClientSession, base: str, slug: str, pid: str) -> tuple[int, str, str]:
        await start.wait()
        params = {"PROLIFIC_PID": pid, "STUDY_ID": "a" * 24, "SESSION_ID": pid[::-1]}
        async with session.get(f"{base}/s/{slug}", params=params, allow_redirects=False) as r:
            return r.status, r.headers.get("location", ""), await r.text()

    timeout = aiohttp.ClientTimeout(total=120)
    # one connection per entrant, as separate browsers would open
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        tasks = [asyncio.create_task(one(session, *e)) for e in entries]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.gather(*tasks)


def _enter(entries: list[tuple[str, str, str]]) -> list[tuple[int, str, str]]:
    return asyncio.run(_enter_all(entries))


def _study_id(db: Database, slug: str) -> int:
    from app.studies.service import get_study

    with db.session() as s:
        return get_study(s, slug).id


def _counts_by_condition(db: Database, slug: str) -> dict[str, int]:
    from app.studies.service import get_study

    with db.session() as s:
        study = get_study(s, slug)
        rows = s.execute(
            select(Condition.code, func.count(Participant.id))
            .join(Participant, Participant.condition_id == Condition.id, isouter=True)
            .where(Condition.study_id == study.id)
            .group_by(Condition.code)
        ).all()
    return dict(rows)


def test_200_simultaneous_entries_on_two_servers_are_balanced_and_unique(servers, make_study, new_pid):
    db, bases = servers
    slug = make_study(db, slug="conc-balance", trials=5, pool=12, target=100)
    pids = [new_pid() for _ in range(ENTRANTS)]
    assert len(set(pids)) == ENTRANTS
    results = _enter([(bases[i % 2], slug, pid) for i, pid in enumerate(pids)])

    assert [r[0] for r in results] == [303] * ENTRANTS, Counter(r[0] for r in results)
    tokens = [r[1].rsplit("/", 1)[1] for r in results]
    assert all(r[1].startswith("/p/") for r in results)
    assert len(set(tokens)) == ENTRANTS  # every entrant has their own participant

    counts = _counts_by_condition(db, slug)
    assert sum(counts.values()) == ENTRANTS
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    study_id = _study_id(db, slug)
    with db.session() as s:
        rows = s.execute(
            select(Participant.prolific_pid, Participant.token, Participant.id).where(Participant.study_id == study_id)
        ).all()
        assert Counter(r[0] for r in rows) == Counter(pids)  # exactly one participant row per PID
        assert {r[0]: r[1] for r in rows} == dict(zip(pids, tokens, strict=True))
        trials = s.execute(
            select(Trial.participant_id, Trial.stimulus_id)
            .join(Participant, Participant.id == Trial.participant_id)
            .where(Participant.study_id == study_id)
        ).all()
    per_participant: dict[int, list[int]] = {}
    for pid_, stim in trials:
        per_participant.setdefault(pid_, []).append(stim)
    assert set(per_participant) == {r[2] for r in rows}
    for stims in per_participant.values():
        assert len(stims) == 5 and len(set(stims)) == 5  # distinct stimuli for everyone


def test_same_pid_ten_times_at_once_on_both_servers_is_one_participant(servers, make_study, new_pid):
    db, bases = servers
    slug = make_study(db, slug="conc-same-pid", trials=3, pool=6, target=50)
    pid = new_pid()
    results = _enter([(bases[i % 2], slug, pid) for i in range(10)])
    assert [r[0] for r in results] == [303] * 10
    assert len({r[1] for r in results}) == 1  # everyone was sent to the same participant's page
    assert sum(_counts_by_condition(db, slug).values()) == 1
    study_id = _study_id(db, slug)
    with db.session() as s:
        ids = s.scalars(select(Participant.id).where(Participant.study_id == study_id)).all()
        assert len(ids) == 1
        assert s.scalar(select(func.count()).select_from(Trial).where(Trial.participant_id == ids[0])) == 3


def test_no_over_fill_when_more_arrive_than_the_targets_allow(servers, make_study, new_pid):
    db, bases = servers
    target = 20  # 3 conditions x 20 = 60 places for 200 entrants
    slug = make_study(db, slug="conc-full", trials=3, pool=6, target=target)
    pids = [new_pid() for _ in range(ENTRANTS)]
    results = _enter([(bases[i % 2], slug, pid) for i, pid in enumerate(pids)])

    assigned = [r for r in results if r[0] == 303]
    turned_away = [r for r in results if r[0] != 303]
    assert len(assigned) == 3 * target
    assert len(turned_away) == ENTRANTS - 3 * target
    for status, _loc, body in turned_away:
        assert status == 200
        doc = HTMLParser(body)
        assert doc.css_first("h1").text() == "This study is not available"
        assert "all the participants it needs" in doc.css_first("p.message").text()
    assert _counts_by_condition(db, slug) == {"CB": target, "CAI": target, "CAP": target}
    study_id = _study_id(db, slug)
    with db.session() as s:
        stored = set(s.scalars(select(Participant.prolific_pid).where(Participant.study_id == study_id)))
    assert stored == {pid for pid, r in zip(pids, results, strict=True) if r[0] == 303}
