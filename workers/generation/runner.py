"""The worker loop: claim a job, keep its lease alive, make its block (``workers.generation.block``), and hand
the typed result to the app-side writer (``app.jobs.service.record_block``) in the transaction that marks the
job done. Crash-safe and idempotent: exactly one stimulus per (condition, image), complete triples only.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.contracts import JobPayload
from app.db import Database
from app.design import DEVICES
from app.jobs.service import record_block
from app.models import Job, MlModel, Study
from app.studies.progress import activate_if_ready
from workers.generation import queue

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested not in DEVICES:
        raise ValueError(f"unknown device {requested!r} (use {', '.join(DEVICES)})")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is available")
    return requested


class LeaseLost(Exception):
    """Another worker owns the job now (our lease expired); our result must not be written."""


@dataclass
class _Caches:
    models: dict[tuple[str, str], Any] = field(default_factory=dict)
    datasets: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    inputs: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker:
    def __init__(
        self,
        db: Database,
        *,
        device: str = "auto",
        data_dir: Path | None = None,
        lease_s: float = 120.0,
        poll_s: float = 2.0,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.device = pick_device(device)
        self.data_dir = Path(data_dir or db.settings.data_dir)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.caches = _Caches()
        self.stop = threading.Event()

    # --- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False, concurrency: int = 1, progress: Any = None) -> int:
        """Process jobs until stopped (or, with once, until the queue is empty). Returns jobs done."""
        done = [0]

        def loop() -> None:
            while not self.stop.is_set():
                ran = self.run_one()
                if ran is None:
                    if once:
                        return
                    self.stop.wait(self.poll_s)
                    continue
                done[0] += 1
                if progress is not None:
                    progress(ran)

        threads = [threading.Thread(target=loop, name=f"worker-{i}", daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            self.stop.set()
            for t in threads:
                t.join()
        return done[0]

    def run_one(self) -> Job | None:
        """Claim and run one job. Returns the job (done or failed), or None if the queue was empty."""
        with self.db.sessionmaker() as session:
            job = queue.claim(session, self.worker_id, self.lease_s)
            if job is None:
                return None
            job_id = job.id
            log.info(
                "job %s: %s block %s [%s, +%s) (attempt %s/%s)",
                job.id,
                job.payload.get("norm"),
                job.payload.get("block"),
                job.payload.get("start"),
                job.payload.get("size"),
                job.attempts,
                job.max_attempts,
            )
        lost = threading.Event()
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, lost, beat_stop), daemon=True)
        beat.start()
        try:
            self._run(job_id, lost)
        except LeaseLost:
            log.warning("job %s: lease lost; result discarded", job_id)
        except Exception as exc:  # the job fails; the worker goes on
            err = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
            with self.db.sessionmaker() as session:
                status = queue.fail(session, job_id, self.worker_id, err)
            log.error("job %s failed (%s): %s", job_id, status, exc)
        finally:
            beat_stop.set()
            beat.join()
        with self.db.sessionmaker() as session:
            return session.get(Job, job_id)

    def _heartbeat(self, job_id: int, lost: threading.Event, stop: threading.Event) -> None:
        interval = max(0.2, self.lease_s / 3)
        while not stop.wait(interval):
            try:
                with self.db.sessionmaker() as session:
                    if not queue.heartbeat(session, job_id, self.worker_id, self.lease_s):
                        lost.set()
                        return
            except Exception:  # a DB hiccup: try again next beat; the lease has slack
                log.exception("job %s: heartbeat failed", job_id)

    # --- one job ----------------------------------------------------------------------------

    def _run(self, job_id: int, lost: threading.Event) -> None:
        with self.db.sessionmaker() as session:
            job = session.get(Job, job_id)
            assert job is not None
            study_id = job.study_id
            # Validated here as the worker's side of the contract; a malformed job fails with the reason.
            payload = JobPayload.model_validate(job.payload)
        inputs = self._inputs(payload)
        from workers.generation.block import make_block

        result = make_block(payload, inputs)
        if lost.is_set():
            raise LeaseLost()
        with self.db.sessionmaker() as session:
            if not queue.finish(session, job_id, self.worker_id, {}):  # takes the job row lock first
                session.rollback()
                raise LeaseLost()
            study = session.get(Study, study_id)
            job = session.get(Job, job_id)
            assert study is not None and job is not None
            for spec, model in [(payload.model, inputs.model), *zip(payload.judges, inputs.judges, strict=True)]:
                self._register_model(session, model, spec, payload.dataset)
            summary = record_block(session, study, job, result, worker=self.worker_id)
            session.commit()
        log.info(
            "job %s: %s complete, %s failed, %s skipped in %.1f s",
            job_id,
            len(summary.complete),
            len(summary.failed),
            len(summary.skipped),
            result.seconds,
        )
        with self.db.sessionmaker() as session:
            study = session.get(Study, study_id)
            if study is not None and activate_if_ready(session, study):
                session.commit()
                log.info("study %s: every pool is complete; activated", study.slug)

    # --- cached inputs ----------------------------------------------------------------------

    def _dataset(self, name: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        with self.caches.lock:
            if (name, split) not in self.caches.datasets:
                from workers.data.datasets import load_dataset

                self.caches.datasets[(name, split)] = load_dataset(name, self.data_dir, split)  # type: ignore[arg-type]
            return self.caches.datasets[(name, split)]

    def _model(self, spec: str) -> Any:
        with self.caches.lock:
            key = (spec, self.device)
            if key not in self.caches.models:
                from workers.models import load_model

                self.caches.models[key] = load_model(spec, device=self.device, data_dir=self.data_dir)
            return self.caches.models[key]

    def _inputs(self, payload: JobPayload) -> Any:
        """Models, data and the candidate order for a payload: loaded once per (dataset, model, judges)."""
        from workers.generation.block import BlockInputs

        key = (payload.dataset, payload.model, tuple(payload.judges))
        model = self._model(payload.model)
        judges = [self._model(j) for j in payload.judges]
        images, labels = self._dataset(payload.dataset)
        with self.caches.lock:
            if key not in self.caches.inputs:
                self.caches.inputs[key] = BlockInputs(
                    model=model,
                    test_images=images,
                    test_labels=labels.astype(np.int64),
                    judges=judges,
                    device=self.device,
                    data_dir=self.data_dir,
                )
            return self.caches.inputs[key]

    def _register_model(self, session: Session, model: Any, spec: str, dataset: str) -> None:
        values = {
            "model_id": model.model_id,
            "name": getattr(model, "name", None) or spec,
            "dataset": dataset,
            "spec": spec,
            "card": getattr(model, "card", None),
        }
        ins = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(ins(MlModel).values(**values).on_conflict_do_nothing(index_elements=["model_id"]))
