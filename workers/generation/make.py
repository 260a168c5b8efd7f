"""Stimulus-set generation: CB / CAI / CAP images with exact budgets and per-stimulus metrics.

Two entry points:

* :func:`generate` makes one condition's stimuli for one batch of benign images and returns one dict per
  image (the DB worker job calls it per batch);
* :func:`make_stimuli` makes a whole study set in a folder: PNGs, ``manifest.csv`` (only successful stimuli,
  importable by ``lpstudy stimuli import``), ``failures.csv`` (failed attacks, never imported; their best
  attempt is kept under ``failed/`` for inspection) and ``summary.json``.

Study design (Sharif, Bauer & Reiter 2018): L0 on MNIST, L2 and L-inf on CIFAR-10; benign images are drawn at
random among the test images that the model classifies correctly.
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
from PIL import Image

from workers.attacks import attack_for, get_attack
from workers.measures.budgets import Budget, budget_ok
from workers.measures.metrics import image_metrics
from workers.models.wrapper import images_to_tensor

logger = logging.getLogger(__name__)

CONDITIONS_ALL = ("CB", "CAI", "CAP")
STUDY_DATASET = {"l0": "mnist", "l2": "cifar10", "linf": "cifar10"}
DATASETS = ("mnist", "cifar10")
NORMS = ("l0", "l2", "linf")
MANIFEST_HEAD = ("condition", "image_index", "label", "path")
METRIC_COLUMNS = (
    "success",
    "budget_ok",
    "l0",
    "l0_frac",
    "l2",
    "linf",
    "ssim",
    "ssim_opt",
    "ssim_variant",
    "psnr",
    "uqi",
    "model_pred",
    "model_conf",
    "target",
    "second_pred",
    "iterations",
    "seconds",
    "seed",
    "attack",
    "params",
    "model_id",
    "second_model_id",
    "norm",
    "budget",
    "note",
)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available on this machine")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")


def check_study(dataset: str, norm: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if norm == "l0" and dataset != "mnist":
        raise ValueError("the L0 study runs on MNIST (JSMA and the digit-copying CAP are defined for grey digits)")


def _to_numpy_image(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu()
    if a.shape[0] == 1:
        return a[0].numpy().astype(np.uint8)
    return a.permute(1, 2, 0).numpy().astype(np.uint8)


def model_id_of(model: torch.nn.Module | None) -> str | None:
    if model is None:
        return None
    return str(getattr(model, "model_id", None) or type(model).__name__)


@torch.no_grad()
def _predict_u8(
    model: torch.nn.Module, images_u8: list[np.ndarray], device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and confidence (softmax max) of ``model`` on 8-bit images, exactly as stored."""
    x = images_to_tensor(np.stack(images_u8), device)
    p = torch.softmax(model(x).float(), dim=1)
    conf, pred = p.max(1)
    return pred.cpu().numpy(), conf.cpu().numpy()


