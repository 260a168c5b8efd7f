"""The generation job queue as the web app, the CLI and the worker's writer see it. No torch here.

A generated study holds ``[generation] images`` complete source images: each has a stimulus in every
condition. Jobs cover blocks of the study's candidate order (``app.contracts.block_bounds``); the first blocks
cover exactly that many candidates, and whenever a finished block leaves the study short (a candidate failed in
some condition), the next top-up block is enqueued, in the same transaction. Because a block is only enqueued
when the study would be short even if every outstanding block fully succeeded, the blocks that run are the
same however many workers share the queue; trimming to the first ``images`` complete candidates by position
then gives the same study as ``lpstudy stimuli make`` with the same config.

Claiming, leases and running live in workers/generation/queue.py and workers/generation/runner.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.contracts import BlockResult, BlockSummary, JobPayload, block_payload
from app.design import IMAGE_SHAPES
from app.errors import Conflict
from app.models import Job, JobStatus, SourceFailure, SourceFailureStatus, Stimulus, Study, Trial
from app.stimuli.images import conform, decode_png
from app.stimuli.service import add_generated_stimulus

UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING)


def generation_config(study: Study) -> dict[str, Any] | None:
    return study.config.get("generation")


def _require_generation(study: Study) -> dict[str, Any]:
    gen = generation_config(study)
    if gen is None:
        raise Conflict(
            f"study '{study.slug}' has no [generation] table in its config: its stimuli are imported, not generated"
        )
    if not isinstance(gen.get("attacks"), dict) or not gen.get("images"):
        raise Conflict(f"study '{study.slug}' was created by an older lpstudy; create it again from its config")
    return gen


def payload_of(job: Job) -> JobPayload:
    return JobPayload.model_validate(job.payload)


def _jobs(session: Session, study: Study) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.study_id == study.id).order_by(Job.id)))


def complete_images(session: Session, study: Study) -> set[int]:
    """Source images with a stimulus in every condition's pool (excluded stimuli are not in the pool)."""
    n_conds = len(study.conditions)
    rows = session.execute(
        select(Stimulus.image_index)
        .where(Stimulus.study_id == study.id, Stimulus.excluded_at.is_(None))
        .group_by(Stimulus.image_index)
        .having(func.count(func.distinct(Stimulus.condition_id)) == n_conds)
    )
    return {int(r[0]) for r in rows}


def _images_with_stimuli(session: Session, study: Study) -> set[int]:
    """Source images with any stimulus, excluded ones too (a rerun block must not bring an image back)."""
    return set(session.scalars(select(Stimulus.image_index).where(Stimulus.study_id == study.id).distinct()))


def _exhausted(jobs: list[Job]) -> bool:
    return any(j.status == JobStatus.DONE and (j.result or {}).get("exhausted") for j in jobs)


def top_up(session: Session, study: Study) -> list[Job]:
    """Enqueue the next blocks while the study would be short even if every outstanding block fully succeeded.

    Not while a job has failed for good (its block is unaccounted for; ``enqueue_generation`` retries it) and
    not once the candidates ran out."""
    gen = _require_generation(study)
    jobs = _jobs(session, study)
    if any(j.status == JobStatus.FAILED for j in jobs) or _exhausted(jobs):
        return []
    have = len(complete_images(session, study))
    outstanding = sum(payload_of(j).size for j in jobs if j.status in UNFINISHED)
    next_block = max((payload_of(j).block for j in jobs), default=-1) + 1
    new: list[Job] = []
    while have + outstanding < int(gen["images"]):
        payload = block_payload(study.dataset, study.norm, [c.code for c in study.conditions], gen, next_block)
        new.append(
            Job(
                study_id=study.id,
                condition_id=None,
                kind="generate",
                payload=payload.model_dump(mode="json"),
                status=JobStatus.PENDING,
                attempts=0,
                max_attempts=int(gen["max_attempts"]),
            )
        )
        outstanding += payload.size
        next_block += 1
    session.add_all(new)
    session.flush()
    return new


def enqueue_generation(session: Session, study: Study, conditions: list[str] | None = None) -> list[Job]:
    """Start (or resume) a study's generation: retry jobs that failed for good, then top up. Idempotent.

    ``conditions`` is refused: a source image enters the study only with a stimulus in every condition, so
    conditions are never generated alone."""
    _require_generation(study)
    if conditions:
        raise Conflict(
            "conditions are generated together (every source image gets a stimulus in each condition); "
            "regenerate without --condition"
        )
    jobs = _jobs(session, study)
    retried = [j for j in jobs if j.status == JobStatus.FAILED]
    for j in retried:
        j.status = JobStatus.PENDING
        j.attempts = 0
        j.finished_at = None
    # Jobs of an older lpstudy (one condition each) cannot run any more.
    stale = [j.id for j in jobs if j.condition_id is not None]
    if stale:
        session.execute(delete(Job).where(Job.id.in_(stale)))
    session.flush()
    return retried + top_up(session, study)


