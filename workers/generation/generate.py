"""One condition's stimuli for a batch of source images, through the attack registry.

:func:`generate` knows no attack by name: it looks the attack up (the config's choice or the norm's default),
gives it the inputs its spec declares (``uses``), and judges every result the same way, on the stored 8-bit
image: the attack's own verdict, the budget (CAI, CAP), the model's prediction (CB: the true label; CAI, CAP:
another one) and, for attacks that use judges, every judge seeing the same class as the model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.design import ADVERSARIAL, CONDITIONS, check_study
from workers.attacks import attack_for, get_attack
from workers.measures.budgets import Budget, budget_ok
from workers.measures.metrics import image_metrics
from workers.models.wrapper import images_to_tensor

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
    "judges_agree",
    "iterations",
    "seconds",
    "seed",
    "attack",
    "params",
    "model_id",
    "second_model_id",
    "norm",
    "budget",
    "source_position",
    "note",
)
# Metrics that are provenance, stored in the stimulus's own columns.
PROVENANCE = ("attack", "params", "seed", "model_id")


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


def to_numpy_image(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu()
    if a.shape[0] == 1:
        return a[0].numpy().astype(np.uint8)
    return a.permute(1, 2, 0).numpy().astype(np.uint8)


def model_id_of(model: torch.nn.Module | None) -> str | None:
    if model is None:
        return None
    return str(getattr(model, "model_id", None) or type(model).__name__)


@torch.no_grad()
def predict_u8(
    model: torch.nn.Module, images_u8: list[np.ndarray], device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and confidence (softmax max) of ``model`` on 8-bit images, exactly as stored."""
    x = images_to_tensor(np.stack(images_u8), device)
    p = torch.softmax(model(x).float(), dim=1)
    conf, pred = p.max(1)
    return pred.cpu().numpy(), conf.cpu().numpy()


