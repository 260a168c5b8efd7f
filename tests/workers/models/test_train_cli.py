"""The ``lpstudy models`` typer app: argument errors, list, export, train+eval end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from workers.models.cli import app, parse_eps

runner = CliRunner()
torch.set_num_threads(1)


def test_import_does_not_load_torch() -> None:
    code = "import sys, workers.models.cli, workers.data.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parse_eps() -> None:
    assert parse_eps("8/255") == pytest.approx(8 / 255) and parse_eps("0.3") == 0.3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "svhn", "--arch", "cw_mnist", "--eps", "0.3"], "svhn"),
        (["--dataset", "mnist", "--arch", "resnet9000", "--eps", "0.3"], "unknown architecture"),
        (["--dataset", "mnist", "--arch", "preact_resnet18_w32", "--eps", "0.3"], "is for cifar10"),
        (["--dataset", "mnist", "--arch", "cw_mnist", "--eps", "lots"], "not a number"),
        (["--dataset", "mnist", "--arch", "cw_mnist", "--eps", "-1"], "eps must be"),
        (["--dataset", "mnist", "--arch", "cw_mnist", "--eps", "0.9"], "out of range"),
        (["--dataset", "mnist", "--arch", "cw_mnist", "--eps", "0.3", "--method", "cw"], "cw"),
        (["--dataset", "mnist", "--arch", "cw_mnist", "--eps", "0.3", "--device", "tpu"], "tpu"),
    ],
)
def test_train_bad_arguments(args: list[str], message: str, tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "m.pt"), "--data-dir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_eval_and_export_bad_arguments(tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", str(tmp_path / "missing.pt"), "--dataset", "mnist"])
    assert res.exit_code == 2 and "file not found" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "missing.pt"), "--dataset", "imagenet"])
    assert res.exit_code == 2 and "imagenet" in res.output
    res = runner.invoke(app, ["export", "no-such-model", "--torchscript", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, ["export", "mnist-default"])
    assert res.exit_code == 2 and "--torchscript" in res.output


def test_list_and_archs() -> None:
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0
    for name in ("mnist-default", "mnist-second", "cifar10-default"):
        assert name in res.output
    assert "card:" in res.output
    res = runner.invoke(app, ["archs"])
    assert res.exit_code == 0 and "madry_mnist" in res.output and "preact_resnet18_w32" in res.output


@pytest.mark.realdata
def test_cli_train_eval_export(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    common = ["--dataset", "mnist", "--arch", "cw_mnist", "--eps", "0.3", "--device", "cpu", "--out", str(out),
              "--data-dir", str(data_dir), "--train-subset", "200", "--holdout", "100", "--batch-size", "50",
              "--epochs", "2", "-q"]
    res = runner.invoke(app, ["train", *common, "--max-batches", "2"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", *common])
    assert res.exit_code == 2 and "--resume" in res.output
    res = runner.invoke(app, ["eval", str(out), "--dataset", "cifar10", "--data-dir", str(data_dir), "-q"])
    assert res.exit_code == 2 and "mnist model" in res.output
    res = runner.invoke(app, ["eval", str(out), "--dataset", "mnist", "--data-dir", str(data_dir), "--n", "100",
                              "--steps", "3", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert "clean" in res.output and out.with_suffix(".json").is_file()
    ts = tmp_path / "ts.pt"
    res = runner.invoke(app, ["export", str(out), "--torchscript", str(ts), "--weights", str(tmp_path / "h.pt"),
                              "--fp16"])
    assert res.exit_code == 0, res.output
    x = torch.rand(3, 1, 28, 28)
    from workers.models import load_model

    assert torch.allclose(torch.jit.load(str(ts))(x), load_model(out)(x), atol=1e-5)
