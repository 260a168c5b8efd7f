"""Assignment by slots (app/participants/assignment.py), on both backends: least-filled first within +-1, never over
the target, one participant per PID, timed-out and dropped-out participants free their slot, returners resume in
their own condition, test participants never count, and images are given equally often."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update

from app.errors import StudyUnavailable
from app.models import AssignmentSlot, Condition, Participant, Trial
from app.participants import assignment, blocks
from app.prolific import EntryParams
from app.studies.service import get_study


def _enter(db, slug: str, pid: str, seed: int | None = None) -> str:  # type: ignore[no-untyped-def]
    rng = random.Random(seed) if seed is not None else None
    return assignment.enter(db.engine, slug, EntryParams(pid, "a" * 24, "b" * 24), rng)


def _counts(db, slug: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        study = get_study(s, slug)
        rows = s.execute(
            select(Condition.code, func.count(Participant.id))
            .join(
                Participant, (Participant.condition_id == Condition.id) & Participant.is_test.is_(False), isouter=True
            )
            .where(Condition.study_id == study.id)
            .group_by(Condition.code)
        ).all()
    return dict(rows)


def _condition_of(db, token: str) -> str:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.scalar(select(Condition.code).join(Participant).where(Participant.token == token))


def test_every_prefix_of_arrivals_is_balanced_and_the_targets_hold(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4, target=7)
    for n in range(1, 22):
        _enter(db, slug, new_pid(), seed=n)
        counts = _counts(db, slug)
        assert sum(counts.values()) == n
        assert max(counts.values()) - min(counts.values()) <= 1, (n, counts)
    assert _counts(db, slug) == {"CB": 7, "CAI": 7, "CAP": 7}
    with pytest.raises(StudyUnavailable, match="all the participants it needs") as e:
        _enter(db, slug, new_pid())
    assert e.value.reason == "full"
    assert sum(_counts(db, slug).values()) == 21


def test_unequal_targets_fill_each_to_its_own(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4, target=10)
    with db.session() as s:
        study = get_study(s, slug)
        study.condition("CB").target = 2
        study.condition("CAP").target = 5
    for _ in range(17):
        _enter(db, slug, new_pid())
    assert _counts(db, slug) == {"CB": 2, "CAI": 10, "CAP": 5}
    with pytest.raises(StudyUnavailable):
        _enter(db, slug, new_pid())


def test_lowering_a_target_after_slots_exist_is_respected(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4, target=50)
    for _ in range(3):
        _enter(db, slug, new_pid())
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AssignmentSlot)) >= 150  # made ahead, a block at a time
        for c in get_study(s, slug).conditions:
            c.target = 2
    for _ in range(3):
        _enter(db, slug, new_pid())
    assert _counts(db, slug) == {"CB": 2, "CAI": 2, "CAP": 2}
    with pytest.raises(StudyUnavailable):
        _enter(db, slug, new_pid())


def test_raising_a_target_makes_more_slots(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4, conditions=("CB",), target=1)
    _enter(db, slug, new_pid())
    with pytest.raises(StudyUnavailable):
        _enter(db, slug, new_pid())
    with db.session() as s:
        get_study(s, slug).condition("CB").target = 300
    for _ in range(140):  # past the first block of slots
        _enter(db, slug, new_pid())
    assert _counts(db, slug) == {"CB": 141}


def test_the_same_pid_is_one_participant(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4)
    pid = new_pid()
    assert _enter(db, slug, pid) == _enter(db, slug, pid)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 1
        assert (
            s.scalar(select(func.count()).select_from(AssignmentSlot).where(AssignmentSlot.participant_id.isnot(None)))
            == 1
        )


def test_the_same_pid_at_once_from_many_threads_is_one_participant(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4)
    pid = new_pid()
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: _enter(db, slug, pid), range(8)))
    assert len(set(tokens)) == 1
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 1
        held = s.scalars(select(AssignmentSlot.participant_id).where(AssignmentSlot.participant_id.isnot(None))).all()
        assert len(held) == 1  # the losers' slots went back


def test_a_timed_out_participant_frees_the_slot_and_resumes_in_their_condition(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4, conditions=("CB", "CAI"), target=1)
    first, second = new_pid(), new_pid()
    t1 = _enter(db, slug, first)
    _enter(db, slug, second)
    gone = _condition_of(db, t1)
    with pytest.raises(StudyUnavailable):
        _enter(db, slug, new_pid())
    with db.session() as s:  # the first participant has been away for longer than the study's timeout (30 min)
        s.execute(
            update(Participant)
            .where(Participant.token == t1)
            .values(last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31))
        )
    t3 = _enter(db, slug, new_pid())
    assert _condition_of(db, t3) == gone  # the freed place, in the condition that lost its participant
    assert _enter(db, slug, first) == t1  # the returner resumes, in their own condition
    assert _condition_of(db, t1) == gone
    with db.session() as s:
        holder = s.scalar(
            select(Participant.token)
            .join(AssignmentSlot, AssignmentSlot.participant_id == Participant.id)
            .join(Condition, Condition.id == AssignmentSlot.condition_id)
            .where(Condition.code == gone)
        )
    assert holder == t3


@pytest.mark.parametrize("status", ["no_consent", "failed_attention"])
def test_dropouts_free_their_slot_but_completed_participants_keep_it(db, make_study, new_pid, status) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4, conditions=("CB",), target=2)
    a, b = _enter(db, slug, new_pid()), _enter(db, slug, new_pid())
    with db.session() as s:
        s.execute(update(Participant).where(Participant.token == a).values(status="completed", stage="done"))
        s.execute(update(Participant).where(Participant.token == b).values(status=status, stage="done"))
    _enter(db, slug, new_pid())  # takes b's place
    with pytest.raises(StudyUnavailable):
        _enter(db, slug, new_pid())


def _slot_of(db, token: str) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        row = s.execute(
            select(Condition.code, AssignmentSlot.rank)
            .join(AssignmentSlot, AssignmentSlot.condition_id == Condition.id)
            .join(Participant, Participant.id == AssignmentSlot.participant_id)
            .where(Participant.token == token)
        ).one()
    return row[0], row[1]


def test_a_freed_slot_low_down_is_taken_before_fresh_ones_of_every_kind(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    """Freed slots and never-held ones are found by different indexes; the entry still takes the lowest
    (rank, tiebreak) of all of them, so a dropout's place is refilled first and the conditions stay balanced."""
    slug = make_study(db, trials=2, pool=40, conditions=("CB", "CAI", "CAP"), target=50)
    tokens = [_enter(db, slug, new_pid(), seed=i) for i in range(9)]  # ranks 0, 1, 2 of every condition
    by_slot = {_slot_of(db, t): t for t in tokens}
    assert sorted(by_slot) == sorted((c, r) for c in ("CB", "CAI", "CAP") for r in range(3))
    with db.session() as s:
        s.execute(update(Participant).where(Participant.token == by_slot[("CAI", 2)]).values(status="no_consent"))
        s.execute(
            update(Participant)
            .where(Participant.token == by_slot[("CB", 1)])
            .values(last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31))
        )
        s.execute(update(Participant).where(Participant.token == by_slot[("CAP", 0)]).values(status="failed_attention"))
    assert _slot_of(db, _enter(db, slug, new_pid())) == ("CAP", 0)
    assert _slot_of(db, _enter(db, slug, new_pid())) == ("CB", 1)
    assert _slot_of(db, _enter(db, slug, new_pid())) == ("CAI", 2)
    assert _slot_of(db, _enter(db, slug, new_pid()))[1] == 3  # then the next fresh rank
    with db.session() as s:  # the places filled: 3, 3 and 4, the dropouts' three taken over
        held = s.execute(
            select(Condition.code, func.count(AssignmentSlot.id))
            .join(AssignmentSlot, AssignmentSlot.condition_id == Condition.id)
            .where(AssignmentSlot.participant_id.isnot(None))
            .group_by(Condition.code)
        ).all()
    assert sorted(n for _code, n in held) == [3, 3, 4]


