"""Automated L0 CAP: change at most k pixels so that the digit looks like another digit.

The paper made its L0 CAP images by hand (mean 4.48% of pixels). Here, per benign image ``x`` of class ``y``:

1. ``k`` starts at a value drawn from ``k_values`` (CAI's L0 distribution, in pixels; so CAP follows CAI's
   L0) or at ``k_step``, and grows by ``k_step`` up to the budget (15% of the pixels);
2. for every other class ``t``, the training digits of class ``t`` (``pool_per_class`` of them) are ranked by
   how far they stay from ``x`` after copying their ``k`` most different pixels into ``x`` (the residual
   squared error): the best ``candidates_per_class`` make candidate images;
3. a candidate is accepted only if the attacked model *and* the second, independently trained model both
   predict ``t``; among accepted candidates of the smallest ``k``, the one with the lowest residual wins.

Copied pixels are training pixels, so the result is on the 8-bit grid and L0 is exact. If no ``k`` up to the
budget works, the image fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workers.attacks.base import AttackResult, register
from workers.attacks.common import predict
from workers.measures.budgets import L0_FRACTION, l0_max_pixels, to_uint8


def _pool(
    train_images: np.ndarray | torch.Tensor, train_labels: np.ndarray | torch.Tensor, per_class: int, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` training images of each class, as float ``[M, C, H, W]`` and labels."""
    imgs = torch.as_tensor(np.asarray(train_images))
    labels = torch.as_tensor(np.asarray(train_labels)).long()
    if imgs.dtype == torch.uint8:
        imgs = imgs.float() / 255.0
    if imgs.dim() == 3:
        imgs = imgs.unsqueeze(1)
    elif imgs.dim() == 4 and imgs.shape[-1] in (1, 3) and imgs.shape[1] not in (1, 3):
        imgs = imgs.permute(0, 3, 1, 2)
    keep = []
    for c in range(n_classes):
        keep.append((labels == c).nonzero().squeeze(1)[:per_class])
    idx = torch.cat(keep)
    return imgs[idx].contiguous(), labels[idx]


@register(
    "l0_cap",
    "l0",
    ("CAP",),
    default=False,
    defaults={"k_step": 4, "max_fraction": L0_FRACTION, "candidates_per_class": 8, "pool_per_class": 1000},
)
def l0_cap(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    condition: str = "CAP",
    generator: torch.Generator | None = None,
    second_model: torch.nn.Module | None = None,
    train_images: np.ndarray | torch.Tensor | None = None,
    train_labels: np.ndarray | torch.Tensor | None = None,
    k_values: list[int] | np.ndarray | None = None,
    reference_l0: list[int] | np.ndarray | None = None,
    k_step: int = 4,
    max_fraction: float = L0_FRACTION,
    candidates_per_class: int = 8,
    pool_per_class: int = 1000,
    n_classes: int = 10,
    **_: Any,
) -> AttackResult:
    """Automated L0 CAP on ``x`` (``[N, C, H, W]``); needs training images (``train_images``, ``train_labels``)."""
    if condition != "CAP":
        raise ValueError("l0_cap makes CAP stimuli only")
    if k_values is None:
        k_values = reference_l0
    if train_images is None or train_labels is None:
        raise ValueError("l0_cap needs the training images and labels (train_images, train_labels)")
    x = x.detach()
    dev = x.device
    y = y.to(dev).long()
    n, c, h, w = x.shape
    pool, pool_y = _pool(train_images, train_labels, pool_per_class, n_classes)
    pool = pool.to(dev, x.dtype)
    pool_y = pool_y.to(dev)
    if pool.shape[1:] != x.shape[1:]:
        raise ValueError(f"training images {tuple(pool.shape[1:])} do not match the batch {tuple(x.shape[1:])}")
    k_max = l0_max_pixels(h, w, max_fraction)
    if k_values is not None and len(k_values) > 0:
        kv = torch.as_tensor(np.asarray(k_values, dtype=np.int64))
        pick = torch.randint(0, kv.numel(), (n,), generator=generator)
        k_start = kv[pick].clamp(1, k_max).tolist()
    else:
        k_start = [min(k_step, k_max)] * n
    pool_flat = pool.flatten(2)  # [M, C, HW]
    adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=dev)
    target = torch.full((n,), -1, dtype=torch.long, device=dev)
    iterations = torch.zeros(n, dtype=torch.long, device=dev)
    k_used = torch.zeros(n, dtype=torch.long, device=dev)
    notes = [""] * n
    for i in range(n):
        xi = x[i].flatten(1)  # [C, HW]
        sq = ((pool_flat - xi.unsqueeze(0)) ** 2).sum(1)  # [M, HW] per-pixel squared difference
        order = sq.argsort(dim=1, descending=True)
        sorted_sq = sq.gather(1, order)
        total = sq.sum(1)
        csum = sorted_sq.cumsum(1)
        others = pool_y != y[i]
        ks = list(range(int(k_start[i]), k_max + 1, k_step))
        if not ks or ks[-1] != k_max:
            ks.append(k_max)
        done = False
        for step_no, k in enumerate(ks, start=1):
            resid = total - csum[:, k - 1]
            resid = torch.where(others, resid, torch.inf)
            cand_idx = []
            for t in range(n_classes):
                if t == int(y[i]):
                    continue
                rt = torch.where(pool_y == t, resid, torch.inf)
                m = min(candidates_per_class, int((pool_y == t).sum()))
                if m == 0:
                    continue
                cand_idx.append(rt.topk(m, largest=False).indices)
            if not cand_idx:
                break
            cidx = torch.cat(cand_idx)
            pix = order[cidx, :k]  # [K, k]
            cands = xi.unsqueeze(0).repeat(cidx.numel(), 1, 1)  # [K, C, HW]
            src = pool_flat[cidx]
            pix_c = pix.unsqueeze(1).expand(-1, c, -1)
            cands.scatter_(2, pix_c, src.gather(2, pix_c))
            cands = cands.view(-1, c, h, w)
            t_c = pool_y[cidx]
            ok = predict(model, cands) == t_c
            if second_model is not None:
                ok &= predict(second_model, cands) == t_c
            if bool(ok.any()):
                r_c = torch.where(ok, resid[cidx], torch.inf)
                j = int(r_c.argmin())
                adv[i] = cands[j]
                success[i] = True
                target[i] = t_c[j]
                iterations[i] = step_no
                k_used[i] = k
                done = True
                break
        if not done:
            iterations[i] = len(ks)
            notes[i] = (
                "no training digit within the L0 budget fooled both models"
                if bool(others.any())
                else "no training digit of another class"
            )
    return AttackResult(
        adv_u8=to_uint8(adv),
        success=success,
        target=target,
        iterations=iterations,
        notes=notes,
        extra={"k": k_used},
    )
