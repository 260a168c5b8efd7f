"""``lpstudy stimuli make``: generate a study's CB / CAI / CAP stimulus set (torch is imported lazily)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import typer

logger = logging.getLogger(__name__)

STUDY_NORMS = ("l0", "l2", "linf")
DATASETS = ("mnist", "cifar10")
DEFAULT_MODEL = {"mnist": "mnist-default", "cifar10": "cifar10-default"}
DEVICES = ("auto", "cpu", "cuda")


def make(
    dataset: str = typer.Option(..., "--dataset", help="mnist (L0 study) or cifar10 (L2 and L-inf studies)."),
    norm: str = typer.Option(..., "--norm", help="l0, l2 or linf."),
    n: int = typer.Option(75, "--n", min=1, help="Number of benign images (the paper used 75)."),
    out: Path = typer.Option(..., "--out", help="Output folder (new or empty): PNGs, manifest.csv, failures.csv."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model file (TorchScript or a checkpoint of a registered architecture) or a "
        "registered default name; default: the dataset's default model.",
    ),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state_dict model file."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed for the image choice and the attacks."),
    second_model: str | None = typer.Option(
        None,
        "--second-model",
        help="Independent model that must also be fooled by L0 CAP images (default: the dataset's judge model).",
    ),
    second_arch: str | None = typer.Option(None, "--second-arch", help="Architecture of --second-model."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data folder with MNIST / CIFAR-10 (default: $LPSTUDY_DATA_DIR)."
    ),
    batch_size: int = typer.Option(25, "--batch-size", min=1, help="Images per attack batch."),
) -> None:
    """Make CB, CAI and CAP stimuli for one study, with exact budgets after 8-bit rounding."""
    dataset = dataset.strip().lower()
    norm = norm.strip().lower()
    device = device.strip().lower()
    if dataset not in DATASETS:
        raise typer.BadParameter(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}", param_hint="--dataset"
        )
    if norm not in STUDY_NORMS:
        raise typer.BadParameter(f"unknown norm {norm!r}; choose one of {', '.join(STUDY_NORMS)}", param_hint="--norm")
    if norm == "l0" and dataset != "mnist":
        raise typer.BadParameter("the L0 study runs on MNIST", param_hint="--dataset")
    if device not in DEVICES:
        raise typer.BadParameter(
            f"unknown device {device!r}; choose one of {', '.join(DEVICES)}", param_hint="--device"
        )
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
    if out.is_dir() and (out / "manifest.csv").exists():
        raise typer.BadParameter(f"{out} already holds a manifest.csv; choose a new folder", param_hint="--out")
    for opt, spec in (("--model", model), ("--second-model", second_model)):
        if spec and ("/" in spec or spec.endswith((".pt", ".pth"))) and not Path(spec).is_file():
            raise typer.BadParameter(f"model file not found: {spec}", param_hint=opt)
    if data_dir is not None and not data_dir.is_dir():
        raise typer.BadParameter(f"data folder not found: {data_dir}", param_hint="--data-dir")
    if data_dir is None and os.environ.get("LPSTUDY_DATA_DIR"):
        data_dir = Path(os.environ["LPSTUDY_DATA_DIR"])

    from workers.generation.make import make_stimuli  # imports torch

    try:
        summary = make_stimuli(
            dataset,
            norm,
            model or DEFAULT_MODEL[dataset],
            n,
            out,
            device=device,
            seed=seed,
            second_model=second_model,
            data_dir=data_dir,
            model_arch=arch,
            second_model_arch=second_arch,
            batch_size=batch_size,
        )
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # model loading errors from workers.models
        if type(exc).__name__ in ("ModelLoadError", "DatasetNotFound", "UnknownArch"):
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(1) from None
        raise
    for cond, entry in summary["conditions"].items():
        extra = ""
        if "mean_l0_frac" in entry and norm == "l0":
            extra = f", mean L0 {entry['mean_l0_frac']:.2%}"
        elif "mean_ssim" in entry:
            extra = f", mean SSIM {entry['mean_ssim']:.3f}"
        typer.echo(f"{cond}: {entry['succeeded']}/{entry['attempted']} in {entry['seconds']:.1f} s{extra}")
    typer.echo(f"Wrote {summary['manifest']} (failures in {summary['failures']}).")
    logger.debug("summary: %s", json.dumps(summary))


if __name__ == "__main__":
    typer.run(make)
