"""``NormalizedModel``: callers pass [0, 1] NCHW float images, the wrapper applies the normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


class NormalizedModel(nn.Module):
    """Wraps a classifier so that it takes [0, 1] images (``[N, C, H, W]`` float) and returns logits.

    Attributes recorded with every stimulus: ``model_id`` (``name@sha256[:12]`` of the weights file),
    ``name``, ``dataset``, ``arch`` and ``card`` (the model card as a dict, or None).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        name: str = "model",
        model_id: str | None = None,
        dataset: str | None = None,
        arch: str | None = None,
        card: dict[str, Any] | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError("mean and std need the same number of channels")
        if any(s <= 0 for s in std):
            raise ValueError("std must be positive")
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.name = name
        self.model_id = model_id or name
        self.dataset = dataset
        self.arch = arch
        self.card = card
        self.input_shape = input_shape

    @property
    def normalization(self) -> dict[str, list[float]]:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)

    def extra_repr(self) -> str:
        return f"model_id={self.model_id!r}, dataset={self.dataset!r}, arch={self.arch!r}"

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Predicted labels for [0, 1] images, in batches, without gradients."""
        device = self.mean.device
        preds = [self(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def images_to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 images ``[N, H, W]`` (grey) or ``[N, H, W, C]`` (HWC) -> float ``[N, C, H, W]`` in [0, 1]."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {arr.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.float().div_(255.0)


def labels_to_tensor(labels: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    return torch.from_numpy(np.asarray(labels).astype(np.int64)).to(device)
