"""Automated L0 CAP: copies at most k pixels of a target-class training digit; both models must agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workers.attacks.l0_cap import l0_cap
from workers.measures.budgets import budget_ok


class Prototype(nn.Module):
    """Classifies by the nearest of ten fixed prototype digits (class c = a bar at row 2c+4)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        protos = torch.zeros(10, 1, 28, 28)
        for c in range(10):
            protos[c, 0, 2 * c + 4 : 2 * c + 7, 4:24] = 1.0
        self.register_buffer("protos", protos)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x.unsqueeze(1) - self.protos.unsqueeze(0)) ** 2).flatten(2).sum(2)
        return -self.scale * d


def _digits(labels: list[int], noise_seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(noise_seed)
    imgs = np.zeros((len(labels), 28, 28), np.uint8)
    for i, c in enumerate(labels):
        imgs[i, 2 * c + 4 : 2 * c + 7, 4:24] = 255
        imgs[i] = np.where(rng.random((28, 28)) < 0.02, 128, imgs[i])
    return imgs, np.asarray(labels, np.uint8)


def test_cap_changes_the_class_within_budget() -> None:
    train_x, train_y = _digits([c for c in range(10) for _ in range(5)], 0)
    test_x, test_y = _digits([0, 3, 7, 9], 1)
    model, judge = Prototype(), Prototype(2.0)
    x = torch.from_numpy(test_x).float().div(255).unsqueeze(1)
    y = torch.from_numpy(test_y.astype(np.int64))
    res = l0_cap(
        model,
        x,
        y,
        second_model=judge,
        train_images=train_x,
        train_labels=train_y,
        k_values=[40],
        generator=torch.Generator().manual_seed(0),
    )
    assert bool(res.success.all())
    with torch.no_grad():
        pred = model(res.adv_u8.float() / 255).argmax(1)
        pred2 = judge(res.adv_u8.float() / 255).argmax(1)
    assert torch.equal(pred, res.target) and torch.equal(pred2, res.target)
    assert bool((res.target != y).all())
    for i in range(4):
        assert budget_ok("l0", test_x[i], res.adv_u8[i, 0].numpy())
        assert int((res.adv_u8[i, 0].numpy() != test_x[i]).sum()) <= int(res.extra["k"][i])


def test_cap_fails_when_the_judge_disagrees() -> None:
    train_x, train_y = _digits([c for c in range(10) for _ in range(3)], 0)
    test_x, test_y = _digits([2, 5], 1)

    class Stubborn(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(x.shape[0], 10) + 0 * x.sum()
            out[:, 2] = 1.0
            return out

    x = torch.from_numpy(test_x).float().div(255).unsqueeze(1)
    y = torch.from_numpy(test_y.astype(np.int64))
    res = l0_cap(Prototype(), x, y, second_model=Stubborn(), train_images=train_x, train_labels=train_y, k_step=30)
    # the judge always says 2: image 0 (a 2) can never be accepted, image 1 only with target 2
    assert not bool(res.success[0])
    assert "both models" in res.notes[0]
    if res.success[1]:
        assert int(res.target[1]) == 2


def test_needs_training_digits() -> None:
    with pytest.raises(ValueError):
        l0_cap(Prototype(), torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
