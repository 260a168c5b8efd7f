"""The worker as real processes: two workers share a queue, a kill -9 mid-job loses and duplicates nothing,
a failing job ends failed with its error. CB jobs on a tiny TorchScript model keep these fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select
from torch import nn

from app.contracts import block_seed
from app.models import Job, SourceFailure, Stimulus
from app.studies.progress import study_progress
from app.studies.service import create_study, get_study

REPO = Path(__file__).resolve().parents[3]


class Tiny(nn.Module):
    """A fixed random linear classifier; `work` adds real compute per forward (for the kill test)."""

    def __init__(self, work: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(784, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 784, generator=g) * 0.05)
        self.work = work
        self.register_buffer("m", torch.randn(256, 256, generator=g) / 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.m
        for _ in range(self.work):
            h = torch.tanh(h @ self.m)
        return self.fc(x.flatten(1)) + 0.0 * h.sum()


@pytest.fixture
def tiny_setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A data dir with a synthetic MNIST-shaped test set labelled by the tiny model, and the model files."""

    def build(work: int = 0) -> tuple[Path, Path]:
        data = tmp_path / f"data{work}"
        data.mkdir()
        model = Tiny(work).eval()
        path = tmp_path / f"tiny{work}.pt"
        torch.jit.save(torch.jit.script(model), str(path))
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(400, 28, 28), dtype=np.uint8)
        with torch.no_grad():
            labels = Tiny(0)(torch.from_numpy(images).float().div(255).unsqueeze(1)).argmax(1).numpy()
        np.savez(data / "mnist_test.npz", images=images, labels=labels.astype(np.uint8))
        return data, path

    return build


def _create(db, toml_for, model: Path, images: int, batch: int, attempts: int = 3, slug: str = "gen-study"):  # type: ignore[no-untyped-def]
    gen = (
        f'\n[generation]\nmodel = "{model}"\nseed = 3\nimages = {images}\nbatch_size = {batch}\n'
        f"max_attempts = {attempts}\n"
    )
    with db.session() as s:
        create_study(s, toml_for(slug=slug, conditions=("CB",), trials=5) + gen)
    return slug


def _worker(settings, data: Path, *extra: str) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    env = dict(
        os.environ,
        LPSTUDY_DATABASE_URL=settings.database_url,
        LPSTUDY_DATA_DIR=str(data),
        LPSTUDY_LOG_LEVEL="INFO",
        OMP_NUM_THREADS="1",
    )
    cmd = [sys.executable, "-m", "app.cli", "worker", "--device", "cpu", "--poll-seconds", "0.2", *extra]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _wait(proc: subprocess.Popen, timeout: float = 120) -> str:  # type: ignore[type-arg]
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_two_workers_share_the_queue(db, settings, toml_for, tiny_setup):
    data, model = tiny_setup()
    slug = _create(db, toml_for, model, images=30, batch=2)
    procs = [_worker(settings, data, "--once") for _ in range(2)]
    outs = [_wait(p) for p in procs]
    with db.session() as s:
        jobs = s.scalars(select(Job)).all()
        # 15 blocks of 2; a near-tie source image the model calls differently in another batch shape would be
        # replaced by a top-up block (of 1)
        n_failed = s.scalar(select(func.count()).select_from(SourceFailure))
        assert len(jobs) == 15 + n_failed
        assert all(j.status == "done" and j.attempts == 1 for j in jobs), [
            (j.id, j.status, j.attempts, j.last_error) for j in jobs
        ][:2]
        done = [i for j in jobs for i in j.result["complete"]]
        assert len(done) == len(set(done)) == 30  # no job done twice, no image twice
        n = s.scalar(select(func.count()).select_from(Stimulus))
        assert n == 30
        stim = s.scalars(select(Stimulus)).first()
        assert stim.source == "worker" and stim.model_ref.startswith("tiny0@")
        assert stim.seed in {block_seed(3, k, "CB") for k in range(len(jobs))}
        assert stim.metrics["model_pred"] == stim.label
        workers = {j.result["worker"] for j in jobs}
        prog = study_progress(s, get_study(s, slug))
        assert prog.conditions[0].done == 30 and prog.pending == 0 and prog.complete == 30 and prog.can_activate
    assert len(workers) >= 1, outs


@pytest.mark.slow
def test_killed_worker_job_is_redone_after_lease_without_duplicates(db, settings, toml_for, tiny_setup):
    data, model = tiny_setup(work=400)
    _create(db, toml_for, model, images=8, batch=4)
    victim = _worker(settings, data, "--lease-seconds", "2")
    deadline = time.time() + 90
    job_id = None
    while time.time() < deadline and job_id is None:
        with db.session() as s:
            job_id = s.scalar(select(Job.id).where(Job.status == "running"))
        time.sleep(0.05)
    assert job_id is not None, "the worker never claimed a job"
    os.killpg(victim.pid, signal.SIGKILL)  # a real kill -9, mid-job
    victim.wait(10)
    with db.session() as s:
        job = s.get(Job, job_id)
        assert job.status == "running" and s.scalar(select(func.count()).select_from(Stimulus)) == 0
    time.sleep(2.5)  # the lease runs out
    _wait(_worker(settings, data, "--once", "--lease-seconds", "5"), timeout=180)
    with db.session() as s:
        jobs = s.scalars(select(Job).order_by(Job.id)).all()
        assert all(j.status == "done" for j in jobs)
        assert s.get(Job, job_id).attempts == 2
        idx = s.scalars(select(Stimulus.image_index)).all()
        assert len(idx) == len(set(idx)) == 8


@pytest.mark.slow
def test_failing_job_ends_failed_with_its_error(db, settings, toml_for, tiny_setup, tmp_path):
    data, _ = tiny_setup()
    slug = _create(db, toml_for, tmp_path / "missing-model.pt", images=4, batch=4, attempts=2)
    out = _wait(_worker(settings, data, "--once"))
    with db.session() as s:
        job = s.scalar(select(Job))
        assert job.status == "failed" and job.attempts == 2
        assert "ModelLoadError" in job.last_error and "missing-model.pt" in job.last_error
    from typer.testing import CliRunner

    from app.cli import cli

    res = CliRunner().invoke(cli, ["study", "status", slug, "--json", "--database-url", settings.database_url])
    assert res.exit_code == 0, res.output
    prog = json.loads(res.output)
    assert prog["jobs_failed"] == 1 and "ModelLoadError" in prog["errors"][0] and not prog["can_activate"]
    assert "failed" in out
