"""The training data: the training split as uint8 tensors, and the on-device augmentation (CIFAR-10)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workers.models.train.config import TrainConfig


def load_train_data(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, str]:
    """uint8 NCHW images and int64 labels of the training split (CPU tensors) and a source description."""
    import numpy as np

    from workers.data import load_cifar10, load_mnist

    if cfg.dataset == "mnist":
        x, y = load_mnist(cfg.data_dir, "train")
        x = x[:, None]
        source = "MNIST official train set (IDX)"
    else:
        x, y = load_cifar10(cfg.data_dir, "train")
        x = x.transpose(0, 3, 1, 2)
        source = f"CIFAR-10 train split, {len(y)} images"
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)), source


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip, per sample, on the tensor's device."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[idx_n, idx_c, rows, cols]
    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)
