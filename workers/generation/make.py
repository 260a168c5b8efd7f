"""A study's stimulus set in a folder (``lpstudy stimuli make``), made exactly as the worker makes it.

``make_stimuli`` resolves its options into the same ``[generation]`` config a study would store, then runs
the same jobs as the worker would (``app.contracts.block_payload``, ``workers.generation.block.make_block``):
the first blocks, then top-up blocks until the set holds ``n`` complete source images (each with a stimulus
in every condition), and keeps the first ``n`` by candidate position. The same config and seed therefore give
byte-identical PNGs here and in the database.

It writes PNGs (the bytes the database would hold), ``manifest.csv`` (the complete triples, importable by
``lpstudy stimuli import``), ``failures.csv`` (source images that did not enter the set, with the condition
that failed and why) and ``summary.json``.

Study design (Sharif, Bauer & Reiter 2018): L0 on MNIST, L2 and L-inf on CIFAR-10; source images are drawn
at random among the test images, and kept when the model classifies them correctly.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.contracts import SourceOutcome, block_payload, first_blocks
from app.design import CONDITIONS, check_study
from app.studies.generation import resolve_generation_dict
from workers.generation.block import BlockInputs, make_block
from workers.generation.generate import (  # noqa: F401  (re-exported: the older import path)
    METRIC_COLUMNS,
    generate,
    model_id_of,
    resolve_device,
)
from workers.models.wrapper import images_to_tensor

logger = logging.getLogger(__name__)

CONDITIONS_ALL = CONDITIONS
MANIFEST_HEAD = ("condition", "image_index", "label", "path")
FAILURE_HEAD = ("image_index", "position", "label", "status", "condition", "reason")


def choose_benign(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    seed: int,
    device: torch.device,
    batch_size: int = 500,
) -> np.ndarray:
    """Indices of ``n`` test images drawn at random (seeded) among those the model classifies correctly."""
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen: list[int] = []
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        with torch.no_grad():
            pred = model(images_to_tensor(images[idx], device)).argmax(1).cpu().numpy()
        chosen.extend(int(i) for i in idx[pred == labels[idx]])
        if len(chosen) >= n:
            return np.asarray(chosen[:n], dtype=np.int64)
    raise ValueError(f"only {len(chosen)} test images are classified correctly; {n} requested")


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return ""
        return repr(v)
    return v


def _load_spec(
    spec: str | torch.nn.Module,
    device: torch.device,
    arch: str | None = None,
    data_dir: str | Path | None = None,
) -> torch.nn.Module:
    """A model by spec; default models whose weights live in the data directory are read from ``data_dir``."""
    if isinstance(spec, torch.nn.Module):
        return spec.to(device).eval()
    from workers.models import load_model

    return load_model(spec, device=device, arch=arch, data_dir=data_dir)


def make_stimuli(
    dataset: str,
    norm: str,
    model: str | torch.nn.Module,
    n: int | None,
    out_dir: str | Path,
    device: str | torch.device = "auto",
    seed: int = 0,
    second_model: str | torch.nn.Module | None = None,
    *,
    judges: Sequence[str | torch.nn.Module] | None = None,
    conditions: Sequence[str] | None = None,
    attacks: dict[str, str | dict[str, Any]] | None = None,
    attack_params: dict[str, dict[str, Any]] | None = None,
    generation: dict[str, Any] | None = None,
    data_dir: str | Path | None = None,
    model_arch: str | None = None,
    second_model_arch: str | None = None,
    batch_size: int = 25,
    max_batch: int | None = None,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    progress: bool = True,
    on_batch: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Make a study's stimulus set in ``out_dir`` and return a summary dict.

    ``n`` is the number of complete source images (None: the paper's for ``norm``). ``model`` and the judges
    are nn.Modules or specs for ``workers.models.load_model``; ``judges`` default to the dataset's
    (``second_model`` is the older single-judge form). ``attacks`` maps a condition to an attack name or
    ``{"name": ..., "params": {...}}``; ``attack_params`` maps a condition to parameters of its default attack.
    ``generation`` is a study config's ``[generation]`` table and replaces all of these but the models given
    as modules. ``test_images``/``train_images`` override loading from ``data_dir``.
    """
    check_study(dataset, norm)
    conds = list(conditions or CONDITIONS)
    if generation is None:
        choices: dict[str, Any] = {}
        for c in conds:
            a = (attacks or {}).get(c)
            if isinstance(a, str):
                choices[c] = {"name": a, "params": (attack_params or {}).get(c, {})}
            elif a is not None:
                choices[c] = dict(a)
            elif (attack_params or {}).get(c):
                from app.attack_specs import default_attack

                choices[c] = {"name": default_attack(norm, c).name, "params": attack_params[c]}  # type: ignore[index]
        judge_names = [
            j for j in (judges or ([second_model] if second_model is not None else [])) if isinstance(j, str)
        ]
        generation = {
            "model": model if isinstance(model, str) else None,
            "seed": int(seed),
            "images": n,
            "batch_size": int(batch_size),
            "attacks": choices,
        }
        if judges is not None or second_model is not None:
            generation["judges"] = judge_names
    gen = resolve_generation_dict(dataset, norm, conds, generation)
    n = int(gen["images"])
    dev = resolve_device(device)
    out = Path(out_dir)
    if out.exists() and (out / "manifest.csv").exists():
        raise FileExistsError(f"{out / 'manifest.csv'} already exists; choose an empty output folder")
    out.mkdir(parents=True, exist_ok=True)
    net = _load_spec(model if not isinstance(model, str) else gen["model"], dev, model_arch, data_dir)
    judge_specs: list[Any] = list(judges) if judges is not None else [second_model] if second_model is not None else []
    if not judge_specs:
        judge_specs = list(gen["judges"])
    judge_nets = [_load_spec(j, dev, second_model_arch, data_dir) for j in judge_specs]
    if test_images is None or test_labels is None:
        from workers.data.datasets import load_dataset

        test_images, test_labels = load_dataset(dataset, data_dir, "test")
    train = (train_images, np.asarray(train_labels)) if train_images is not None and train_labels is not None else None
    inputs = BlockInputs(
        model=net,
        test_images=np.asarray(test_images),
        test_labels=np.asarray(test_labels).astype(np.int64),
        judges=judge_nets,
        device=dev,
        data_dir=data_dir,
        train=train,
        max_batch=max_batch,
    )
    k0 = first_blocks(n, int(gen["batch_size"]))
    complete: list[SourceOutcome] = []
    failed: list[SourceOutcome] = []
    timings: dict[str, float] = dict.fromkeys(CONDITIONS, 0.0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"stimuli {dataset}/{norm}", unit="image")
    t_all = time.perf_counter()
    block = 0
    try:
        while block < k0 or len(complete) < n:
            payload = block_payload(dataset, norm, conds, gen, block)
            t_cond = [time.perf_counter()]

            def tick(cond: str, t_cond: list[float] = t_cond) -> None:
                now = time.perf_counter()
                timings[cond] += now - t_cond[0]
                t_cond[0] = now

            res = make_block(payload, inputs, on_condition=tick)
            before = len(complete)
            for o in res.outcomes:
                (complete if o.complete else failed).append(o)
            if bar is not None:
                bar.update(min(n, len(complete)) - min(n, before))
            if on_batch is not None:
                on_batch("block", block + 1, max(k0, block + 1))
            block += 1
            if len(res.outcomes) < payload.size:
                logger.warning("the candidates ran out after %s complete source images of %s", len(complete), n)
                break
    finally:
        if bar is not None:
            bar.close()
    complete.sort(key=lambda o: o.position)
    kept, surplus = complete[:n], complete[n:]
    return write_set(
        out,
        dataset,
        norm,
        conds,
        kept,
        failed,
        surplus,
        timings,
        gen=gen,
        device=str(dev),
        seconds=time.perf_counter() - t_all,
        blocks=block,
    )


