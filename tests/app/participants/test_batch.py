"""First entries claimed together on PostgreSQL (app/participants/batch.py): a batch gives each entry what the
single path would (lowest free slots, balance within one, targets, one participant per PID, resume, the study's
refusals, the screen check) and falls back to the single path when a PID entered elsewhere at the same moment."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.errors import NotFound, StudyUnavailable
from app.models import AssignmentSlot, Condition, Participant, Trial
from app.participants import assignment, batch
from app.participants.viewing import ScreenCheckNeeded
from app.prolific import EntryParams
from app.studies.service import close_study, get_study
from app.web import HotPool
from tests.conftest import BACKENDS

# Entries are batched on PostgreSQL only (SQLite has one writer); LPSTUDY_TEST_BACKENDS=sqlite skips these.
pytestmark = [
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
    pytest.mark.skipif("postgresql" not in BACKENDS, reason="PostgreSQL is not among LPSTUDY_TEST_BACKENDS"),
]


@pytest.fixture
def pg(db):  # type: ignore[no-untyped-def]
    return db


def _params(pid: str) -> EntryParams:
    return EntryParams(pid, "a" * 24, pid[::-1])


def _entries(pids: list[str], screen: int | str | None = None) -> list[tuple[EntryParams, int | str | None]]:
    return [(_params(p), screen) for p in pids]


def _participants(db) -> list[Participant]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        rows = s.scalars(select(Participant).order_by(Participant.id)).all()
        s.expunge_all()
        return list(rows)


def _counts(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return dict(
            s.execute(
                select(Condition.code, func.count(Participant.id))
                .join(Participant, Participant.condition_id == Condition.id, isouter=True)
                .group_by(Condition.code)
            ).all()
        )


def test_a_batch_takes_the_lowest_free_slots_balanced_with_their_trials(pg, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(pg, trials=4, pool=12, target=20)
    with pg.session() as s:
        lowest = s.execute(
            select(AssignmentSlot.id).order_by(AssignmentSlot.rank, AssignmentSlot.tiebreak).limit(30)
        ).scalars()
        lowest_ids = set(lowest)
    pids = [new_pid() for _ in range(30)]
    out = batch.enter_many(pg.engine, slug, _entries(pids))
    assert all(isinstance(t, str) for t in out) and len(set(out)) == 30
    people = _participants(pg)
    assert {p.prolific_pid: p.token for p in people} == dict(zip(pids, out, strict=True))
    assert all(p.prolific_study_id == "a" * 24 and p.prolific_session_id == p.prolific_pid[::-1] for p in people)
    assert all(p.status == "active" and p.stage == "consent" and p.position == 0 for p in people)
    assert _counts(pg) == {"CB": 10, "CAI": 10, "CAP": 10}
    with pg.session() as s:
        held = dict(s.execute(select(AssignmentSlot.id, AssignmentSlot.participant_id).where(
            AssignmentSlot.participant_id.is_not(None))).all())  # fmt: skip
        assert set(held) == lowest_ids, "the slots that 30 single entries would have taken"
        assert sorted(held.values()) == sorted(p.id for p in people)
        # each participant: their trials, 4 distinct stimuli of their own condition; every image equally often
        per_image: Counter[int] = Counter()
        for p in people:
            trials = s.execute(
                select(Trial.position, Trial.stimulus_id, Trial.kind).where(Trial.participant_id == p.id)
            ).all()
            assert sorted(t.position for t in trials) == [0, 1, 2, 3]
            stimuli = [t.stimulus_id for t in trials]
            assert len(set(stimuli)) == 4
            conds = s.scalars(
                select(func.distinct(Condition.id)).join(Participant).where(Participant.id == p.id)
            ).all()
            assert conds == [p.condition_id]
            per_image.update(stimuli)
        assert set(per_image.values()) <= {3, 4}  # 10 participants x 4 images over a pool of 12: 40/12, within one


def test_slots_freed_by_dropouts_are_taken_before_higher_free_ones(pg, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(pg, trials=2, pool=4, target=10)
    first = [assignment.enter(pg.engine, slug, _params(new_pid())) for _ in range(6)]  # ranks 0 and 1
    with pg.session() as s:
        rank0 = s.execute(
            select(AssignmentSlot.id, AssignmentSlot.participant_id).where(AssignmentSlot.rank == 0)
        ).all()
        assert len(rank0) == 3 and all(pid is not None for _, pid in rank0)
        for _, pid in rank0:
            s.get(Participant, pid).status = "no_consent"  # declined: their rank-0 slots are free again
    out = batch.enter_many(pg.engine, slug, _entries([new_pid() for _ in range(3)]))
    assert all(isinstance(t, str) and t not in first for t in out)
    with pg.session() as s:
        new_ids = set(s.scalars(select(Participant.id).where(Participant.token.in_(out))))
        taken = set(s.scalars(select(AssignmentSlot.id).where(AssignmentSlot.participant_id.in_(new_ids))))
    assert taken == {slot for slot, _ in rank0}, "the rank-0 slots, as three single entries would take"


def test_resume_duplicates_and_new_entries_in_one_batch(pg, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(pg, trials=2, pool=4, target=10)
    old = new_pid()
    old_token = assignment.enter(pg.engine, slug, _params(old))
    a, b = new_pid(), new_pid()
    out = batch.enter_many(pg.engine, slug, _entries([a, old, b, a]))
    assert out[1] == old_token
    assert out[0] == out[3] and isinstance(out[0], str) and out[0] != out[2]
    assert sorted(p.prolific_pid for p in _participants(pg)) == sorted([old, a, b])


def test_a_missing_or_closed_study_refuses_each_entry(pg, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    out = batch.enter_many(pg.engine, "no-such-study", _entries([new_pid(), new_pid()]))
    assert all(isinstance(e, NotFound) for e in out)
    slug = make_study(pg, trials=2, pool=4, target=10)
    old = new_pid()
    old_token = assignment.enter(pg.engine, slug, _params(old))
    with pg.session() as s:
        close_study(s, get_study(s, slug))
    out = batch.enter_many(pg.engine, slug, _entries([new_pid(), old, new_pid()]))
    assert out[1] == old_token, "a returning participant still resumes"
    assert all(isinstance(e, StudyUnavailable) and e.reason == "closed" for e in (out[0], out[2]))
    assert len(_participants(pg)) == 1


def test_a_batch_larger_than_what_is_left_fills_the_targets_and_the_rest_is_full(pg, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(pg, trials=2, pool=4, target=3)
    out = batch.enter_many(pg.engine, slug, _entries([new_pid() for _ in range(11)]))
    assert sum(isinstance(t, str) for t in out) == 9
    assert [e.reason for e in out if isinstance(e, StudyUnavailable)] == ["full", "full"]
    assert _counts(pg) == {"CB": 3, "CAI": 3, "CAP": 3}


def test_a_batch_beyond_the_first_block_of_slots_makes_the_next(pg, make_study, new_pid, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(assignment.slots, "SLOT_BLOCK", 2)
    slug = make_study(pg, trials=2, pool=4, target=10)  # activated with ranks 0-1 only: 6 slots
    out = batch.enter_many(pg.engine, slug, _entries([new_pid() for _ in range(14)]))
    assert all(isinstance(t, str) for t in out)
    counts = _counts(pg)
    assert sum(counts.values()) == 14 and max(counts.values()) - min(counts.values()) <= 1


def test_the_screen_check_is_each_entrys_own(pg, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(pg, trials=2, pool=4, target=10, extra="min_viewport_width = 800")
    entries = [(_params(new_pid()), None), (_params(new_pid()), 1200), (_params(new_pid()), 500)]
    out = batch.enter_many(pg.engine, slug, entries)
    assert isinstance(out[0], ScreenCheckNeeded)
    assert isinstance(out[1], str)
    assert isinstance(out[2], StudyUnavailable) and out[2].reason == "incompatible-device"
    assert len(_participants(pg)) == 1


@pytest.mark.parametrize("min_width", [None, 800])
def test_a_pid_entering_elsewhere_meanwhile_sends_the_batch_the_single_way(pg, make_study, new_pid, monkeypatch, min_width) -> None:  # type: ignore[no-untyped-def]  # noqa: E501
    """With a minimum window width, the single path gets each entry's measured width (checked already)."""
    slug = make_study(pg, trials=2, pool=4, target=10, extra=f"min_viewport_width = {min_width}" if min_width else "")
    pids = [new_pid() for _ in range(5)]
    real = assignment.claim_pg
    elsewhere: list[str] = []

    def racing(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not elsewhere:  # after the batch read the PIDs, another process enters pids[2] (its claim: not raced)
            elsewhere.append("")
            elsewhere[0] = assignment.enter(pg.engine, slug, _params(pids[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(assignment, "claim_pg", racing)
    out = batch.enter_many(pg.engine, slug, _entries(pids, 1200))
    assert out[2] == elsewhere[0], "the participant made elsewhere, not a second one"
    people = _participants(pg)
    assert sorted(p.prolific_pid for p in people) == sorted(pids)
    assert {p.prolific_pid: p.token for p in people} == dict(zip(pids, out, strict=True))
    counts = _counts(pg)
    assert max(counts.values()) - min(counts.values()) <= 1
    with pg.session() as s:  # the rolled-back batch left no slot pointing at a missing participant
        held = s.scalars(select(AssignmentSlot.participant_id).where(AssignmentSlot.participant_id.is_not(None)))
        assert sorted(held) == sorted(p.id for p in people)


def test_the_batcher_claims_waiting_entries_together(pg, make_study, new_pid, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(pg, trials=2, pool=4, target=40)
    sizes: list[int] = []
    real = batch.enter_many

    def counted(engine, slug_, entries):  # type: ignore[no-untyped-def]
        sizes.append(len(entries))
        return real(engine, slug_, entries)

    monkeypatch.setattr(batch, "enter_many", counted)
    batcher = batch.EntryBatcher(HotPool("test-batch", 2), concurrency=2, max_batch=16)
    pids = [new_pid() for _ in range(60)] + ["f" * 24]

    async def burst() -> list[str | BaseException]:
        tasks = [batcher.enter(pg.engine, slug, _params(p), None) for p in pids]
        tasks.append(batcher.enter(pg.engine, "no-such-study", _params(new_pid()), None))
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(burst())
    assert all(isinstance(t, str) for t in out[:-1]) and len(set(out[:-1])) == 61
    assert isinstance(out[-1], NotFound), "another study's entry is claimed on its own, with its own answer"
    assert sum(sizes) == 62 and max(sizes) == 16 and len(sizes) < 62, sizes
    assert _counts(pg) == {"CB": 21, "CAI": 20, "CAP": 20} or sorted(_counts(pg).values()) == [20, 20, 21]
