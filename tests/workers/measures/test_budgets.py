"""Exact budgets after 8-bit rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.attacks.wang import project_sphere_box
from workers.measures.budgets import (
    Budget,
    budget_ok,
    distances,
    l0_max_pixels,
    linf_levels,
    quantize,
    quantize_l2,
    quantize_linf,
    to_uint8,
)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy() if t.shape[0] == 3 else t[0].numpy()


def _benign(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 32, 32, generator=g) * 255).round().to(torch.uint8)


def test_constants() -> None:
    assert l0_max_pixels(28, 28) == 117
    assert linf_levels(0.1) == 25
    assert "15%" in Budget("l0").describe()


@pytest.mark.parametrize("push", [0.0, 0.49, -0.49])
def test_l2_band_holds_after_rounding(push: float) -> None:
    """Even when every pixel sits next to a rounding boundary in the bad direction, the band holds."""
    b = _benign(16, 0)
    x = b.double() / 255
    g = torch.Generator().manual_seed(1)
    y = project_sphere_box(x, x + torch.randn(x.shape, generator=g, dtype=torch.float64), 6.0)
    y = (y + push / 255 * torch.sign(y - x)).clamp(0, 1)
    q = quantize_l2(b, y)
    for i in range(16):
        d = distances(_hwc(b[i]), _hwc(q[i]))
        assert 5.99 <= d["l2"] <= 6.01, d
        assert budget_ok("l2", _hwc(b[i]), _hwc(q[i]))


def test_l2_sparse_perturbation_and_grey() -> None:
    g = torch.Generator().manual_seed(2)
    b = (torch.rand(8, 1, 28, 28, generator=g) * 255).round().to(torch.uint8)
    x = b.double() / 255
    mask = torch.rand(x.shape, generator=g) < 0.3
    y = project_sphere_box(x, x + mask * torch.randn(x.shape, generator=g, dtype=torch.float64), 6.0)
    q = quantize("l2", b, y)
    assert all(budget_ok("l2", _hwc(b[i]), _hwc(q[i])) for i in range(8))


def test_linf_never_exceeds_eps_after_rounding() -> None:
    b = _benign(8, 3)
    x = b.double() / 255
    g = torch.Generator().manual_seed(4)
    # exactly at +-eps, where nearest rounding would reach 25.5 levels
    y = (x + 0.1 * torch.sign(torch.randn(x.shape, generator=g, dtype=torch.float64))).clamp(0, 1)
    q = quantize_linf(b, y)
    for i in range(8):
        assert distances(_hwc(b[i]), _hwc(q[i]))["linf"] <= 0.1
        assert budget_ok("linf", _hwc(b[i]), _hwc(q[i]))
    assert int((q.int() - b.int()).abs().max()) == 25


def test_l0_rounding_never_adds_changed_pixels() -> None:
    g = torch.Generator().manual_seed(5)
    b = (torch.rand(8, 1, 28, 28, generator=g) * 255).round().to(torch.uint8)
    x = b.float() / 255
    mask = torch.rand(x.shape, generator=g) < 0.1
    y = torch.where(mask, torch.rand(x.shape, generator=g), x + 0.001)  # tiny drift rounds back to benign
    q = quantize("l0", b, y)
    for i in range(8):
        assert distances(_hwc(b[i]), _hwc(q[i]))["l0"] <= int(mask[i].sum())


def test_colour_pixel_counts_once() -> None:
    b = np.zeros((32, 32, 3), np.uint8)
    a = b.copy()
    a[0, 0, :] = 10
    a[1, 1, 2] = 10
    d = distances(b, a)
    assert d["l0"] == 2
    assert d["l0_frac"] == pytest.approx(2 / 1024)
    assert d["linf"] == pytest.approx(10 / 255)


def test_l0_budget_check() -> None:
    b = np.zeros((28, 28), np.uint8)
    a = b.copy()
    a.flat[:117] = 255
    assert budget_ok("l0", b, a)
    a.flat[117] = 255
    assert not budget_ok("l0", b, a)
    with pytest.raises(ValueError):
        budget_ok("l3", b, a)


def test_to_uint8_rounds_to_nearest() -> None:
    t = torch.tensor([0.0, 0.5 / 255 - 1e-6, 1.0, 1.2, -0.1])
    assert to_uint8(t).tolist() == [0, 0, 255, 255, 0]