def generate(
    dataset: str,
    norm: str,
    condition: str,
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    image_indices: Sequence[int] | np.ndarray,
    model: torch.nn.Module,
    seed: int,
    device: str | torch.device = "auto",
    *,
    second_model: torch.nn.Module | None = None,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    data_dir: str | Path | None = None,
    cai_l0: Sequence[int] | None = None,
    attack_params: dict[str, Any] | None = None,
    attack: str | None = None,
    judges: Sequence[torch.nn.Module] | None = None,
    donor_images: np.ndarray | None = None,
    donor_labels: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Make ``condition`` stimuli (``CB``, ``CAI`` or ``CAP``) for one batch of benign test images.

    ``images`` are uint8 ``[N, H, W]`` (MNIST) or ``[N, H, W, 3]`` (CIFAR-10); ``labels`` the true labels;
    ``image_indices`` their indices in the test set. ``model`` takes [0, 1] NCHW floats and owns its
    normalisation. ``second_model`` judges L0 CAP (required there), which also needs training digits
    (``train_images``/``train_labels``, else loaded from ``data_dir``); ``cai_l0`` is CAI's L0 distribution
    in pixels, used to set CAP's k. ``attack_params`` override the registered attack's defaults.

    Returns one dict per image: ``condition``, ``image_index``, ``label``, ``image`` (uint8 HW / HWC, the stimulus
    as it is to be stored), ``success`` (True only when the stimulus may enter the pool) and ``metrics`` (a flat
    dict with the keys of ``METRIC_COLUMNS``). Budgets and success are judged on the 8-bit image.
    """
    check_study(dataset, norm)
    if condition not in CONDITIONS_ALL:
        raise ValueError(f"unknown condition {condition!r}; choose one of {CONDITIONS_ALL}")
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    labels_arr = np.asarray(labels, dtype=np.int64)
    idx_arr = np.asarray(image_indices, dtype=np.int64)
    if not (len(images) == len(labels_arr) == len(idx_arr)):
        raise ValueError("images, labels and image_indices must have the same length")
    if len(images) == 0:
        return []
    dev = resolve_device(device)
    model = model.to(dev).eval()
    budget = Budget(norm)
    mid = model_id_of(model)
    base: dict[str, Any] = dict.fromkeys(METRIC_COLUMNS)
    base.update({"seed": int(seed), "model_id": mid, "norm": norm, "budget": budget.describe()})

    x = images_to_tensor(images, dev)
    y = torch.from_numpy(labels_arr).to(dev)
    generator = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    if condition == "CB":
        adv_imgs = [images[i] for i in range(len(images))]
        attack_ok = [True] * len(images)
        targets = [None] * len(images)
        iters = [0] * len(images)
        ssim_opt: list[float | None] = [None] * len(images)
        notes = [""] * len(images)
        attack_name, params, variant = None, None, None
    else:
        spec = get_attack(attack) if attack else attack_for(norm, condition)
        params = dict(spec.defaults)
        params.update(attack_params or {})
        extra_kw: dict[str, Any] = {}
        if spec.name == "l0_cap":
            if second_model is None:
                raise ValueError("L0 CAP needs a second, independently trained model (second_model)")
            second_model = second_model.to(dev).eval()
            if train_images is None or train_labels is None:
                from workers.data.datasets import load_mnist

                train_images, train_labels = load_mnist(data_dir, "train")
            extra_kw = {
                "second_model": second_model,
                "train_images": train_images,
                "train_labels": train_labels,
                "k_values": list(cai_l0) if cai_l0 is not None else None,
            }
        elif spec.name == "l0_paste":
            if judges is None:
                judges, missing = _load_judges(params["judge_models"], dev, data_dir)
                if missing:
                    # Only without the data directory's external weights (e.g. the offline demo fallback): the
                    # ensemble shrinks, visibly (recorded in params), instead of failing every CAP job.
                    logger.warning("L0 CAP judges missing (weights not found): %s; judging with the rest", missing)
                    params["judges_missing"] = missing
                    params["min_judges"] = min(int(params.get("min_judges", 3)), max(2, len(judges) + 1))
            judges = list(judges)
            if donor_images is None or donor_labels is None:
                donor_images, donor_labels = _donors(data_dir)
            extra_kw = {"judges": judges, "donor_images": donor_images, "donor_labels": donor_labels}
        res = spec.fn(model, x, y, condition=condition, generator=generator, **params, **extra_kw)
        adv_imgs = [_to_numpy_image(res.adv_u8[i]) for i in range(len(images))]
        attack_ok = [bool(s) for s in res.success.cpu()]
        targets = [int(t) if int(t) >= 0 else None for t in res.target.cpu()]
        iters = [int(i) for i in res.iterations.cpu()]
        ssim_opt = [None] * len(images) if res.ssim_opt is None else [float(s) for s in res.ssim_opt.cpu()]
        notes = list(res.notes) or [""] * len(images)
        attack_name, variant = spec.name, spec.ssim_variant
        params.update(res.params)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = (time.perf_counter() - t0) / len(images)

    pred, conf = _predict_u8(model, adv_imgs, dev)
    judge_preds: list[np.ndarray] = []
    if judges is not None and attack_name == "l0_paste":
        judge_preds = [_predict_u8(j.to(dev).eval(), adv_imgs, dev)[0] for j in judges]
        second_model = judges[0]
    if second_model is not None and condition != "CB":
        pred2, _ = _predict_u8(second_model.to(dev).eval(), adv_imgs, dev)
    else:
        pred2 = None
    out: list[dict[str, Any]] = []
    params_json = json.dumps(params, sort_keys=True, default=str) if params is not None else None
    for i in range(len(images)):
        m = dict(base)
        m.update(image_metrics(images[i], adv_imgs[i]))
        m["l0"] = int(m["l0"])
        m.pop("ssim_reflect", None)
        if variant is not None:
            m["ssim_opt"] = ssim_opt[i] if ssim_opt[i] is not None and not math.isnan(ssim_opt[i]) else None
            m["ssim_variant"] = variant
        m["model_pred"] = int(pred[i])
        m["model_conf"] = float(conf[i])
        m["target"] = targets[i]
        m["iterations"] = iters[i]
        m["seconds"] = seconds
        m["attack"] = attack_name
        m["params"] = params_json
        m["second_model_id"] = model_id_of(second_model) if condition != "CB" else None
        m["second_pred"] = int(pred2[i]) if pred2 is not None else None
        note = notes[i] if i < len(notes) else ""
        if condition == "CB":
            in_budget = True
            ok = int(pred[i]) == int(labels_arr[i])
            if not ok:
                note = "benign image misclassified"
        else:
            in_budget = budget_ok(norm, images[i], adv_imgs[i], budget)
            ok = attack_ok[i] and in_budget and int(pred[i]) != int(labels_arr[i])
            if attack_name == "l0_cap":
                t = targets[i]
                ok = ok and t is not None and int(pred[i]) == t and pred2 is not None and int(pred2[i]) == t
            if attack_name == "l0_paste":
                t = targets[i]
                ok = ok and t is not None and int(pred[i]) == t and all(int(jp[i]) == t for jp in judge_preds)
            if attack_ok[i] and not ok:
                note = "budget broken after rounding" if not in_budget else "not misclassified on the stored image"
        m["budget_ok"] = bool(in_budget)
        m["success"] = bool(ok)
        m["note"] = note or None
        out.append(
            {
                "condition": condition,
                "image_index": int(idx_arr[i]),
                "label": int(labels_arr[i]),
                "image": adv_imgs[i],
                "success": bool(ok),
                "metrics": m,
            }
        )
    return out


_JUDGE_CACHE: dict[tuple[str, str, str], torch.nn.Module] = {}


def _load_judges(
    names: Sequence[str], device: torch.device, data_dir: str | Path | None
) -> tuple[list[torch.nn.Module], list[str]]:
    """The L0 CAP judges by name (``workers.models.load_model`` specs), loaded once per process.

    Returns ``(judges, missing)``: a default model whose weights live in the data directory and are absent
    there is skipped and named in ``missing``; any other load error is raised."""
    from workers.models import DEFAULT_MODELS, ModelLoadError, load_model

    out, missing = [], []
    for name in names:
        key = (str(name), str(device), str(data_dir))
        if key not in _JUDGE_CACHE:
            try:
                _JUDGE_CACHE[key] = load_model(str(name), device=device, data_dir=data_dir)
            except ModelLoadError:
                entry = DEFAULT_MODELS.get(str(name))
                if entry is None or not entry.external or entry.weights_path(data_dir).is_file():
                    raise
                missing.append(str(name))
                continue
        out.append(_JUDGE_CACHE[key])
    return out, missing


def _donors(data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The L0 CAP donor digits: the held-out slice of the MNIST test set (never a source image)."""
    from workers.attacks.l0_paste import donor_start
    from workers.data.datasets import load_mnist

    images, labels = load_mnist(data_dir, "test")
    start = donor_start(len(labels))
    return images[start:], labels[start:].astype(np.int64)


def source_limit(norm: str, n_test: int = 10000) -> int | None:
    """Source images of the ``norm`` study come from the first ``source_limit`` test images (None: all).

    L0 keeps the second half of the test set (``n_test`` images; MNIST: 5000-9999) for the CAP donors, so no
    donor digit is ever a stimulus."""
    if norm == "l0":
        from workers.attacks.l0_paste import donor_start

        return donor_start(n_test)
    return None


def choose_benign(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    seed: int,
    device: torch.device,
    batch_size: int = 500,
    limit: int | None = None,
) -> np.ndarray:
    """Indices of ``n`` test images drawn at random (seeded) among those the model classifies correctly.

    ``limit`` restricts the draw to the first ``limit`` images (see :func:`source_limit`)."""
    order = np.random.default_rng(seed).permutation(len(labels) if limit is None else min(limit, len(labels)))
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


def _write_png(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if img.ndim == 2 else "RGB"
    Image.fromarray(img, mode=mode).save(path, format="PNG", optimize=True)


def _load_spec(spec: str | torch.nn.Module, device: torch.device, arch: str | None = None) -> torch.nn.Module:
    if isinstance(spec, torch.nn.Module):
        return spec.to(device).eval()
    from workers.models import load_model

    return load_model(spec, device=device, arch=arch)


def make_stimuli(
    dataset: str,
    norm: str,
    model: str | torch.nn.Module,
    n: int,
    out_dir: str | Path,
    device: str | torch.device = "auto",
    seed: int = 0,
    second_model: str | torch.nn.Module | None = None,
    *,
    data_dir: str | Path | None = None,
    model_arch: str | None = None,
    second_model_arch: str | None = None,
    batch_size: int = 25,
    attack_params: dict[str, dict[str, Any]] | None = None,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    progress: bool = True,
    judges: Sequence[torch.nn.Module] | None = None,
    donor_images: np.ndarray | None = None,
    donor_labels: np.ndarray | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Make a study's stimulus set in ``out_dir`` and return a summary dict.

    ``model`` / ``second_model`` are nn.Modules or specs for ``workers.models.load_model`` (a registered default
    name, a checkpoint, a TorchScript file). ``second_model`` is needed for L0 (it judges the CAP images); it
    defaults to the dataset's judge model. ``attack_params`` maps ``"CAI"``/``"CAP"`` to parameter overrides.
    ``test_images``/``train_images`` override loading from ``data_dir``.
    """
    check_study(dataset, norm)
    if n <= 0:
        raise ValueError("n must be positive")
    dev = resolve_device(device)
    out = Path(out_dir)
    if out.exists() and (out / "manifest.csv").exists():
        raise FileExistsError(f"{out / 'manifest.csv'} already exists; choose an empty output folder")
    out.mkdir(parents=True, exist_ok=True)
    net = _load_spec(model, dev, model_arch)
    judge: torch.nn.Module | None = None
    if norm == "l0":
        if second_model is None:
            from workers.models import JUDGE_FOR_DATASET

            second_model = JUDGE_FOR_DATASET.get(dataset)
        if second_model is None:
            raise ValueError("the L0 study needs --second-model (it judges the CAP images)")
        judge = _load_spec(second_model, dev, second_model_arch)
    elif second_model is not None:
        judge = _load_spec(second_model, dev, second_model_arch)

    if test_images is None or test_labels is None:
        from workers.data.datasets import load_dataset

        test_images, test_labels = load_dataset(dataset, data_dir, "test")
    test_images = np.asarray(test_images)
    test_labels = np.asarray(test_labels).astype(np.int64)

    chosen = choose_benign(net, test_images, test_labels, n, seed, dev, limit=source_limit(norm, len(test_labels)))
    if norm == "l0" and (donor_images is None or donor_labels is None):
        start = source_limit(norm, len(test_labels)) or 0
        donor_images, donor_labels = test_images[start:], test_labels[start:]
    batches = [chosen[s : s + batch_size] for s in range(0, n, batch_size)]
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CONDITIONS_ALL}
    timings: dict[str, float] = {}
    total_steps = len(batches) * 3
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc=f"stimuli {dataset}/{norm}", unit="batch")
    try:
        for c_no, condition in enumerate(CONDITIONS_ALL):
            t0 = time.perf_counter()
            cai_l0 = None
            if condition == "CAP" and norm == "l0":
                cai_l0 = [int(r["metrics"]["l0"]) for r in results["CAI"] if r["success"]] or None
            for b_no, idx in enumerate(batches):
                batch_seed = int(seed) * 1000 + c_no * 100 + b_no
                rows = generate(
                    dataset,
                    norm,
                    condition,
                    test_images[idx],
                    test_labels[idx],
                    idx,
                    net,
                    batch_seed,
                    dev,
                    second_model=judge,
                    train_images=train_images,
                    train_labels=train_labels,
                    judges=judges,
                    donor_images=donor_images,
                    donor_labels=donor_labels,
                    data_dir=data_dir,
                    cai_l0=cai_l0,
                    attack_params=(attack_params or {}).get(condition),
                )
                results[condition].extend(rows)
                if bar is not None:
                    bar.update(1)
                if on_batch is not None:
                    on_batch(condition, b_no + 1, len(batches))
            timings[condition] = time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
    return write_set(out, dataset, norm, results, timings, seed=seed, device=str(dev))


def write_set(
    out: Path,
    dataset: str,
    norm: str,
    results: dict[str, list[dict[str, Any]]],
    timings: dict[str, float],
    *,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """Write PNGs, ``manifest.csv`` (successes), ``failures.csv`` and ``summary.json``; return the summary."""
    header = list(MANIFEST_HEAD) + list(METRIC_COLUMNS)
    n_ok: dict[str, int] = {}
    with (out / "manifest.csv").open("w", newline="") as fm, (out / "failures.csv").open("w", newline="") as ff:
        wm = csv.writer(fm)
        wf = csv.writer(ff)
        wm.writerow(header)
        wf.writerow(header)
        for condition in CONDITIONS_ALL:
            n_ok[condition] = 0
            for r in results.get(condition, []):
                name = f"{r['image_index']:05d}.png"
                rel = f"{condition}/{name}" if r["success"] else f"failed/{condition}/{name}"
                _write_png(r["image"], out / rel)
                row = [condition, r["image_index"], r["label"], rel] + [_cell(r["metrics"][k]) for k in METRIC_COLUMNS]
                (wm if r["success"] else wf).writerow(row)
                n_ok[condition] += int(r["success"])
    summary: dict[str, Any] = {
        "dataset": dataset,
        "norm": norm,
        "seed": seed,
        "device": device,
        "n": len(results.get("CB", [])),
        "out_dir": str(out),
        "manifest": str(out / "manifest.csv"),
        "failures": str(out / "failures.csv"),
        "conditions": {},
    }
    for condition in CONDITIONS_ALL:
        rows = results.get(condition, [])
        ok = [r for r in rows if r["success"]]
        entry: dict[str, Any] = {
            "attempted": len(rows),
            "succeeded": len(ok),
            "seconds": round(timings.get(condition, 0.0), 3),
            "seconds_per_image": round(timings.get(condition, 0.0) / max(1, len(rows)), 4),
        }
        for key in ("l0_frac", "l2", "linf", "ssim"):
            vals = [r["metrics"][key] for r in ok if r["metrics"][key] is not None]
            if vals and condition != "CB":
                entry[f"mean_{key}"] = float(np.mean(vals))
                entry[f"sd_{key}"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        if rows and rows[0]["metrics"].get("attack"):
            entry["attack"] = rows[0]["metrics"]["attack"]
            entry["params"] = json.loads(rows[0]["metrics"]["params"] or "null")
        summary["conditions"][condition] = entry
    summary["model_id"] = next((r["metrics"]["model_id"] for rs in results.values() for r in rs), None)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    logger.info("stimuli written to %s: %s", out, {c: n_ok[c] for c in CONDITIONS_ALL})
    return summary
