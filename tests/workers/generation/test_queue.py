"""The job queue without torch: enqueue, claim, leases, attempts, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from app.errors import Conflict
from app.jobs.service import enqueue_generation
from app.models import Job
from app.studies.progress import study_progress
from app.studies.service import activate_study, create_study, get_study
from workers.generation import queue

GEN = """
[generation]
model = "tiny.pt"
seed = 7
images = 10
batch_size = 4
max_attempts = 2
"""


def _study(db, toml_for, conditions=("CB", "CAI")):  # type: ignore[no-untyped-def]
    with db.session() as s:
        study = create_study(s, toml_for(conditions=conditions, extra="") + GEN)
        return study.slug


def test_creating_a_generated_study_enqueues_blocks(db, toml_for):
    slug = _study(db, toml_for)
    with db.session() as s:
        jobs = s.scalars(select(Job).order_by(Job.id)).all()
        # one job per block of source images, covering every condition: ceil(10 / 4) blocks
        assert [(j.payload["block"], j.payload["start"], j.payload["size"]) for j in jobs] == [
            (0, 0, 4),
            (1, 4, 4),
            (2, 8, 2),
        ]
        assert all(j.payload["conditions"] == ["CB", "CAI"] and j.condition_id is None for j in jobs)
        assert all(j.payload["model"] == "tiny.pt" and j.payload["seed"] == 7 for j in jobs)
        assert (
            jobs[0].payload["attacks"]["CAI"]["name"] == "l0_search"
            and jobs[0].payload["attacks"]["CB"]["name"] == "benign"
        )
        prog = study_progress(s, get_study(s, slug))
        assert prog.pending == 10 and prog.target == 10 and prog.complete == 0
        assert not prog.can_activate and "generation is not finished" in prog.problems[0]
        with pytest.raises(Conflict):
            activate_study(s, get_study(s, slug))
        # enqueueing again while jobs are pending adds nothing
        assert enqueue_generation(s, get_study(s, slug)) == []


def test_imported_study_has_no_jobs_and_cannot_be_regenerated(db, toml_for):
    with db.session() as s:
        study = create_study(s, toml_for())
        assert s.scalar(select(Job)) is None
        with pytest.raises(Conflict, match="no \\[generation\\]"):
            enqueue_generation(s, study)


def test_claim_order_lease_expiry_and_attempts(db, toml_for):
    _study(db, toml_for, conditions=("CB",))
    with db.sessionmaker() as s:
        a = queue.claim(s, "A", lease_s=60)
        b = queue.claim(s, "B", lease_s=60)
        c = queue.claim(s, "C", lease_s=60)
        assert (a.id, b.id, c.id) == (1, 2, 3)
        assert queue.claim(s, "D", lease_s=60) is None  # all leased
        assert queue.heartbeat(s, a.id, "A", 60) and not queue.heartbeat(s, a.id, "B", 60)
        # A's lease runs out: D takes the job over; A can neither renew nor finish it
        s.execute(
            update(Job).where(Job.id == a.id).values(lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        s.commit()
        d = queue.claim(s, "D", lease_s=60)
        assert d.id == a.id and d.attempts == 2 and d.locked_by == "D"
        assert not queue.heartbeat(s, a.id, "A", 60)
        assert not queue.finish(s, a.id, "A", {})
        s.rollback()
        assert queue.finish(s, a.id, "D", {"complete": [1]})
        s.commit()
        s.expire_all()
        assert s.get(Job, a.id).status == "done"
        # B dies on its last allowed attempt (max_attempts = 2): the job ends failed, not retried forever
        s.execute(
            update(Job)
            .where(Job.id == b.id)
            .values(attempts=2, lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        s.commit()
        assert queue.claim(s, "E", lease_s=60) is None
        job_b = s.get(Job, b.id)
        s.refresh(job_b)
        assert job_b.status == "failed" and "stopped renewing its lease" in job_b.last_error


def test_failed_attempts_go_back_to_pending_then_fail(db, toml_for):
    _study(db, toml_for, conditions=("CB",))
    with db.sessionmaker() as s:
        j = queue.claim(s, "A", 60)
        assert queue.fail(s, j.id, "A", "boom 1") == "pending"
        j2 = queue.claim(s, "A", 60)
        assert j2.id == j.id and j2.attempts == 2
        assert queue.fail(s, j.id, "B", "not mine") is None
        assert queue.fail(s, j.id, "A", "boom 2") == "failed"
        job = s.get(Job, j.id)
        s.refresh(job)
        assert job.status == "failed" and job.last_error == "boom 2" and job.finished_at is not None