def test_test_participants_never_count_toward_targets(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4, target=2)
    with db.session() as s:  # previews and bots (participants.is_test) in every condition, active and completed
        study = get_study(s, slug)
        for i, cond in enumerate(study.conditions * 3):
            s.add(
                Participant(
                    study_id=study.id,
                    condition_id=cond.id,
                    token=f"test-token-{i:02d}",
                    prolific_pid=new_pid(),
                    status="completed" if i % 2 else "active",
                    stage="done" if i % 2 else "consent",
                    is_test=True,
                )
            )
    for _ in range(6):
        _enter(db, slug, new_pid())
    assert _counts(db, slug) == {"CB": 2, "CAI": 2, "CAP": 2}  # the real participants alone fill the targets
    with pytest.raises(StudyUnavailable):
        _enter(db, slug, new_pid())


def test_every_image_is_given_equally_often_and_distinct_within_a_participant(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=5, pool=12, conditions=("CB",), target=100)
    for _ in range(17):
        _enter(db, slug, new_pid())
    with db.session() as s:
        rows = s.execute(select(Trial.participant_id, Trial.stimulus_id)).all()
        pool = s.scalars(select(func.count()).select_from(Trial.__table__.metadata.tables["stimuli"])).one()
    per: dict[int, list[int]] = {}
    for p, st in rows:
        per.setdefault(p, []).append(st)
    assert all(len(v) == 5 and len(set(v)) == 5 for v in per.values())
    shown = Counter(st for _p, st in rows)
    assert len(shown) == pool == 12  # 17 x 5 = 85 showings over 12 images: 7 or 8 each
    assert max(shown.values()) - min(shown.values()) <= 1, shown
    orders = {tuple(v) for v in per.values()}
    assert len(orders) > 1  # and not in one fixed order for everybody


def test_a_pool_smaller_than_the_trials_is_not_ready(db, make_study, new_pid) -> None:  # type: ignore[no-untyped-def]
    slug = make_study(db, trials=2, pool=4, conditions=("CB",))
    from app.models import Stimulus

    with db.session() as s:
        for st in s.scalars(select(Stimulus)).all()[1:]:
            s.delete(st)
    blocks.pools = blocks.PoolCache()  # the pool was not read yet in this process: no stale cache
    with pytest.raises(StudyUnavailable) as e:
        _enter(db, slug, new_pid())
    assert e.value.reason == "not-ready"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Participant)) == 0
        assert (
            s.scalar(select(func.count()).select_from(AssignmentSlot).where(AssignmentSlot.participant_id.isnot(None)))
            == 0
        )
