"""``lpstudy models``: train, evaluate, list and export robust classifiers.

torch is imported inside the commands only, so importing this module (e.g. to mount it in the main CLI) is
cheap and works without torch installed.
"""

from __future__ import annotations

import json
import logging
import math
from fractions import Fraction
from pathlib import Path

import typer

from app.design import DATASETS, DEVICES

app = typer.Typer(help="Robust classifiers: train, evaluate, list, export.", no_args_is_help=True)

METHODS = ("fgsm-rs", "pgd")


def parse_eps(value: str) -> float:
    """``0.3``, ``8/255`` or ``8/255.`` -> float; raises typer.BadParameter."""
    try:
        eps = float(Fraction(value.strip())) if "/" in value else float(value)
    except (ValueError, ZeroDivisionError):
        raise typer.BadParameter(f"{value!r} is not a number (use e.g. 0.3 or 8/255)", param_hint="--eps") from None
    if math.isnan(eps) or eps < 0:
        raise typer.BadParameter(f"eps must be >= 0, got {value}", param_hint="--eps")
    return eps


def _check_choice(value: str, choices: tuple[str, ...], hint: str) -> str:
    v = value.lower()
    if v not in choices:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}", param_hint=hint)
    return v


def _fail(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


@app.command("train")
def train_cmd(
    dataset: str = typer.Option(..., "--dataset", help="mnist or cifar10."),
    arch: str = typer.Option(..., "--arch", help="Registered architecture (see `lpstudy models archs`)."),
    eps: str = typer.Option(..., "--eps", help="L-inf training radius, e.g. 0.3 or 8/255."),
    out: Path = typer.Option(..., "--out", help="Checkpoint file (.pt) written every epoch."),
    method: str = typer.Option("fgsm-rs", "--method", help="fgsm-rs (Wong et al. 2020) or pgd (Madry et al.)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs (upper bound with --time-budget)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue an unfinished checkpoint at --out."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate of the cyclic schedule."),
    pgd_steps: int = typer.Option(10, "--pgd-steps", min=1, help="Attack steps for --method pgd."),
    pgd_alpha: float | None = typer.Option(None, "--pgd-alpha", help="PGD step size (default 2.5*eps/steps)."),
    eps_warmup: float | None = typer.Option(None, "--eps-warmup", min=0.0, max=1.0,
                                            help="Fraction of training over which eps ramps up."),
    time_budget: float | None = typer.Option(None, "--time-budget", min=1.0,
                                             help="Seconds; plans the epoch count from the first epochs."),
    train_subset: int | None = typer.Option(None, "--train-subset", min=1, help="Use only N training images."),
    max_batches: int | None = typer.Option(None, "--max-batches", min=1, help="Batches per epoch (smoke runs)."),
    holdout: int = typer.Option(1000, "--holdout", min=0, help="Training images held out for model selection."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data directory (default $LPSTUDY_DATA_DIR)."),
    note: str = typer.Option("", "--note", help="Free text stored in the model card."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Adversarially train a model and write a resumable checkpoint."""
    dataset = _check_choice(dataset, DATASETS, "--dataset")
    method = _check_choice(method, METHODS, "--method")
    device = _check_choice(device, DEVICES, "--device")
    eps_value = parse_eps(eps)
    from workers.data import DatasetError
    from workers.models import UnknownArch, get_arch
    from workers.models.train import TrainConfig, TrainError, train

    try:
        info = get_arch(arch)
    except UnknownArch as exc:
        raise typer.BadParameter(str(exc), param_hint="--arch") from None
    if info.dataset != dataset:
        raise typer.BadParameter(f"architecture {arch!r} is for {info.dataset}, not {dataset}", param_hint="--arch")
    cfg = TrainConfig(
        dataset=dataset, arch=arch, eps=eps_value, method=method, epochs=epochs, batch_size=batch_size, lr=lr,
        seed=seed, device=device, pgd_steps=pgd_steps, pgd_alpha=pgd_alpha, eps_warmup=eps_warmup,
        time_budget=time_budget, train_subset=train_subset, max_batches=max_batches, holdout=holdout,
        data_dir=str(data_dir) if data_dir else None, note=note,
    )
    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        card = train(cfg, out, resume=resume, progress=not quiet)
    except (TrainError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    except DatasetError as exc:
        raise _fail(str(exc), 1) from exc
    t = card["training"]
    typer.echo(f"wrote {out}: {t['epochs_run']} epochs in {t['train_seconds']}s, best epoch {t['best_epoch']}")


@app.command("eval")
def eval_cmd(
    file: Path = typer.Argument(..., help="Weights file (lpstudy checkpoint, state_dict with --arch, TorchScript)."),
    dataset: str = typer.Option(..., "--dataset", help="mnist or cifar10."),
    eps: str | None = typer.Option(None, "--eps", help="Attack radius (default: the training eps)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="PGD steps (default 40 MNIST, 20 CIFAR-10)."),
    n: int | None = typer.Option(None, "--n", min=1, help="Evaluate only the first N test images."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state_dict."),
    data_dir: Path | None = typer.Option(None, "--data-dir"),
    write_card: bool = typer.Option(True, "--card/--no-card", help="Write the model card next to the weights."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Clean and PGD robust accuracy on the lossless test set; writes the JSON model card."""
    dataset = _check_choice(dataset, DATASETS, "--dataset")
    device = _check_choice(device, DEVICES, "--device")
    eps_value = parse_eps(eps) if eps is not None else None
    if not file.is_file():
        raise typer.BadParameter(f"file not found: {file}", param_hint="FILE")
    from workers.data import DatasetError
    from workers.models import ModelLoadError
    from workers.models.evaluate import evaluate_file

    try:
        res = evaluate_file(
            file, dataset, data_dir=data_dir, eps=eps_value, steps=steps, n=n, seed=seed, device=device,
            progress=not quiet, write=write_card, arch=arch,
        )
    except (ModelLoadError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    except DatasetError as exc:
        raise _fail(str(exc), 1) from exc
    a = res["attack"]
    typer.echo(
        f"{file.name}: clean {res['clean_accuracy']:.4f}, PGD-{a['steps']} (eps {a['eps']:.4f}) "
        f"{res['robust_accuracy']:.4f} on n={res['n']}"
    )
    if write_card:
        typer.echo(f"card: {res['card_path']}")


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every named model: name, dataset, weights path and card path."""
    from workers.models import list_models

    rows = list_models()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        status = "" if r["available"] else "  (weights missing)"
        typer.echo(f"{r['name']:26s} {r['dataset']:8s} {r['arch']:20s} {r['weights']}{status}")
        typer.echo(f"{'':26s} {'':8s} {'card:':20s} {r['card']}")


@app.command("archs")
def archs_cmd() -> None:
    """Registered architectures."""
    from workers.models import list_archs

    for a in list_archs():
        typer.echo(f"{a.name:22s} {a.dataset:8s} {a.description}")


@app.command("export")
def export_cmd(
    name: str = typer.Argument(..., help="A model name (see `list`) or a weights file."),
    torchscript: Path | None = typer.Option(None, "--torchscript", help="Write a TorchScript file here."),
    weights: Path | None = typer.Option(None, "--weights", help="Write an lpstudy checkpoint here."),
    fp16: bool = typer.Option(False, "--fp16", help="With --weights: store fp16."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state_dict."),
) -> None:
    """Export a model: TorchScript taking [0, 1] images and returning logits (normalisation inside)."""
    if torchscript is None and weights is None:
        raise typer.BadParameter("give --torchscript OUT.pt and/or --weights OUT.pt", param_hint="--torchscript")
    from workers.models import ModelLoadError, export_torchscript, load_model, save_model_file

    try:
        model = load_model(name, arch=arch)
    except ModelLoadError as exc:
        raise _fail(str(exc)) from exc
    if torchscript is not None:
        export_torchscript(model, torchscript)
        typer.echo(f"wrote {torchscript} (TorchScript, input [N, {', '.join(map(str, model.input_shape or ()))}] "
                   f"in [0, 1], model_id {model.model_id})")
    if weights is not None:
        if model.arch is None or model.arch == "torchscript" or ":" in model.arch:
            raise _fail("--weights needs a registered architecture")
        save_model_file(weights, model.model, model.arch, normalization=model.normalization,
                        card=model.card or {}, half=fp16)
        typer.echo(f"wrote {weights}")


if __name__ == "__main__":
    app()
