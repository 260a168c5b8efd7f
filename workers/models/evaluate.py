"""Clean and PGD-robust accuracy of a model, and the JSON model card written next to its weights."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

# PGD defaults of Madry et al.: MNIST 40 steps of 0.01 at 0.3, CIFAR-10 20 steps of 2/255 at 8/255.
EVAL_DEFAULTS: dict[str, dict[str, float]] = {
    "mnist": {"eps": 0.3, "steps": 40, "alpha": 0.01},
    "cifar10": {"eps": 8 / 255, "steps": 20, "alpha": 2 / 255},
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; raises ValueError for cuda without a GPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    *,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf PGD on the cross-entropy loss (Madry et al. 2018); returns adversarial images in [0, 1].

    ``model`` takes [0, 1] images. With ``random_start`` the start is uniform in the eps-ball (drawn from
    ``generator`` for reproducibility).
    """
    x = x.detach()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        delta = (noise * 2 - 1) * eps
    else:
        delta = torch.zeros_like(x)
    delta = ((x + delta).clamp_(0, 1) - x).requires_grad_(True)
    for _ in range(steps):
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += alpha * grad.sign()
            delta.clamp_(-eps, eps)
            delta.copy_((x + delta).clamp_(0, 1) - x)
    return (x + delta).detach()


