"""``lpstudy stimuli make``: generate a study's CB / CAI / CAP stimulus set (torch is imported lazily)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import typer

from app.design import DATASETS, DEFAULT_MODELS, DEVICES, NORMS, study_pair_problem

logger = logging.getLogger(__name__)

DEFAULT_MODEL = DEFAULT_MODELS


def make(
    config: Path | None = typer.Option(
        None,
        "--config",
        help="A study config (TOML): take the dataset, norm, conditions and [generation] from it, so that the "
        "set is the one the worker makes for that study (the same PNGs).",
    ),
    dataset: str | None = typer.Option(None, "--dataset", help="mnist (L0 study) or cifar10 (L2 and L-inf)."),
    norm: str | None = typer.Option(None, "--norm", help="l0, l2 or linf."),
    n: int | None = typer.Option(
        None, "--n", min=1, help="Complete source images (default: the paper's, 75 for L0 and 100 for L2/L-inf)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (new or empty): PNGs, manifest.csv, failures.csv."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model file (TorchScript or a checkpoint of a registered architecture) or a "
        "registered default name; default: the dataset's default model.",
    ),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state_dict model file."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Seed for the image choice and the attacks (0)."),
    second_model: str | None = typer.Option(
        None,
        "--second-model",
        help="Independent model that must also be fooled by L0 CAP images (default: the dataset's judge model).",
    ),
    second_arch: str | None = typer.Option(None, "--second-arch", help="Architecture of --second-model."),
    judge: list[str] = typer.Option(
        None,
        "--judge",
        help="A judge model of the automated L0 CAP (repeat; default: the dataset's, mnist-second and "
        "mnist-advertorch-lenet5).",
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data folder with MNIST / CIFAR-10 (default: $LPSTUDY_DATA_DIR)."
    ),
    batch_size: int = typer.Option(
        25, "--batch-size", min=1, help="Source images per block (the worker's job); attack batches fit the device."
    ),
) -> None:
    """Make complete CB, CAI and CAP triples for one study, with exact budgets after 8-bit rounding."""
    generation = None
    conditions = None
    if config is not None:
        if not config.is_file():
            raise typer.BadParameter(f"config file not found: {config}", param_hint="--config")
        from app.errors import ConfigError
        from app.studies.schema import parse_study_config

        try:
            cfg = parse_study_config(config.read_text(encoding="utf-8"), filename=str(config))
        except (ConfigError, UnicodeDecodeError) as exc:
            typer.echo(f"Error: {getattr(exc, 'message', exc)}", err=True)
            raise typer.Exit(1) from None
        if cfg.generation is None:
            raise typer.BadParameter(f"{config} has no [generation] table", param_hint="--config")
        given = [
            o
            for o, v in (
                ("--dataset", dataset),
                ("--norm", norm),
                ("--n", n),
                ("--model", model),
                ("--seed", seed),
                ("--judge", judge or None),
            )
            if v is not None
        ]
        if given:
            raise typer.BadParameter(f"{', '.join(given)} cannot be combined with --config", param_hint="--config")
        dataset, norm, conditions = cfg.dataset, cfg.norm, list(cfg.conditions)
        generation = cfg.generation.model_dump(mode="json")
    if judge and second_model:
        raise typer.BadParameter("give --judge (repeatable) or --second-model, not both", param_hint="--judge")
    if dataset is None or norm is None:
        raise typer.BadParameter("give --dataset and --norm, or --config", param_hint="--dataset")
    dataset = dataset.strip().lower()
    norm = norm.strip().lower()
    device = device.strip().lower()
    if dataset not in DATASETS:
        raise typer.BadParameter(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}", param_hint="--dataset"
        )
    if norm not in NORMS:
        raise typer.BadParameter(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}", param_hint="--norm")
    problem = study_pair_problem(dataset, norm)
    if problem:
        raise typer.BadParameter(problem, param_hint="--dataset")
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
            model or (generation or {}).get("model") or DEFAULT_MODELS[dataset],
            n,
            out,
            device=device,
            seed=seed or 0,
            second_model=second_model,
            judges=list(judge) if judge else None,
            conditions=conditions,
            generation=generation,
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
    typer.echo(
        f"{summary['n']} of {summary['target']} complete source images in {summary['seconds']:.1f} s "
        f"({summary['failed']} replaced after a failed attempt, {summary['attempted']} tried)"
    )
    for cond, entry in summary["conditions"].items():
        extra = ""
        if "mean_l0_frac" in entry and norm == "l0":
            extra = f", mean L0 {entry['mean_l0_frac']:.2%}"
        elif "mean_ssim" in entry:
            extra = f", mean SSIM {entry['mean_ssim']:.3f}"
        typer.echo(
            f"{cond} ({entry['attack']}): {entry['succeeded']}/{entry['attempted']} in {entry['seconds']:.1f} s{extra}"
        )
    typer.echo(f"Wrote {summary['manifest']} (failures in {summary['failures']}).")
    logger.debug("summary: %s", json.dumps(summary))


if __name__ == "__main__":
    typer.run(make)
