"""The paper's L2 and L-inf methods on tiny CPU models: symmetric L-inf (same PGD, Wang step of either sign),
L2 stopping at the first misclassified iterate, and the two L2 options measured against the default."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workers.attacks.l2_fixed import l2_fixed
from workers.attacks.linf_pgd_ssim import linf_pgd_ssim, wang_step_linf
from workers.measures.ssim import ssim


class TinyCifar(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.avg_pool2d(torch.relu(self.conv(x - 0.5)), 4).flatten(1)) * 5


def _data(n: int = 4, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear", align_corners=False)
    x = (x * 255).round() / 255
    model = TinyCifar(seed)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_wang_step_keeps_the_energy_and_the_ball() -> None:
    _, x, _ = _data(3)
    g = torch.Generator().manual_seed(1)
    cur = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * 0.1).clamp(0, 1)
    r0 = (cur - x).flatten(1).norm(dim=1)
    s0 = ssim(x, cur, "reflect")
    for direction in (1, -1):
        out = wang_step_linf(x, cur, 0.1, 0.05, direction)
        assert torch.allclose((out - x).flatten(1).norm(dim=1), r0, rtol=1e-4)
        assert float((out - x).abs().max()) <= 0.1 + 1e-6
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        assert bool((direction * (ssim(x, out, "reflect") - s0) > 0).all())


def test_linf_cai_and_cap_are_one_algorithm() -> None:
    """Without the SSIM step, CAI and CAP are the same PGD run (same seed, same images)."""
    torch.set_num_threads(1)
    model, x, y = _data()
    a = linf_pgd_ssim(model, x, y, condition="CAI", generator=_gen(), steps=8, ssim_step=0.0)
    b = linf_pgd_ssim(model, x, y, condition="CAP", generator=_gen(), steps=8, ssim_step=0.0)
    assert torch.equal(a.adv_u8, b.adv_u8)
    assert bool((a.iterations == 8).all())  # the final iterate


def test_linf_equal_energy_and_ssim_order() -> None:
    torch.set_num_threads(1)
    model, x, y = _data(6)
    cai = linf_pgd_ssim(model, x, y, condition="CAI", generator=_gen(), steps=15)
    cap = linf_pgd_ssim(model, x, y, condition="CAP", generator=_gen(), steps=15)
    both = cai.success & cap.success
    assert int(both.sum()) >= 4
    x_u8 = (x * 255).round()

    def l2(r: torch.Tensor) -> torch.Tensor:
        return (r.adv_u8.float() - x_u8).flatten(1).norm(dim=1)[both] / 255

    ratio = float(l2(cap).mean() / l2(cai).mean())
    assert 0.85 <= ratio <= 1.15
    assert bool((cai.ssim_opt[both] > cap.ssim_opt[both]).all())


def test_l2_stops_at_the_first_misclassified_iterate() -> None:
    torch.set_num_threads(1)
    model, x, y = _data(4, seed=2)
    kw = {"wang_steps": 10, "steps": 20}
    res = l2_fixed(model, x, y, condition="CAI", generator=_gen(), **kw)
    assert bool(res.success.any())
    checked = 0
    for i in res.success.nonzero().squeeze(1).tolist():
        it = int(res.iterations[i])
        if it == 0:
            continue
        # the same trajectories (same batch, same seed) cut one step earlier: image i is not fooled yet
        short = l2_fixed(model, x, y, condition="CAI", generator=_gen(), **{**kw, "steps": it - 1})
        assert not bool(short.success[i])
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("condition", ["CAI", "CAP"])
def test_l2_best_ssim_option_is_at_least_as_good(condition: str) -> None:
    torch.set_num_threads(1)
    model, x, y = _data(4, seed=3)
    kw = {"wang_steps": 10, "steps": 15}
    first = l2_fixed(model, x, y, condition=condition, generator=_gen(), **kw)
    best = l2_fixed(model, x, y, condition=condition, generator=_gen(), select="best_ssim", **kw)
    both = first.success & best.success
    assert bool(both.any())
    d = 1 if condition == "CAI" else -1
    assert bool((d * (best.ssim_opt[both] - first.ssim_opt[both]) >= -1e-6).all())
    with_ssim = l2_fixed(model, x, y, condition=condition, generator=_gen(), ssim_steps=True, **kw)
    assert not torch.equal(with_ssim.adv_u8, first.adv_u8)


def test_bad_options() -> None:
    model, x, y = _data(1)
    with pytest.raises(ValueError, match="select"):
        l2_fixed(model, x, y, condition="CAI", select="last")
    with pytest.raises(ValueError, match="select"):
        linf_pgd_ssim(model, x, y, condition="CAI", select="first")
