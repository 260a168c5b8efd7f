"""The worker loop: claim a job, keep its lease alive, generate the stimuli, write them with the job's
completion in one transaction. Crash-safe and idempotent: at most one stimulus per (condition, image).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import Database
from app.models import Condition, Job, MlModel, Stimulus, Study
from app.stimuli.service import add_stimulus
from app.studies.progress import activate_if_ready
from workers.generation import queue

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is available")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {requested!r} (use auto, cpu or cuda)")
    return requested


class LeaseLost(Exception):
    """Another worker owns the job now (our lease expired); our result must not be written."""


@dataclass
class _Caches:
    models: dict[tuple[str, str], Any] = field(default_factory=dict)
    datasets: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    candidates: dict[tuple[str, str, int, int], list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _cai_l0(session: Session, study_id: int) -> list[int] | None:
    """L0 (pixels) of the study's CAI stimuli so far: the automated L0 CAP search follows this distribution."""
    rows = session.scalars(
        select(Stimulus.metrics).join(Condition).where(Condition.study_id == study_id, Condition.code == "CAI")
    )
    values = [int(m["l0"]) for m in rows if isinstance(m, dict) and m.get("l0") is not None]
    return values or None


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
                "job %s: %s %s batch %s (attempt %s/%s)",
                job.id,
                job.payload.get("norm"),
                job.payload.get("condition"),
                job.payload.get("batch"),
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
            payload = dict(job.payload)
            cond = session.get(Condition, job.condition_id)
            assert cond is not None
            existing = set(session.scalars(select(Stimulus.image_index).where(Stimulus.condition_id == cond.id)))
            cai_l0 = _cai_l0(session, cond.study_id) if payload["condition"] == "CAP" else None
        t0 = time.perf_counter()
        images, labels = self._dataset(payload["dataset"])
        model = self._model(payload["model"])
        candidates = self._candidates(payload, model, images, labels)
        start = payload["batch"] * payload["batch_size"]
        batch = candidates[start : start + payload["batch_size"]]
        todo = [i for i in batch if i not in existing]
        # Only the automated L0 CAP search needs the independent judge model.
        needs_judge = payload["norm"] == "l0" and payload["condition"] == "CAP" and payload.get("second_model")
        second = self._model(payload["second_model"]) if needs_judge else None
        from workers.generation.make import generate

        results = generate(
            payload["dataset"],
            payload["norm"],
            payload["condition"],
            images[todo],
            labels[todo],
            todo,
            model,
            second_model=second,
            # Every batch draws its own random numbers, reproducibly; the seed used is stored per stimulus.
            seed=int(payload["seed"]) * 100003 + int(payload["batch"]),
            device=self.device,
            data_dir=self.data_dir,
            cai_l0=cai_l0,
        )
        if lost.is_set():
            raise LeaseLost()
        summary: dict[str, Any] = {
            "done": [],
            "failed": [],
            "skipped": [i for i in batch if i in existing],
            "device": self.device,
            "worker": self.worker_id,
        }
        with self.db.sessionmaker() as session:
            if not queue.finish(session, job_id, self.worker_id, summary):  # takes the job row lock first
                session.rollback()
                raise LeaseLost()
            study = session.get(Study, cond.study_id)
            cond = session.get(Condition, cond.id)
            assert study is not None and cond is not None
            self._register_model(session, model, payload["model"], payload["dataset"])
            have = set(session.scalars(select(Stimulus.image_index).where(Stimulus.condition_id == cond.id)))
            for r in results:
                idx = int(r["image_index"])
                if not r["success"]:
                    reason = r["metrics"].get("note") or "attack failed"
                    summary["failed"].append({"image_index": idx, "reason": reason})
                    continue
                if idx in have:
                    summary["skipped"].append(idx)
                    continue
                add_stimulus(
                    session,
                    study,
                    cond,
                    image_index=idx,
                    label=int(r["label"]),
                    pixels=r["image"],
                    extra=r["metrics"],
                    source="worker",
                )
                have.add(idx)
                summary["done"].append(idx)
            summary["seconds"] = round(time.perf_counter() - t0, 3)
            queue.finish_result(session, job_id, summary)
            session.commit()
        with self.db.sessionmaker() as session:
            study = session.get(Study, cond.study_id)
            if study is not None and activate_if_ready(session, study):
                session.commit()
                log.info("study %s: every pool is complete; activated", study.slug)

    # --- cached inputs ----------------------------------------------------------------------

    def _dataset(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        with self.caches.lock:
            if name not in self.caches.datasets:
                from workers.data.datasets import load_cifar10, load_mnist

                loader = {"mnist": load_mnist, "cifar10": load_cifar10}[name]
                self.caches.datasets[name] = loader(self.data_dir, "test")
            return self.caches.datasets[name]

    def _model(self, spec: str) -> Any:
        with self.caches.lock:
            key = (spec, self.device)
            if key not in self.caches.models:
                from workers.models import load_model

                self.caches.models[key] = load_model(spec, device=self.device, data_dir=self.data_dir)
            return self.caches.models[key]

    def _candidates(self, payload: dict[str, Any], model: Any, images: np.ndarray, labels: np.ndarray) -> list[int]:
        """The study's source images: test images the model classifies correctly, in the seed's random order.

        The same list for every condition of a study, so CB, CAI and CAP start from the same images.
        """
        key = (payload["dataset"], model.model_id, int(payload["seed"]), int(payload["images"]))
        with self.caches.lock:
            if key not in self.caches.candidates:
                import torch

                from workers.generation.make import choose_benign, source_limit

                idx = choose_benign(
                    model,
                    images,
                    labels.astype(np.int64),
                    int(payload["images"]),
                    int(payload["seed"]),
                    torch.device(self.device),
                    limit=source_limit(payload["norm"], len(labels)),
                )
                self.caches.candidates[key] = [int(i) for i in idx]
            return self.caches.candidates[key]

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
