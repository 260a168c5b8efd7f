"""The worker's view of the stimulus engine: predictions and one batch of stimuli for a condition."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_tensor(images: np.ndarray, device: str) -> torch.Tensor:
    """uint8 [N,H,W] or [N,H,W,C] -> float [N,C,H,W] in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32) / 255.0
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def predict(model: Any, images: np.ndarray, device: str) -> np.ndarray:
    model.eval()
    return model(to_tensor(images, device)).argmax(1).cpu().numpy()


@torch.no_grad()
def _benign(
    model: Any, images: np.ndarray, labels: np.ndarray, indices: list[int], seed: int, device: str
) -> list[dict[str, Any]]:
    probs = torch.softmax(model(to_tensor(images, device)).float(), 1).cpu().numpy()
    out = []
    for img, lab, idx, p in zip(images, labels, indices, probs, strict=True):
        pred = int(p.argmax())
        out.append(
            {
                "image_index": int(idx),
                "label": int(lab),
                "image": img,
                "success": True,
                "metrics": {
                    "l0": 0,
                    "l0_frac": 0.0,
                    "l2": 0.0,
                    "linf": 0.0,
                    "ssim": 1.0,
                    "model_pred": pred,
                    "model_conf": round(float(p[pred]), 6),
                    "attack": "benign",
                    "seed": seed,
                    "model_id": model.model_id,
                },
            }
        )
    return out


def generate_batch(
    *,
    dataset: str,
    norm: str,
    condition: str,
    images: np.ndarray,
    labels: np.ndarray,
    image_indices: list[int],
    model: Any,
    second_model: Any,
    seed: int,
    device: str,
) -> list[dict[str, Any]]:
    """One dict per source image: image_index, label, image (uint8), success, reason, metrics (flat)."""
    if len(image_indices) == 0:
        return []
    model.eval()
    if condition == "CB":
        return _benign(model, images, labels, image_indices, seed, device)
    from workers.make import generate

    results = generate(
        dataset=dataset,
        norm=norm,
        condition=condition,
        images=images,
        labels=labels,
        image_indices=list(image_indices),
        model=model,
        seed=seed,
        device=device,
        second_model=second_model,
    )
    out = []
    for r in results:
        metrics = dict(r.get("metrics", {}))
        metrics.setdefault("model_id", model.model_id)
        success = bool(r.get("success", metrics.get("success", True)))
        out.append(
            {
                "image_index": int(r["image_index"]),
                "label": int(r["label"]),
                "image": r.get("image"),
                "success": success,
                "reason": r.get("reason") or metrics.get("reason") or ("" if success else "attack failed"),
                "metrics": metrics,
            }
        )
    return out
