"""``lpstudy data``: download datasets (mounted by the lead under the main CLI)."""

from __future__ import annotations

from pathlib import Path

import typer

from app.design import DATASETS

app = typer.Typer(help="Download and inspect datasets (MNIST, CIFAR-10).", no_args_is_help=True)

_DATASETS = DATASETS


@app.command("fetch")
def fetch_cmd(
    name: str = typer.Argument(..., help="Dataset to download: mnist or cifar10."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Target data directory (default: $LPSTUDY_DATA_DIR or ~/.cache/lpstudy/data)."
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="Mirror to download from instead of the official source ($LPSTUDY_DATA_MIRROR)."
    ),
    force: bool = typer.Option(False, "--force", help="Download again even if the files are present."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Download a dataset from its official source, verify its checksum and unpack it."""
    from workers.data.fetch import FetchError, fetch

    key = name.lower().replace("-", "")
    if key not in _DATASETS:
        raise typer.BadParameter(f"unknown dataset {name!r}; choose one of: {', '.join(_DATASETS)}", param_hint="NAME")
    try:
        folder = fetch(key, data_dir, base_url=base_url, progress=not quiet, force=force)
    except FetchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{key} ready in {folder}")


@app.command("info")
def info_cmd(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data directory to inspect."),
) -> None:
    """Show which datasets and splits are available in the data directory."""
    from workers.data.datasets import DatasetError, load_cifar10, load_mnist, resolve_data_dir

    if data_dir is not None and not data_dir.is_dir():
        raise typer.BadParameter(f"no such folder: {data_dir}", param_hint="--data-dir")
    root = resolve_data_dir(data_dir)
    typer.echo(f"data directory: {root}")
    for label, loader in (("mnist", load_mnist), ("cifar10", load_cifar10)):
        for split in ("test", "train"):
            try:
                _, labels = loader(root, split)  # type: ignore[operator]
                typer.echo(f"  {label:8s} {split:5s} {len(labels):6d} images")
            except DatasetError as exc:
                typer.echo(f"  {label:8s} {split:5s} missing ({str(exc).splitlines()[0]})")


if __name__ == "__main__":
    app()