def has_jobs(session: Session, study: Study) -> bool:
    return session.scalar(select(Job.id).where(Job.study_id == study.id).limit(1)) is not None


def unfinished_jobs(session: Session, study: Study) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Job).where(Job.study_id == study.id, Job.status.in_(UNFINISHED))
        )
        or 0
    )


# --- the writer: the worker's result into the study ------------------------------------------------------


def _lock_study(session: Session, study: Study) -> None:
    """Serialise writers of one study (PostgreSQL; SQLite has one writer at a time anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Study.id).where(Study.id == study.id).with_for_update())


def record_block(
    session: Session, study: Study, job: Job, result: BlockResult | dict[str, Any], *, worker: str | None = None
) -> BlockSummary:
    """Validate a worker's block result and write it: complete triples as stimuli, the rest as source failures.

    Runs in the transaction that marks the job done (the caller checked the lease and commits). Idempotent: an
    image already in the study is skipped. Then trims the study to its first ``images`` complete source images
    by position (a late lower block can push out a higher one) and tops up if it is still short."""
    res = BlockResult.model_validate(result)
    payload = payload_of(job)
    if (res.block, res.start, res.size) != (payload.block, payload.start, payload.size):
        raise ValueError(f"job {job.id}: the result is for block {res.block}, the job is block {payload.block}")
    codes = {c.code: c for c in study.conditions}
    if sorted(res.conditions) != sorted(codes):
        raise ValueError(f"job {job.id}: the result's conditions {res.conditions} are not the study's {sorted(codes)}")
    shape = IMAGE_SHAPES[study.dataset]
    for o in res.outcomes:  # check every image before writing any
        for s in o.stimuli:
            conform(
                decode_png(s.png, what=f"image {o.image_index} {s.condition}"), shape, what=f"image {o.image_index}"
            )
    _lock_study(session, study)
    have = _images_with_stimuli(session, study)
    failed_before = set(session.scalars(select(SourceFailure.image_index).where(SourceFailure.study_id == study.id)))
    summary = BlockSummary(device=res.device, worker=worker, seconds=res.seconds)
    for o in res.outcomes:
        if o.image_index in have or o.image_index in failed_before:
            summary.skipped.append(o.image_index)
            continue
        if o.complete:
            for s in o.stimuli:
                add_generated_stimulus(session, study, codes[s.condition], s, position=o.position)
            summary.complete.append(o.image_index)
        else:
            session.add(
                SourceFailure(
                    study_id=study.id,
                    job_id=job.id,
                    image_index=o.image_index,
                    position=o.position,
                    label=o.label,
                    status=SourceFailureStatus.FAILED,
                    reasons={f.condition: f.reason for f in o.failures},
                    metrics={f.condition: f.metrics for f in o.failures},
                )
            )
            summary.failed.append(
                {"image_index": o.image_index, "reasons": {f.condition: f.reason for f in o.failures}}
            )
    session.flush()
    summary.surplus = trim(session, study, job)
    exhausted = len(res.outcomes) < res.size
    job.result = {**summary.model_dump(mode="json"), "exhausted": exhausted}
    session.flush()
    if not exhausted:
        top_up(session, study)
    return summary


def trim(session: Session, study: Study, job: Job | None = None) -> list[int]:
    """Keep the first ``images`` complete source images by position; the rest become surplus. Returns those."""
    gen = _require_generation(study)
    target = int(gen["images"])
    complete = complete_images(session, study)
    if len(complete) <= target:
        return []
    first = study.conditions[0]
    rows = session.execute(
        select(Stimulus.image_index, Stimulus.metrics, Stimulus.label).where(
            Stimulus.condition_id == first.id, Stimulus.image_index.in_(complete), Stimulus.excluded_at.is_(None)
        )
    ).all()
    by_pos = sorted(rows, key=lambda r: (int((r[1] or {}).get("source_position") or 0), int(r[0])))
    # A stimulus a trial already shows (a test participant of the draft study) stays.
    shown = set(
        session.scalars(
            select(Stimulus.image_index)
            .join(Trial, Trial.stimulus_id == Stimulus.id)
            .where(Stimulus.study_id == study.id)
        )
    )
    out = []
    for image_index, metrics, label in by_pos[target:]:
        if image_index in shown:
            continue
        session.execute(
            delete(Stimulus).where(
                Stimulus.study_id == study.id, Stimulus.image_index == image_index, Stimulus.excluded_at.is_(None)
            )
        )
        session.add(
            SourceFailure(
                study_id=study.id,
                job_id=job.id if job is not None else None,
                image_index=int(image_index),
                position=int((metrics or {}).get("source_position") or 0),
                label=int(label),
                status=SourceFailureStatus.SURPLUS,
                reasons={"study": f"surplus: the study already holds its {target} complete source images"},
                metrics=None,
            )
        )
        out.append(int(image_index))
    session.flush()
    return out