def _resources(
    uses: Sequence[str],
    name: str,
    dataset: str,
    dev: torch.device,
    judges: list[torch.nn.Module],
    train: tuple[np.ndarray, np.ndarray] | None,
    donors: tuple[np.ndarray, np.ndarray] | None,
    reference_l0: Sequence[int] | None,
    data_dir: str | Path | None,
) -> dict[str, Any]:
    """The inputs an attack's spec declares, by name."""
    out: dict[str, Any] = {}
    if ("judges" in uses or "second_model" in uses) and not judges:
        raise ValueError(f"attack {name!r} needs judge models ([generation] judges, or --second-model)")
    if "judges" in uses:
        out["judges"] = judges
    if "second_model" in uses:
        out["second_model"] = judges[0]
    if "train_images" in uses or "train_labels" in uses:
        if train is None:
            from workers.data.datasets import load_dataset

            train = load_dataset(dataset, data_dir, "train")
        out["train_images"], out["train_labels"] = train[0], np.asarray(train[1]).astype(np.int64)
    if "donor_images" in uses or "donor_labels" in uses:
        if donors is None:
            raise ValueError(f"attack {name!r} needs donor images (the test images it reserves)")
        out["donor_images"], out["donor_labels"] = donors[0], np.asarray(donors[1]).astype(np.int64)
    if "reference_l0" in uses:
        out["reference_l0"] = list(reference_l0) if reference_l0 else None
    return out


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
    attack: str | None = None,
    attack_params: dict[str, Any] | None = None,
    judges: Sequence[torch.nn.Module] | None = None,
    second_model: torch.nn.Module | None = None,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    donor_images: np.ndarray | None = None,
    donor_labels: np.ndarray | None = None,
    reference_l0: Sequence[int] | None = None,
    cai_l0: Sequence[int] | None = None,
    data_dir: str | Path | None = None,
    max_batch: int | None = None,
    positions: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Make ``condition`` stimuli (``CB``, ``CAI`` or ``CAP``) for a batch of source test images.

    ``images`` are uint8 ``[N, H, W]`` (MNIST) or ``[N, H, W, 3]`` (CIFAR-10); ``labels`` the true labels;
    ``image_indices`` their indices in the test set. ``model`` takes [0, 1] NCHW floats and owns its
    normalisation. ``attack`` names a registered attack (default: the norm's default for ``condition``) and
    ``attack_params`` its parameters (checked against its spec: an unknown name is a ValueError). ``judges``
    (or the older ``second_model``) are the judge models, for attacks whose spec uses them. The attack runs in
    chunks of at most ``max_batch`` images (the device's size; see ``workers.generation.sizing``).

    Returns one dict per image: ``condition``, ``image_index``, ``label``, ``image`` (uint8 HW / HWC, the stimulus
    as it is to be stored), ``success`` (True only when the stimulus may enter the pool) and ``metrics`` (a flat
    dict with the keys of ``METRIC_COLUMNS``).
    """
    check_study(dataset, norm)
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose one of {CONDITIONS}")
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    labels_arr = np.asarray(labels, dtype=np.int64)
    idx_arr = np.asarray(image_indices, dtype=np.int64)
    if not (len(images) == len(labels_arr) == len(idx_arr)):
        raise ValueError("images, labels and image_indices must have the same length")
    if len(images) == 0:
        return []
    impl = get_attack(attack) if attack else attack_for(norm, condition)
    if not impl.spec.serves(norm, condition):
        raise ValueError(f"attack {impl.name!r} does not make {condition} stimuli for the {norm} study")
    params = impl.spec.validate_params(attack_params)  # pydantic's ValidationError is a ValueError
    dev = resolve_device(device)
    model = model.to(dev).eval()
    judge_list = [j.to(dev).eval() for j in (judges if judges is not None else [second_model] if second_model else [])]
    uses = impl.spec.uses
    donors = (donor_images, donor_labels) if donor_images is not None and donor_labels is not None else None
    train = (train_images, train_labels) if train_images is not None and train_labels is not None else None
    extra_kw = _resources(uses, impl.name, dataset, dev, judge_list, train, donors, reference_l0 or cai_l0, data_dir)
    judging = [j for j in judge_list if j is not model] if ("judges" in uses or "second_model" in uses) else []

    generator = torch.Generator().manual_seed(int(seed))
    n = len(images)
    step = max(1, int(max_batch)) if max_batch else n
    adv_imgs: list[np.ndarray] = []
    attack_ok: list[bool] = []
    targets: list[int | None] = []
    iters: list[int] = []
    ssim_opt: list[float | None] = []
    notes: list[str] = []
    extras: list[dict[str, Any]] = []
    recorded: dict[str, Any] = {}
    t0 = time.perf_counter()
    for s in range(0, n, step):
        x = images_to_tensor(images[s : s + step], dev)
        y = torch.from_numpy(labels_arr[s : s + step]).to(dev)
        res = impl.fn(model, x, y, condition=condition, generator=generator, **params, **extra_kw)
        m = x.shape[0]
        adv_imgs += [to_numpy_image(res.adv_u8[i]) for i in range(m)]
        attack_ok += [bool(v) for v in res.success.cpu()]
        targets += [int(t) if int(t) >= 0 else None for t in res.target.cpu()]
        iters += [int(i) for i in res.iterations.cpu()]
        ssim_opt += [None] * m if res.ssim_opt is None else [float(v) for v in res.ssim_opt.cpu()]
        notes += list(res.notes) or [""] * m
        extras += [{k: _scalar(v[i]) for k, v in res.extra.items()} for i in range(m)]
        recorded.update(res.params)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = (time.perf_counter() - t0) / n

    pred, conf = predict_u8(model, adv_imgs, dev)
    judge_preds = [predict_u8(j, adv_imgs, dev)[0] for j in judging]
    budget = Budget(norm)  # type: ignore[arg-type]
    params_json = json.dumps({**params, **recorded}, sort_keys=True, default=str)
    base: dict[str, Any] = dict.fromkeys(METRIC_COLUMNS)
    base.update({"seed": int(seed), "model_id": model_id_of(model), "norm": norm, "budget": budget.describe()})
    out: list[dict[str, Any]] = []
    for i in range(n):
        m = dict(base)
        m.update(image_metrics(images[i], adv_imgs[i]))
        m["l0"] = int(m["l0"])
        m.pop("ssim_reflect", None)
        if impl.ssim_variant is not None:
            v = ssim_opt[i]
            m["ssim_opt"] = v if v is not None and not math.isnan(v) else None
            m["ssim_variant"] = impl.ssim_variant
        for k, v in extras[i].items():
            m.setdefault(k, v)
        m.update(
            model_pred=int(pred[i]),
            model_conf=float(conf[i]),
            target=targets[i],
            iterations=iters[i],
            seconds=seconds,
            attack=impl.name,
            params=params_json,
            source_position=int(positions[i]) if positions is not None else None,
        )
        if judge_preds:
            m["second_model_id"] = model_id_of(judging[0])
            m["second_pred"] = int(judge_preds[0][i])
            m["judges_agree"] = all(int(jp[i]) == int(pred[i]) for jp in judge_preds)
        note = notes[i] if i < len(notes) else ""
        in_budget = budget_ok(norm, images[i], adv_imgs[i], budget) if condition in ADVERSARIAL else True
        wanted = (
            (int(pred[i]) != int(labels_arr[i])) if condition in ADVERSARIAL else int(pred[i]) == int(labels_arr[i])
        )
        ok = attack_ok[i] and in_budget and wanted and m["judges_agree"] is not False
        if attack_ok[i] and not ok:
            if not in_budget:
                note = "budget broken after rounding"
            elif not wanted:
                note = (
                    "not misclassified on the stored image"
                    if condition in ADVERSARIAL
                    else "the model misclassifies the source image"
                )
            else:
                note = "a judge does not see the model's class on the stored image"
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


def _scalar(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
