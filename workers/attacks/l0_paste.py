"""L0 CAP: paste the most telling pixels of another digit, judged by an ensemble of independent models.

The paper's L0 CAP images were made by hand: pixels of the benign digit changed until it plainly showed
another digit, at a mean of 4.48% of the pixels (SD 2.45%), within the 15% budget. This attack automates that:

1. **Size first.** Per image a pixel count ``k`` is drawn (seeded) from a gamma distribution with the paper's
   mean and SD (``mean_fraction``, ``sd_fraction``), clamped to ``[min_fraction, max_fraction]``. The attack
   tries ``k`` first and grows it by ``k_step`` only when nothing at ``k`` convinces the judges, so the set
   follows the paper's distribution wherever the digits allow it.
2. **Donor digits.** For every other class ``t``, the donor digits of class ``t`` are ranked by the squared
   error left after copying their ``k`` most different pixels into the image (the closer the result is to a
   real ``t``, the better); the best ``candidates_per_class`` of each class become candidate images. Donors
   come from the second half of the test set (``donor_start``; MNIST: test images 5000-9999), which never
   supplies stimuli and which no judge was trained on (the attack's spec reserves that half, so the study's
   candidate order never includes it).
3. **Judges.** A candidate is accepted only when *every* judge (the attacked model plus at least two models
   of other architectures; ``judges``) predicts ``t`` with a softmax probability of at least ``confidence``.
   Among the accepted candidates, the lowest residual wins.

Pasted pixels are donor pixels (8-bit values), so the stored PNG is exactly the image judged. If no ``k`` up
to the budget convinces every judge, the image fails (and, with complete triples, is replaced).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from workers.attacks.base import AttackResult, register
from workers.measures.budgets import L0_FRACTION, l0_max_pixels, to_uint8

# The donor pool is the second half of the test set (MNIST: [5000, 10000)); L0 source images come from the first.
DONOR_SLICE = slice(5000, 10000)


def donor_start(n_test: int) -> int:
    """The first test index of the donor pool for a test set of ``n_test`` images (its second half)."""
    return n_test // 2


PAPER_MEAN_FRACTION = 0.0448
PAPER_SD_FRACTION = 0.0245
MIN_JUDGES = 3


def as_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W]`` / ``[N, 1, H, W]`` (or floats in [0, 1]) as float ``[N, 1, H, W]``."""
    t = torch.as_tensor(np.asarray(images))
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    if t.dim() == 3:
        t = t.unsqueeze(1)
    return t.float().contiguous()


def draw_sizes(
    n: int,
    h: int,
    w: int,
    generator: torch.Generator | None,
    mean_fraction: float,
    sd_fraction: float,
    min_fraction: float,
    max_fraction: float,
) -> torch.Tensor:
    """``n`` pixel counts from a gamma distribution with the given mean and SD (as fractions of ``h * w``)."""
    shape = (mean_fraction / sd_fraction) ** 2
    scale = sd_fraction**2 / mean_fraction
    # torch's Gamma sampler takes no generator: draw from uniforms through numpy's seeded gamma instead.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    frac = np.random.default_rng(seed).gamma(shape, scale, size=n)
    k = np.rint(frac * h * w).astype(np.int64)
    lo = max(1, int(round(min_fraction * h * w)))
    hi = l0_max_pixels(h, w, max_fraction)
    return torch.from_numpy(np.clip(k, lo, hi))


