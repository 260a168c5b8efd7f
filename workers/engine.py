"""The worker's view of the stimulus engine: predictions, and one batch of stimuli for a condition."""

from __future__ import annotations

from pathlib import Path
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
    data_dir: Path | None = None,
    cai_l0: list[int] | None = None,
) -> list[dict[str, Any]]:
    """One dict per source image: image_index, label, image (uint8), success, reason, metrics (flat)."""
    if len(image_indices) == 0:
        return []
    from workers.make import generate

    results = generate(
        dataset,
        norm,
        condition,
        images,
        labels,
        list(image_indices),
        model,
        seed,
        device,
        second_model=second_model,
        data_dir=data_dir,
        cai_l0=cai_l0 or None,
    )
    out = []
    for r in results:
        metrics = dict(r["metrics"])
        success = bool(r["success"])
        out.append(
            {
                "image_index": int(r["image_index"]),
                "label": int(r["label"]),
                "image": r["image"],
                "success": success,
                "reason": metrics.get("note") or ("" if success else "attack failed"),
                "metrics": metrics,
            }
        )
    return out