def write_set(
    out: Path,
    dataset: str,
    norm: str,
    conditions: list[str],
    kept: list[SourceOutcome],
    failed: list[SourceOutcome],
    surplus: list[SourceOutcome],
    timings: dict[str, float],
    *,
    gen: dict[str, Any],
    device: str,
    seconds: float,
    blocks: int,
) -> dict[str, Any]:
    """Write PNGs, ``manifest.csv`` (complete triples), ``failures.csv`` and ``summary.json``; return the summary."""
    header = list(MANIFEST_HEAD) + list(METRIC_COLUMNS)
    by_cond: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
    with (out / "manifest.csv").open("w", newline="") as fm:
        wm = csv.writer(fm)
        wm.writerow(header)
        for cond in conditions:
            for o in kept:
                st = next(s for s in o.stimuli if s.condition == cond)
                rel = f"{cond}/{o.image_index:05d}.png"
                (out / cond).mkdir(parents=True, exist_ok=True)
                (out / rel).write_bytes(st.png)
                m = {**st.metrics, "attack": st.attack, "params": json.dumps(st.params, sort_keys=True)}
                m.update(seed=st.seed, model_id=st.model_id)
                wm.writerow([cond, o.image_index, o.label, rel] + [_cell(m.get(k)) for k in METRIC_COLUMNS])
                by_cond[cond].append(m)
    fail_metrics = ("l0", "l0_frac", "l2", "linf", "ssim", "model_pred", "target", "attack", "seed")
    with (out / "failures.csv").open("w", newline="") as ff:
        wf = csv.writer(ff)
        wf.writerow(list(FAILURE_HEAD) + list(fail_metrics))
        for o in sorted(failed, key=lambda o: o.position):
            for f in o.failures:
                row = [o.image_index, o.position, o.label, "failed", f.condition, f.reason]
                wf.writerow(row + [_cell(f.metrics.get(k)) for k in fail_metrics])
        for o in surplus:
            reason = f"surplus: the set already holds {len(kept)} complete source images"
            wf.writerow([o.image_index, o.position, o.label, "surplus", "", reason] + [""] * len(fail_metrics))
    reasons: dict[str, dict[str, int]] = {}
    for o in failed:
        for f in o.failures:
            reasons.setdefault(f.condition, {}).setdefault(f.reason, 0)
            reasons[f.condition][f.reason] += 1
    summary: dict[str, Any] = {
        "dataset": dataset,
        "norm": norm,
        "seed": gen["seed"],
        "device": device,
        "n": len(kept),
        "target": gen["images"],
        "attempted": len(kept) + len(failed) + len(surplus),
        "failed": len(failed),
        "surplus": len(surplus),
        "failure_reasons": reasons,
        "blocks": blocks,
        "seconds": round(seconds, 3),
        "generation": gen,
        "out_dir": str(out),
        "manifest": str(out / "manifest.csv"),
        "failures": str(out / "failures.csv"),
        "conditions": {},
    }
    for cond in conditions:
        ok = by_cond[cond]
        attempted = len(kept) + len(surplus) + sum(1 for o in failed if any(f.condition == cond for f in o.failures))
        entry: dict[str, Any] = {
            "succeeded": len(ok),
            "attempted": attempted,
            "seconds": round(timings.get(cond, 0.0), 3),
            "seconds_per_image": round(timings.get(cond, 0.0) / max(1, attempted), 4),
            "attack": gen["attacks"][cond]["name"],
            "params": gen["attacks"][cond]["params"],
        }
        for key in ("l0_frac", "l2", "linf", "ssim"):
            vals = [m[key] for m in ok if m.get(key) is not None]
            if vals and cond != "CB":
                entry[f"mean_{key}"] = float(np.mean(vals))
                entry[f"sd_{key}"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        summary["conditions"][cond] = entry
    summary["model_id"] = next((m["model_id"] for ms in by_cond.values() for m in ms), None)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    logger.info("stimuli written to %s: %s complete source images, %s failed", out, len(kept), len(failed))
    return summary