@torch.no_grad()
def _probs(judges: Sequence[torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities of every judge, ``[J, N, classes]``."""
    return torch.stack([torch.softmax(j(x).float(), dim=1) for j in judges])


@register(
    "l0_paste",
    "l0",
    ("CAP",),
    defaults={
        "mean_fraction": PAPER_MEAN_FRACTION,
        "sd_fraction": PAPER_SD_FRACTION,
        "min_fraction": 0.015,
        "max_fraction": L0_FRACTION,
        "k_step": 4,
        "confidence": 0.5,
        "candidates_per_class": 8,
        "min_judges": MIN_JUDGES,
    },
)
def l0_paste(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    condition: str = "CAP",
    generator: torch.Generator | None = None,
    judges: Sequence[torch.nn.Module] | None = None,
    donor_images: np.ndarray | torch.Tensor | None = None,
    donor_labels: np.ndarray | torch.Tensor | None = None,
    mean_fraction: float = PAPER_MEAN_FRACTION,
    sd_fraction: float = PAPER_SD_FRACTION,
    min_fraction: float = 0.015,
    max_fraction: float = L0_FRACTION,
    k_step: int = 4,
    confidence: float = 0.5,
    candidates_per_class: int = 8,
    n_classes: int = 10,
    min_judges: int = MIN_JUDGES,
    **_: Any,
) -> AttackResult:
    """L0 CAP on grey images ``x`` (``[N, 1, H, W]``); ``judges`` are the other models of the ensemble."""
    if condition != "CAP":
        raise ValueError("l0_paste makes CAP stimuli only")
    if donor_images is None or donor_labels is None:
        raise ValueError("l0_paste needs donor digits (donor_images, donor_labels)")
    ensemble = [model, *[j for j in (judges or []) if j is not model]]
    if min_judges < 2:
        raise ValueError("min_judges must be at least 2 (the attacked model and one other)")
    if len(ensemble) < min_judges:
        raise ValueError(
            f"l0_paste needs at least {min_judges} judges (the attacked model and {min_judges - 1} others)"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    if not 0.0 < min_fraction <= max_fraction <= L0_FRACTION:
        raise ValueError(f"need 0 < min_fraction <= max_fraction <= {L0_FRACTION}")
    x = x.detach()
    dev = x.device
    y = y.to(dev).long()
    n, c, h, w = x.shape
    donors = as_images(donor_images).to(dev, x.dtype)
    donor_y = torch.as_tensor(np.asarray(donor_labels)).long().to(dev)
    if donors.shape[1:] != x.shape[1:]:
        raise ValueError(f"donor digits {tuple(donors.shape[1:])} do not match the batch {tuple(x.shape[1:])}")
    k_max = l0_max_pixels(h, w, max_fraction)
    k_first = draw_sizes(n, h, w, generator, mean_fraction, sd_fraction, min_fraction, max_fraction).tolist()
    d_flat = donors.flatten(1)
    adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=dev)
    target = torch.full((n,), -1, dtype=torch.long, device=dev)
    tries = torch.zeros(n, dtype=torch.long, device=dev)
    k_used = torch.zeros(n, dtype=torch.long, device=dev)
    k_drawn = torch.tensor(k_first, dtype=torch.long, device=dev)
    min_conf = torch.full((n,), float("nan"), device=dev)
    notes = [""] * n
    by_class = [(donor_y == t).nonzero().squeeze(1) for t in range(n_classes)]
    for i in range(n):
        xi = x[i].flatten()
        sq = (d_flat - xi) ** 2  # [M, HW]
        order = sq.argsort(dim=1, descending=True, stable=True)
        csum = sq.gather(1, order).cumsum(1)
        total = sq.sum(1)
        ks = list(range(int(k_first[i]), k_max + 1, k_step))
        if ks[-1] != k_max:
            ks.append(k_max)
        for step_no, k in enumerate(ks, start=1):
            resid = total - csum[:, k - 1]
            parts = [
                by_class[t][
                    resid[by_class[t]].topk(min(candidates_per_class, by_class[t].numel()), largest=False).indices
                ]
                for t in range(n_classes)
                if t != int(y[i]) and by_class[t].numel() > 0
            ]
            if not parts:
                break
            cidx = torch.cat(parts)
            pix = order[cidx, :k]
            cands = xi.unsqueeze(0).repeat(cidx.numel(), 1)
            cands.scatter_(1, pix, d_flat[cidx].gather(1, pix))
            t_c = donor_y[cidx]
            p = _probs(ensemble, cands.view(-1, c, h, w))  # [J, K, classes]
            p_t = p.gather(2, t_c.view(1, -1, 1).expand(p.shape[0], -1, 1)).squeeze(2)  # [J, K]
            agree = (p.argmax(2) == t_c).all(0) & (p_t >= confidence).all(0)
            tries[i] = step_no
            if bool(agree.any()):
                j = int(torch.where(agree, resid[cidx], torch.inf).argmin())
                adv[i] = cands[j].view(c, h, w)
                success[i] = True
                target[i] = t_c[j]
                k_used[i] = k
                min_conf[i] = p_t[:, j].min()
                break
        if not bool(success[i]):
            others = any(by_class[t].numel() > 0 for t in range(n_classes) if t != int(y[i]))
            notes[i] = (
                f"no donor digit within the L0 budget convinced all {len(ensemble)} judges"
                if others
                else "no donor digit of another class"
            )
    return AttackResult(
        adv_u8=to_uint8(adv),
        success=success,
        target=target,
        iterations=tries,
        notes=notes,
        extra={"k": k_used, "k_drawn": k_drawn, "min_judge_conf": min_conf},
        params={"judges": [str(getattr(j, "model_id", type(j).__name__)) for j in ensemble]},
    )
