"""Stimulus-set generation: generate() per batch, make_stimuli() folders, the CLI, device selection."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workers.generation.generate as generate_mod
from app.attack_specs import get_spec
from workers.attacks.base import AttackImpl, AttackResult
from workers.generation.make import MANIFEST_HEAD, METRIC_COLUMNS, generate, make_stimuli, resolve_device
from workers.measures.budgets import budget_ok


class Tiny(nn.Module):
    def __init__(self, channels: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(channels, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 16, 10)
        self.model_id = f"tiny{channels}-{seed}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.adaptive_avg_pool2d(torch.relu(self.conv(x - 0.3)), 4)
        return self.fc(h.flatten(1)) * 8


def _mnist_like(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, 18, 2)
        imgs[i, r : r + 8, c : c + 4] = 255
        imgs[i, r + 2 : r + 6, c + 4 : c + 8] = rng.integers(60, 256)
    return imgs


def _cifar_like(n: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear", align_corners=False)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _labels(model: nn.Module, imgs: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(imgs).float() / 255
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    with torch.no_grad():
        return model(x).argmax(1).numpy()


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda").type == "cuda"
    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError):
        resolve_device("tpu")


@pytest.mark.parametrize("condition", ["CB", "CAI", "CAP"])
def test_generate_l2_rows(condition: str) -> None:
    torch.set_num_threads(1)
    model = Tiny(3)
    imgs = _cifar_like(3, 0)
    labels = _labels(model, imgs)
    rows = generate(
        "cifar10",
        "l2",
        condition,
        imgs,
        labels,
        [10, 11, 12],
        model,
        seed=1,
        device="cpu",
        attack_params={"steps": 6, "wang_steps": 10} if condition != "CB" else None,
    )
    assert [r["image_index"] for r in rows] == [10, 11, 12]
    for r in rows:
        assert r["condition"] == condition and r["image"].dtype == np.uint8 and r["image"].shape == (32, 32, 3)
        m = r["metrics"]
        assert set(m) == set(METRIC_COLUMNS)
        assert m["model_id"] == "tiny3-0" and m["seed"] == 1
        if condition == "CB":
            assert m["l0"] == 0 and m["psnr"] is None and r["success"] and m["attack"] == "benign"
        else:
            assert m["attack"] == "l2_fixed" and m["ssim_variant"] == "reflect"
            assert json.loads(m["params"])["steps"] == 6
            if r["success"]:
                assert 5.99 <= m["l2"] <= 6.01 and m["model_pred"] != r["label"] and m["budget_ok"]
                assert m["ssim_opt"] is not None and m["psnr"] > 0 and -1 <= m["uqi"] <= 1


def test_generate_linf_and_seed_reproducibility() -> None:
    torch.set_num_threads(1)
    model = Tiny(3, seed=2)
    imgs = _cifar_like(2, 3)
    labels = _labels(model, imgs)
    kw = {"attack_params": {"steps": 5}}
    a = generate("cifar10", "linf", "CAI", imgs, labels, [0, 1], model, seed=5, device="cpu", **kw)
    b = generate("cifar10", "linf", "CAI", imgs, labels, [0, 1], model, seed=5, device="cpu", **kw)
    for ra, rb in zip(a, b, strict=True):
        assert np.array_equal(ra["image"], rb["image"])
        assert ra["metrics"]["linf"] <= 0.1


def test_generate_judges_the_stored_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """An attack that claims success with an image over budget is recorded as failed."""

    def cheat(model, x, y, *, condition, generator=None, **_):  # type: ignore[no-untyped-def]
        adv = (x + 0.5).clamp(0, 1)
        return AttackResult(
            adv_u8=(adv * 255).round().to(torch.uint8),
            success=torch.ones(x.shape[0], dtype=torch.bool),
            target=torch.full((x.shape[0],), -1),
            iterations=torch.zeros(x.shape[0], dtype=torch.long),
        )

    monkeypatch.setattr(generate_mod, "attack_for", lambda norm, c: AttackImpl(get_spec("linf_pgd_ssim"), cheat))
    model = Tiny(3)
    imgs = _cifar_like(2, 0)
    rows = generate("cifar10", "linf", "CAI", imgs, _labels(model, imgs), [0, 1], model, seed=0, device="cpu")
    assert not any(r["success"] for r in rows)
    assert all(r["metrics"]["note"] == "budget broken after rounding" for r in rows)


def test_generate_rejects_bad_input() -> None:
    model = Tiny(1)
    imgs = _mnist_like(2, 0)
    with pytest.raises(ValueError):
        generate("cifar10", "l0", "CAI", imgs, [0, 1], [0, 1], model, 0, "cpu")
    with pytest.raises(ValueError):
        generate("mnist", "l0", "XX", imgs, [0, 1], [0, 1], model, 0, "cpu")
    with pytest.raises(ValueError):
        generate("mnist", "l0", "CAI", imgs.astype(np.float32), [0, 1], [0, 1], model, 0, "cpu")
    with pytest.raises(ValueError, match="needs judge models"):
        generate("mnist", "l0", "CAP", imgs, [0, 1], [0, 1], model, 0, "cpu", train_images=imgs, train_labels=[0, 1])
    with pytest.raises(ValueError, match="unknown attack"):
        generate("mnist", "l0", "CAI", imgs, [0, 1], [0, 1], model, 0, "cpu", attack="fgsm")
    with pytest.raises(ValueError, match="does not make CAP"):
        generate("mnist", "l0", "CAP", imgs, [0, 1], [0, 1], model, 0, "cpu", attack="jsma")
    with pytest.raises(ValueError, match="bogus"):
        generate("mnist", "l0", "CAI", imgs, [0, 1], [0, 1], model, 0, "cpu", attack_params={"bogus": 1})


def test_make_stimuli_l0_folder(tmp_path: Path) -> None:
    """Complete triples: a source image whose CAP fails is replaced by the next candidate in every condition."""
    torch.set_num_threads(1)
    model, judge = Tiny(1, 1), Tiny(1, 2)
    test_x = _mnist_like(40, 0)
    test_y = _labels(model, test_x)
    train_x = _mnist_like(300, 1)
    train_y = _labels(model, train_x)
    summary = make_stimuli(
        "mnist",
        "l0",
        model,
        6,
        tmp_path / "set",
        device="cpu",
        seed=3,
        second_model=judge,
        attacks={"CAP": "l0_cap"},  # the older CAP copies training digits: a small set is enough here
        test_images=test_x,
        test_labels=test_y,
        train_images=train_x,
        train_labels=train_y,
        batch_size=4,
        progress=False,
    )
    out = tmp_path / "set"
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (out / "failures.csv").open() as fh:
        failed = list(csv.DictReader(fh))
    header = list(csv.reader((out / "manifest.csv").open()))[0]
    assert tuple(header[:4]) == MANIFEST_HEAD and tuple(header[4:]) == METRIC_COLUMNS
    # complete triples only: the same 6 source images in every condition
    by_cond = {c: {int(r["image_index"]) for r in rows if r["condition"] == c} for c in ("CB", "CAI", "CAP")}
    assert len(by_cond["CB"]) == 6 and by_cond["CB"] == by_cond["CAI"] == by_cond["CAP"]
    assert summary["n"] == 6 and summary["conditions"]["CB"]["succeeded"] == 6
    assert all(r["success"] == "True" for r in rows)
    assert summary["attempted"] == 6 + summary["failed"] + summary["surplus"]
    assert summary["failed"] == 2 and summary["failure_reasons"] == {
        "CAP": {"no training digit within the L0 budget fooled both models": 2}
    }
    assert {int(f["image_index"]) for f in failed}.isdisjoint(by_cond["CB"])
    assert all(f["reason"] and f["status"] in ("failed", "surplus") for f in failed)
    benign = {int(r["image_index"]): np.asarray(Image_open(out / r["path"])) for r in rows if r["condition"] == "CB"}
    for r in rows:
        img = np.asarray(Image_open(out / r["path"]))
        assert img.shape == (28, 28) and img.dtype == np.uint8
        assert int(r["label"]) == int(test_y[int(r["image_index"])])
        assert budget_ok("l0", benign[int(r["image_index"])], img)
        if r["condition"] != "CB":
            x = torch.from_numpy(np.array(img)).float().div(255)[None, None]
            assert int(model(x).argmax(1)) != int(r["label"])
            assert r["attack"] in ("l0_search", "l0_cap") and r["model_id"] == "tiny1-1"
    assert (out / "summary.json").is_file()
    with pytest.raises(FileExistsError):
        make_stimuli(
            "mnist",
            "l0",
            model,
            2,
            out,
            device="cpu",
            second_model=judge,
            test_images=test_x,
            test_labels=test_y,
            train_images=train_x,
            train_labels=train_y,
        )


def Image_open(path: Path):  # type: ignore[no-untyped-def]  # noqa: N802
    from PIL import Image

    return Image.open(path)


def test_cli_bad_arguments(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from workers.generation.cli import make

    app = typer.Typer()
    app.command()(make)
    runner = CliRunner()
    r = runner.invoke(app, ["--dataset", "cifar10", "--norm", "l0", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "MNIST" in r.output
    r = runner.invoke(app, ["--dataset", "mnist", "--norm", "l3", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "unknown norm" in r.output
    r = runner.invoke(app, ["--dataset", "mnist", "--norm", "l0", "--out", str(tmp_path / "o"), "--device", "gpu"])
    assert r.exit_code != 0 and "unknown device" in r.output
    r = runner.invoke(
        app, ["--dataset", "mnist", "--norm", "l0", "--out", str(tmp_path / "o"), "--model", "nope/missing.pt"]
    )
    assert r.exit_code != 0 and "not found" in r.output


def test_cli_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, workers.generation.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.realdata
def test_cli_real_mnist_l0(data_dir: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from workers.generation.cli import make

    app = typer.Typer()
    app.command()(make)
    ref = str(data_dir / "models" / "mnist_lenet5_advtrained.pt")
    args = [
        "--dataset",
        "mnist",
        "--norm",
        "l0",
        "--n",
        "4",
        "--out",
        str(tmp_path / "l0"),
        "--model",
        ref,
        "--arch",
        "lenet5_advertorch",
        "--judge",
        "mnist-second",
        "--judge",
        "mnist-default",
        "--device",
        "cpu",
        "--seed",
        "1",
        "--data-dir",
        str(data_dir),
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "CAI (" in r.output
    with (tmp_path / "l0" / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sum(r["condition"] == "CB" for r in rows) == 4 and len(rows) == 12
    from workers.data.datasets import load_mnist

    images, labels = load_mnist(data_dir, "test")
    for row in rows:
        idx = int(row["image_index"])
        assert int(row["label"]) == int(labels[idx])
        if row["condition"] == "CB":
            assert np.array_equal(np.asarray(Image_open(tmp_path / "l0" / row["path"])), images[idx])
