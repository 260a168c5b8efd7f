"""The worker and `lpstudy stimuli make` make the same study from the same config and seed: the same source
images in every condition, failed ones replaced the same way, byte-identical PNGs. A tiny CPU model."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select
from torch import nn
from typer.testing import CliRunner

from app.models import Job, SourceFailure, Stimulus
from app.studies.progress import study_progress
from app.studies.service import create_study, get_study
from workers.generation.runner import Worker


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(784, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 784, generator=g) * 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


GEN = """
[generation]
model = "{model}"
judges = []
seed = 4
images = 6
batch_size = 3

[generation.attacks.CAI]
name = "linf_pgd_ssim"
params = {{ steps = 3, alpha = 0.004, ssim_step = 0.05 }}

[generation.attacks.CAP]
name = "linf_pgd_ssim"
params = {{ steps = 4, alpha = 0.01 }}
"""


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    model = Linear().eval()
    path = tmp_path / "linear.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        labels = model(torch.from_numpy(images).float().div(255).unsqueeze(1)).argmax(1).numpy()
    labels[::7] = (labels[::7] + 1) % 10  # some source images the model gets wrong: the benign check fails
    np.savez(data / "mnist_test.npz", images=images, labels=labels.astype(np.uint8))
    return data, path


def test_worker_and_stimuli_make_give_the_same_pngs(db, toml_for, tmp_path: Path):
    torch.set_num_threads(1)
    data, model = _setup(tmp_path)
    toml = toml_for(slug="same-pngs", trials=2).replace('norm = "l0"', 'norm = "linf"') + GEN.format(model=model)
    config = tmp_path / "study.toml"
    config.write_text(toml)
    with db.session() as s:
        create_study(s, toml, filename=str(config))
    Worker(db, device="cpu", data_dir=data, lease_s=60, poll_s=0.05).run(once=True)

    from app.cli import cli

    out = tmp_path / "set"
    r = CliRunner().invoke(
        cli, ["stimuli", "make", "--config", str(config), "--out", str(out), "--data-dir", str(data), "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    with (out / "manifest.csv").open() as fh:
        made = {(row["condition"], int(row["image_index"])): row for row in csv.DictReader(fh)}
    with (out / "failures.csv").open() as fh:
        made_failed = {int(row["image_index"]) for row in csv.DictReader(fh)}

    with db.session() as s:
        study = get_study(s, "same-pngs")
        code = {c.id: c.code for c in study.conditions}
        stored = {
            (code[c], i): (png, seed, attack)
            for c, i, png, seed, attack in s.execute(
                select(Stimulus.condition_id, Stimulus.image_index, Stimulus.png, Stimulus.seed, Stimulus.attack)
            )
        }
        failed = set(s.scalars(select(SourceFailure.image_index)))
        prog = study_progress(s, study)
        jobs = s.scalars(select(Job)).all()
    # complete triples: 6 source images, each in CB, CAI and CAP
    assert prog.complete == 6 and prog.pending == 0 and all(j.status == "done" for j in jobs)
    assert {i for _, i in stored} == {i for _, i in made} and len(stored) == len(made) == 18
    # some candidates failed (a misclassified source image, an attack too weak) and were replaced: top-ups ran
    assert failed and len(jobs) > 2
    assert failed == made_failed
    for key, (png, seed, attack) in stored.items():
        row = made[key]
        assert hashlib.sha256((out / row["path"]).read_bytes()).hexdigest() == hashlib.sha256(png).hexdigest(), key
        assert int(row["seed"]) == seed and row["attack"] == attack
