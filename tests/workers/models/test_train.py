"""Training and evaluation on small real subsets (CPU, a few seconds each)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from workers.models import load_model, read_checkpoint, sha256_file
from workers.models.evaluate import evaluate_file, evaluate_model, pgd_attack
from workers.models.train import TrainConfig, TrainError, augment_batch, cyclic_lr, pack, ramp, train

torch.set_num_threads(1)


def _cfg(data_dir: Path, **kw) -> TrainConfig:
    base = {
        "dataset": "mnist", "arch": "cw_mnist", "eps": 0.3, "method": "fgsm-rs", "epochs": 1, "batch_size": 50,
        "lr": 2e-3, "train_subset": 300, "holdout": 100, "device": "cpu", "data_dir": str(data_dir), "seed": 3,
        "eps_warmup": 0.0,
    }
    base.update(kw)
    return TrainConfig(**base)


def test_schedules() -> None:
    assert cyclic_lr(0.0, 1.0) == 0.0 and cyclic_lr(0.4, 1.0) == pytest.approx(1.0)
    assert cyclic_lr(0.7, 1.0) == pytest.approx(0.5) and cyclic_lr(1.0, 1.0) == 0.0
    assert ramp(0.1, 0.2) == pytest.approx(0.5) and ramp(0.5, 0.2) == 1.0 and ramp(0.0, 0.0) == 1.0


def test_augment_batch_shapes_and_content() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    out = augment_batch(x, gen)
    assert out.shape == x.shape
    # every output is a shifted (and maybe flipped) copy: its non-padded pixels come from the input
    assert set(out.flatten().tolist()) <= set(x.flatten().tolist()) | {0.0}


def test_pgd_attack_stays_in_ball() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x = torch.rand(16, 1, 28, 28)
    y = torch.randint(0, 10, (16,))
    adv = pgd_attack(model, x, y, eps=0.1, alpha=0.05, steps=5, generator=torch.Generator().manual_seed(1))
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    res = evaluate_model(model, x, y, eps=0.1, steps=5, alpha=0.05)
    assert res["robust_correct"] <= res["clean_correct"]


@pytest.mark.realdata
def test_one_epoch_smoke(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    card = train(_cfg(data_dir), out, progress=False)
    assert card["training"]["epochs_run"] == 1 and card["training"]["finished"]
    assert card["recipe"]["method"] == "fgsm-rs" and card["recipe"]["fgsm_alpha"] == pytest.approx(0.375)
    h = card["training"]["history"][0]
    assert math.isfinite(h["train_loss"]) and 0 <= h["holdout_clean"] <= 1
    model = load_model(out)
    assert model.arch == "cw_mnist" and model.card["recipe"]["eps"] == 0.3
    # a finished run cannot be overwritten by accident
    with pytest.raises(TrainError, match="exists"):
        train(_cfg(data_dir), out, progress=False)


@pytest.mark.realdata
def test_checkpoint_resume_is_exact(data_dir: Path, tmp_path: Path) -> None:
    cfg = {"epochs": 2, "method": "pgd", "pgd_steps": 2, "train_subset": 200}
    train(_cfg(data_dir, **cfg), tmp_path / "straight.pt", progress=False)
    partial = train(_cfg(data_dir, stop_after=1, **cfg), tmp_path / "resumed.pt", progress=False)
    assert not partial["training"]["finished"]
    state = read_checkpoint(tmp_path / "resumed.pt")["train_state"]
    assert state["epoch"] == 1 and not state["finished"] and "optimizer" in state
    with pytest.raises(TrainError, match="cannot resume"):
        train(_cfg(data_dir, **{**cfg, "eps": 0.2}), tmp_path / "resumed.pt", resume=True, progress=False)
    card = train(_cfg(data_dir, **cfg), tmp_path / "resumed.pt", resume=True, progress=False)
    assert card["training"]["finished"] and card["training"]["epochs_run"] == 2
    a = read_checkpoint(tmp_path / "straight.pt")
    b = read_checkpoint(tmp_path / "resumed.pt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ha = [{k: v for k, v in h.items() if "seconds" not in k} for h in a["card"]["training"]["history"]]
    hb = [{k: v for k, v in h.items() if "seconds" not in k} for h in b["card"]["training"]["history"]]
    assert ha == hb


@pytest.mark.realdata
def test_eval_reproducible_and_card(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    train(_cfg(data_dir, train_subset=200), out, progress=False)
    packed = pack(out, tmp_path / "packed.pt", half=True)
    r1 = evaluate_file(packed, "mnist", data_dir=data_dir, n=300, steps=5, seed=7, device="cpu", progress=False)
    r2 = evaluate_file(packed, "mnist", data_dir=data_dir, n=300, steps=5, seed=7, device="cpu", progress=False,
                       write=False)
    strip = ("eval_seconds", "card_path")
    assert {k: v for k, v in r1.items() if k not in strip} == {k: v for k, v in r2.items() if k not in strip}
    assert r1["attack"]["eps"] == 0.3 and r1["attack"]["alpha"] == pytest.approx(2.5 * 0.3 / 5)
    card = json.loads((tmp_path / "packed.json").read_text())
    assert card["sha256"] == sha256_file(packed) and card["weights_dtype"] == "float16"
    assert card["evaluation"]["clean_accuracy"] == r1["clean_accuracy"] and card["evaluation"]["n"] == 300
    assert card["recipe"]["seed"] == 3 and card["arch"] == "cw_mnist" and "date" in card["training"]
    assert "train_state" not in read_checkpoint(packed)
    assert packed.stat().st_size < out.stat().st_size


def test_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="unknown architecture"):
        train(TrainConfig(dataset="mnist", arch="nope", eps=0.3), tmp_path / "x.pt")
    with pytest.raises(TrainError, match="is for cifar10"):
        train(TrainConfig(dataset="mnist", arch="preact_resnet18_w32", eps=0.3), tmp_path / "x.pt")
    with pytest.raises(TrainError, match="out of range"):
        train(TrainConfig(dataset="cifar10", arch="preact_resnet18_w32", eps=0.3), tmp_path / "x.pt")
    with pytest.raises(TrainError, match="unknown dataset"):
        train(TrainConfig(dataset="svhn", arch="cw_mnist", eps=0.1), tmp_path / "x.pt")
    with pytest.raises(TrainError, match=".pt"):
        train(TrainConfig(dataset="mnist", arch="cw_mnist", eps=0.3), tmp_path / "x.bin")


@pytest.mark.realdata
def test_time_budget_plans_epochs_up_front(data_dir: Path, tmp_path: Path) -> None:
    card = train(_cfg(data_dir, epochs=50, time_budget=2.0, train_subset=200), tmp_path / "b.pt", progress=False)
    cal = card["training"]["calibration"]
    assert cal["planned_epochs"] == card["recipe"]["epochs_planned"] >= 1
    assert card["training"]["epochs_run"] <= cal["planned_epochs"] < 50