def evaluate_model(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    steps: int,
    alpha: float,
    batch_size: int = 500,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Clean and PGD robust accuracy on [0, 1] ``images`` (NCHW float) with int64 ``labels``.

    Deterministic for a fixed ``seed`` on a given device. A sample counts as robust only if it is also
    correctly classified clean (the attack starts from a correct point, and misclassified ones stay wrong).
    """
    device = resolve_device(device)
    model = model.to(device).eval()
    # full fp32 (no TF32) so that the numbers are reproducible on other devices
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return _evaluate(model, images, labels, eps, steps, alpha, batch_size, seed, device, progress)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int, alpha: float,
    batch_size: int, seed: int, device: torch.device, progress: bool,
) -> dict[str, Any]:
    from tqdm import tqdm

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    clean_correct = robust_correct = 0
    n = len(labels)
    t0 = time.perf_counter()
    with tqdm(total=n, desc=f"PGD-{steps} eval", unit="img", disable=not progress) as bar:
        for i in range(0, n, batch_size):
            xb = images[i : i + batch_size].to(device)
            yb = labels[i : i + batch_size].to(device)
            with torch.no_grad():
                clean_ok = model(xb).argmax(1) == yb
            if steps > 0 and eps > 0:
                with torch.enable_grad():
                    adv = pgd_attack(model, xb, yb, eps, alpha, steps, random_start=True, generator=gen)
                with torch.no_grad():
                    robust_ok = (model(adv).argmax(1) == yb) & clean_ok
            else:
                robust_ok = clean_ok
            clean_correct += int(clean_ok.sum())
            robust_correct += int(robust_ok.sum())
            bar.update(len(yb))
    return {
        "n": n,
        "clean_correct": clean_correct,
        "robust_correct": robust_correct,
        "clean_accuracy": clean_correct / n if n else float("nan"),
        "robust_accuracy": robust_correct / n if n else float("nan"),
        "attack": {"name": "pgd-linf", "eps": eps, "steps": steps, "alpha": alpha, "random_start": True,
                   "restarts": 1, "seed": seed, "loss": "cross-entropy"},
        "eval_seconds": round(time.perf_counter() - t0, 2),
        "eval_device": str(device),
    }


def load_test_set(dataset: str, data_dir: str | os.PathLike[str] | None, n: int | None = None) -> tuple:
    """The lossless test images as ([0, 1] NCHW tensor, int64 labels, source description)."""
    from workers.data import load_cifar10, load_mnist
    from workers.models import images_to_tensor, labels_to_tensor

    if dataset == "mnist":
        x, y = load_mnist(data_dir, "test")
        source = "MNIST official test set (IDX)"
    elif dataset == "cifar10":
        x, y = load_cifar10(data_dir, "test")
        source = f"CIFAR-10 lossless test images (first {len(y)} of the official test set)"
    else:
        raise ValueError(f"unknown dataset {dataset!r}: expected mnist or cifar10")
    if n is not None:
        x, y = x[:n], y[:n]
        source += f", first {n}"
    return images_to_tensor(x), labels_to_tensor(y), source


def card_path_for(weights: str | os.PathLike[str]) -> Path:
    """The card sits next to the weights: ``foo.pt`` -> ``foo.json``."""
    return Path(weights).with_suffix(".json")


def device_description(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def write_card(
    weights: str | os.PathLike[str],
    evaluation: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the model card JSON next to ``weights``: the training card stored in the checkpoint, the
    evaluation, the sha256 of the weights file and the date."""
    from workers.models import read_checkpoint, sha256_file

    weights = Path(weights)
    ckpt = read_checkpoint(weights)
    train_card = dict(ckpt.get("card") or {}) if isinstance(ckpt, Mapping) else {}
    card: dict[str, Any] = {
        "card_format": "lpstudy-model-card/1",
        "weights_file": weights.name,
        "sha256": sha256_file(weights),
        "weights_bytes": weights.stat().st_size,
        "weights_dtype": _state_dtype(ckpt),
        "arch": ckpt.get("arch") if isinstance(ckpt, Mapping) else None,
        "dataset": ckpt.get("dataset") if isinstance(ckpt, Mapping) else None,
        "normalization": ckpt.get("normalization") if isinstance(ckpt, Mapping) else None,
        **train_card,
        "evaluation": dict(evaluation),
        "card_date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if extra:
        card.update(extra)
    path = Path(out) if out is not None else card_path_for(weights)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def _state_dtype(ckpt: Any) -> str | None:
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        return None
    dtypes = {str(v.dtype).replace("torch.", "") for v in ckpt["state_dict"].values() if v.is_floating_point()}
    return ",".join(sorted(dtypes))


def evaluate_file(
    weights: str | os.PathLike[str],
    dataset: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    eps: float | None = None,
    steps: int | None = None,
    alpha: float | None = None,
    n: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    write: bool = True,
    arch: str | None = None,
) -> dict[str, Any]:
    """Evaluate a weights file on the lossless test set and (with ``write``) write its model card.

    Defaults: the training eps from the checkpoint's card, else Madry's eps; PGD-40 (step 0.01) on MNIST and
    PGD-20 (step 2/255) on CIFAR-10, one random start.
    """
    from workers.models import load_model

    dev = resolve_device(device)
    model = load_model(weights, device=dev, arch=arch)
    dataset = dataset or model.dataset
    if dataset not in EVAL_DEFAULTS:
        raise ValueError(f"unknown dataset {dataset!r}: expected mnist or cifar10")
    if model.dataset is not None and model.dataset != dataset:
        raise ValueError(f"{weights} is a {model.dataset} model, not {dataset}")
    defaults = EVAL_DEFAULTS[dataset]
    train_eps = (model.card or {}).get("recipe", {}).get("eps") if model.card else None
    eps = float(eps if eps is not None else train_eps if train_eps is not None else defaults["eps"])
    steps = int(steps if steps is not None else defaults["steps"])
    if alpha is None:
        same = abs(eps - defaults["eps"]) < 1e-9 and steps == defaults["steps"]
        alpha = defaults["alpha"] if same else 2.5 * eps / max(steps, 1)
    x, y, source = load_test_set(dataset, data_dir, n)
    result = evaluate_model(
        model, x, y, eps=eps, steps=steps, alpha=alpha, batch_size=batch_size, seed=seed, device=dev,
        progress=progress,
    )
    result["test_data"] = source
    result["eval_device"] = device_description(dev)
    result["torch"] = torch.__version__
    if write:
        result["card_path"] = str(write_card(weights, {k: v for k, v in result.items() if k != "card_path"}))
    return result


def accuracy_on(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Clean accuracy of a [0, 1]-input model on uint8 images (CPU helper for tests)."""
    from workers.models import images_to_tensor

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch_size):
            pred = model(images_to_tensor(images[i : i + batch_size])).argmax(1).numpy()
            correct += int((pred == labels[i : i + batch_size]).sum())
    return correct / len(labels)
