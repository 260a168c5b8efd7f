"""The app-side writer of generation results, without torch, on SQLite and PostgreSQL: complete triples only,
failed source images replaced by top-up blocks, reruns harmless, surplus trimmed, the contract enforced."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from app.contracts import BlockResult, JobPayload
from app.errors import Conflict
from app.jobs.service import enqueue_generation, record_block
from app.models import Job, JobStatus, SourceFailure, Stimulus
from app.stimuli.images import encode_png
from app.stimuli.service import export_stimuli
from app.studies.progress import study_progress
from app.studies.service import create_study, get_study

PNG = encode_png(np.zeros((28, 28), np.uint8)).png


def gen(images: int, batch: int) -> str:
    return f'\n[generation]\nmodel = "tiny.pt"\nseed = 1\nimages = {images}\nbatch_size = {batch}\n'


def _study(db, toml_for, images: int, batch: int, slug: str = "writer") -> str:  # type: ignore[no-untyped-def]
    with db.session() as s:
        create_study(s, toml_for(slug=slug, conditions=("CB", "CAI", "CAP"), trials=1) + gen(images, batch))
    return slug


def _result(payload: JobPayload, fail: dict[int, str] | None = None, n: int | None = None) -> dict:  # type: ignore[type-arg]
    """A block result: image_index = 100 + position; positions in ``fail`` failed (in CAI) with that reason."""
    fail = fail or {}
    outcomes = []
    for pos in range(payload.start, payload.start + (payload.size if n is None else n)):
        common = {"image_index": 100 + pos, "position": pos, "label": pos % 10}
        if pos in fail:
            outcomes.append({**common, "failures": [{"condition": "CAI", "reason": fail[pos], "metrics": {"l0": 99}}]})
            continue
        stimuli = [
            {
                "condition": c,
                "image_index": 100 + pos,
                "label": pos % 10,
                "png": PNG,
                "attack": payload.attacks[c].name,
                "params": payload.attacks[c].params,
                "seed": 5,
                "model_id": "tiny@1",
                "metrics": {"l0": 0 if c == "CB" else 7, "success": True},
            }
            for c in payload.conditions
        ]
        outcomes.append({**common, "stimuli": stimuli})
    return {
        "block": payload.block,
        "start": payload.start,
        "size": payload.size,
        "conditions": payload.conditions,
        "outcomes": outcomes,
        "model_id": "tiny@1",
        "device": "cpu",
        "seconds": 0.1,
    }


def _finish(s, job: Job, result: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    job.status = JobStatus.DONE
    record_block(s, get_study(s, "writer"), job, result, worker="test")


def _jobs(s) -> list[Job]:  # type: ignore[no-untyped-def]
    return list(s.scalars(select(Job).order_by(Job.id)))


def _pools(s) -> dict[str, set[int]]:  # type: ignore[no-untyped-def]
    study = get_study(s, "writer")
    code = {c.id: c.code for c in study.conditions}
    out: dict[str, set[int]] = {c: set() for c in code.values()}
    for cid, idx in s.execute(select(Stimulus.condition_id, Stimulus.image_index)):
        out[code[cid]].add(idx)
    return out


def test_a_failed_source_image_is_replaced_for_every_condition(db, toml_for, tmp_path: Path):
    _study(db, toml_for, images=5, batch=2)
    with db.session() as s:
        jobs = _jobs(s)
        assert [(j.payload["start"], j.payload["size"]) for j in jobs] == [(0, 2), (2, 2), (4, 1)]
        _finish(s, jobs[0], _result(JobPayload.model_validate(jobs[0].payload), fail={1: "JSMA found nothing"}))
        jobs = _jobs(s)
        # the failure left the study one short: a top-up block for the next candidate, in the same transaction
        assert [(j.payload["block"], j.payload["start"], j.payload["size"]) for j in jobs[3:]] == [(3, 5, 1)]
        for j in jobs[1:]:
            _finish(s, j, _result(JobPayload.model_validate(j.payload)))
    with db.session() as s:
        pools = _pools(s)
        assert pools["CB"] == pools["CAI"] == pools["CAP"] == {100, 102, 103, 104, 105}  # 101 in no condition
        prog = study_progress(s, get_study(s, "writer"))
        assert (prog.complete, prog.target, prog.failed, prog.pending) == (5, 5, 1, 0)
        assert prog.conditions[1].reasons == {"JSMA found nothing": 1} and prog.conditions[0].failed == 0
        assert prog.can_activate
        f = s.scalar(select(SourceFailure))
        assert (f.image_index, f.position, f.status, f.reasons) == (101, 1, "failed", {"CAI": "JSMA found nothing"})
        n = export_stimuli(s, get_study(s, "writer"), tmp_path / "out")
    assert n == 15
    with (tmp_path / "out" / "failures.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["image_index"], r["condition"], r["reason"], r["status"]) for r in rows] == [
        ("101", "CAI", "JSMA found nothing", "failed")
    ]


def test_a_block_written_twice_changes_nothing(db, toml_for):
    """A worker whose lease expired and one that took the job over both finish: one stimulus per image."""
    _study(db, toml_for, images=2, batch=2)
    with db.session() as s:
        job = _jobs(s)[0]
        res = _result(JobPayload.model_validate(job.payload), fail={0: "nope"})
        _finish(s, job, res)
        _finish(s, job, res)
        assert s.scalar(select(func.count()).select_from(Stimulus)) == 3
        assert s.scalar(select(func.count()).select_from(SourceFailure)) == 1
        assert sorted(job.result["skipped"]) == [100, 101]


def test_surplus_past_the_target_is_trimmed_by_position(db, toml_for):
    _study(db, toml_for, images=5, batch=10)  # one block of 5, then top-ups of 2
    with db.session() as s:
        job = _jobs(s)[0]
        _finish(s, job, _result(JobPayload.model_validate(job.payload), fail={3: "nope"}))
        top = _jobs(s)[1]
        assert (top.payload["start"], top.payload["size"]) == (5, 2)
        _finish(s, top, _result(JobPayload.model_validate(top.payload)))
        assert _pools(s)["CB"] == {100, 101, 102, 104, 105}  # 106 came too: the study keeps the first five
        prog = study_progress(s, get_study(s, "writer"))
        assert (prog.complete, prog.failed, prog.surplus) == (5, 1, 1)
        assert top.result["surplus"] == [106] and len(_jobs(s)) == 2


def test_candidates_running_out_stop_the_top_ups(db, toml_for):
    _study(db, toml_for, images=3, batch=3)
    with db.session() as s:
        job = _jobs(s)[0]
        _finish(s, job, _result(JobPayload.model_validate(job.payload), fail={0: "nope"}, n=2))
        assert len(_jobs(s)) == 1 and job.result["exhausted"]
        prog = study_progress(s, get_study(s, "writer"))
        assert prog.exhausted and prog.complete == 1


def test_the_writer_enforces_the_contract(db, toml_for):
    _study(db, toml_for, images=2, batch=2)
    with db.session() as s:
        job = _jobs(s)[0]
        payload = JobPayload.model_validate(job.payload)
        res = _result(payload)
        missing = {**res, "outcomes": [dict(res["outcomes"][0], stimuli=res["outcomes"][0]["stimuli"][:2])]}
        with pytest.raises(ValidationError, match="every condition"):
            record_block(s, get_study(s, "writer"), job, missing)
        with pytest.raises(ValueError, match="block"):
            record_block(s, get_study(s, "writer"), job, {**res, "block": 1, "start": 2})
        bad_png = _result(payload)
        bad_png["outcomes"][0]["stimuli"][0]["png"] = encode_png(np.zeros((32, 32, 3), np.uint8)).png
        with pytest.raises(Exception, match="32x32"):
            record_block(s, get_study(s, "writer"), job, bad_png)
        extra = _result(payload)
        extra["outcomes"][0]["stimuli"][0]["metrics"]["nested"] = {"a": 1}
        with pytest.raises(ValidationError, match="flat"):
            BlockResult.model_validate(extra)
        with pytest.raises(ValidationError):
            JobPayload.model_validate(
                {**job.payload, "attacks": {**job.payload["attacks"], "CAI": {"name": "l2_fixed"}}}
            )
        with pytest.raises(ValidationError):
            JobPayload.model_validate({**job.payload, "dataset": "cifar10"})  # cifar10 + l0
        assert s.scalar(select(func.count()).select_from(Stimulus)) == 0


def test_a_job_that_failed_for_good_is_retried_by_enqueue(db, toml_for):
    _study(db, toml_for, images=2, batch=1)
    with db.session() as s:
        a, b = _jobs(s)
        a.status = JobStatus.FAILED
        b.status = JobStatus.DONE
        record_block(s, get_study(s, "writer"), b, _result(JobPayload.model_validate(b.payload), fail={1: "no"}))
        assert len(_jobs(s)) == 2  # no top-up while a block is unaccounted for
        again = enqueue_generation(s, get_study(s, "writer"))
        assert [j.id for j in again][:1] == [a.id] and a.status == JobStatus.PENDING
        assert len(_jobs(s)) == 3  # and now the failed image is topped up
        with pytest.raises(Conflict, match="together"):
            enqueue_generation(s, get_study(s, "writer"), ["CAI"])
