"""The exact greedy L0 search on tiny CPU models: exactness, budget, 8-bit grid, gradient-free success."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workers.attacks.jsma import jsma
from workers.attacks.l0_search import l0_search, search


class TinyMnist(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 4, 5, padding=2)
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.max_pool2d(torch.relu(self.conv(x - 0.2)), 4).flatten(1)) * 4


class Quantised(nn.Module):
    """A model whose input gradient is exactly zero: it sees the image through a hard threshold."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x > 0.5).to(x.dtype) + 0 * x)


def _digits(n: int, seed: int = 0) -> torch.Tensor:
    """Digit-like images: a few bright strokes on black, on the 8-bit grid."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        r0, c0 = (int(v) for v in torch.randint(6, 16, (2,), generator=g))
        x[i, 0, r0 : r0 + 10, c0 : c0 + 3] = 1.0
        x[i, 0, r0 : r0 + 2, c0 : c0 + 8] = torch.rand(2, 8, generator=g).mul(255).round() / 255
    return x


def _margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = model(x)
    other = z.masked_fill(F.one_hot(y, 10).bool(), -math.inf).amax(1)
    return z.gather(1, y.unsqueeze(1)).squeeze(1) - other


def _labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def test_first_step_is_the_exact_best_single_pixel_change() -> None:
    torch.set_num_threads(1)
    model = TinyMnist(1)
    x = _digits(2, seed=1)
    y = _labels(model, x)
    # One pixel only (k_max = 1), no early stop, no pruning: the result is the best single change.
    out = search(model, x, y, max_fraction=1.5 / 784, kappa=1e9, prune=False)
    for i in range(2):
        cands = []
        flat = x[i].flatten()
        for p in range(784):
            for v in (0.0, 1.0):
                if flat[p] != v:
                    c = flat.clone()
                    c[p] = v
                    cands.append(c)
        brute = _margin(model, torch.stack(cands).view(-1, 1, 28, 28), y[i].repeat(len(cands)))
        assert int(out["l0"][i]) == 1
        assert float(out["margin"][i]) == pytest.approx(float(brute.min()), abs=1e-5)
        assert int(out["evaluations"][i]) == len(cands)


@pytest.mark.parametrize("kw", [{}, {"refresh": 1}, {"beam": 2, "refresh": 1}])
def test_fools_within_budget_on_the_8bit_grid(kw: dict) -> None:
    torch.set_num_threads(1)
    model = TinyMnist(0)
    x = _digits(6)
    y = _labels(model, x)
    res = l0_search(model, x, y, condition="CAI", **kw)
    assert res.adv_u8.dtype == torch.uint8 and res.adv_u8.shape == x.shape
    assert bool(res.success.all())
    x_u8 = (x * 255).round().to(torch.uint8)
    changed = res.adv_u8 != x_u8
    assert int(changed.flatten(1).sum(1).max()) <= 117  # 15% of 784
    # every changed pixel is exactly 0 or 255, and success is judged on the stored image
    assert bool(((res.adv_u8[changed] == 0) | (res.adv_u8[changed] == 255)).all())
    assert bool((_labels(model, res.adv_u8.float() / 255) != y).all())


def test_deterministic() -> None:
    model = TinyMnist(2)
    x = _digits(3, seed=2)
    y = _labels(model, x)
    a = l0_search(model, x, y, condition="CAI")
    b = l0_search(model, x, y, condition="CAI")
    assert torch.equal(a.adv_u8, b.adv_u8)


def test_pruning_removes_pixels_the_path_no_longer_needs() -> None:
    torch.set_num_threads(1)
    model = TinyMnist(3)
    x = _digits(6, seed=3)
    y = _labels(model, x)
    raw = search(model, x, y, prune=False)
    pruned = search(model, x, y, prune=True)
    assert bool(pruned["success"].eq(raw["success"]).all())
    assert bool((pruned["l0"] <= raw["l0"]).all())
    # a pruned image stays misclassified with every remaining pixel needed: reverting any one restores y
    for i in range(6):
        adv = pruned["adv"][i].flatten()
        idx = (adv != x[i].flatten()).nonzero().squeeze(1)
        for p in idx.tolist():
            back = adv.clone()
            back[p] = x[i].flatten()[p]
            assert float(_margin(model, back.view(1, 1, 28, 28), y[i : i + 1])) >= 0


def test_succeeds_where_the_gradient_is_zero() -> None:
    """Gradient masking in its purest form: JSMA sees an all-zero saliency map, the exact search does not."""
    torch.set_num_threads(1)
    model = Quantised(TinyMnist(4))
    x = _digits(4, seed=4)
    y = _labels(model, x)
    j = jsma(model, x, y, condition="CAI")
    assert not bool(j.success.any())
    s = l0_search(model, x, y, condition="CAI")
    assert bool(s.success.all())


def test_bad_parameters() -> None:
    model = TinyMnist(0)
    x = _digits(1)
    y = _labels(model, x)
    with pytest.raises(ValueError, match="CAI"):
        l0_search(model, x, y, condition="CAP")
    with pytest.raises(ValueError, match="8-bit grid"):
        l0_search(model, x, y, condition="CAI", values=[0.5001])
    with pytest.raises(ValueError, match="at least 1"):
        l0_search(model, x, y, condition="CAI", beam=0)
    with pytest.raises(ValueError, match="grey"):
        l0_search(model, x.repeat(1, 3, 1, 1), y, condition="CAI")
