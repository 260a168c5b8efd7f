"""L2 fixed-norm and L-inf PGD+SSIM attacks on tiny CPU models: budgets after rounding, CAI vs CAP SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workers.attacks.l2_fixed import l2_fixed
from workers.attacks.linf_pgd_ssim import linf_pgd_ssim
from workers.measures.budgets import budget_ok
from workers.measures.ssim import ssim


class TinyCifar(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(torch.relu(self.conv(x - 0.5)), 4)
        return self.fc(h.flatten(1)) * 5


def _data(n: int = 4, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g)
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False)
    x = (x * 255).round() / 255
    model = TinyCifar(seed)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _np(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).cpu().numpy()


@pytest.mark.parametrize("attack,norm", [(l2_fixed, "l2"), (linf_pgd_ssim, "linf")])
def test_budget_success_and_ssim_order(attack, norm: str) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    model, x, y = _data()
    kw = {"steps": 12} if norm == "linf" else {"steps": 12, "wang_steps": 25}
    cai = attack(model, x, y, condition="CAI", generator=torch.Generator().manual_seed(0), **kw)
    cap = attack(model, x, y, condition="CAP", generator=torch.Generator().manual_seed(0), **kw)
    x_u8 = (x * 255).round().to(torch.uint8)
    for res in (cai, cap):
        assert res.adv_u8.dtype == torch.uint8 and res.adv_u8.shape == x.shape
        assert int(res.success.sum()) >= 3
        with torch.no_grad():
            pred = model(res.adv_u8.float() / 255).argmax(1)
        for i in range(x.shape[0]):
            assert budget_ok(norm, _np(x_u8[i]), _np(res.adv_u8[i]))
            if res.success[i]:
                assert int(pred[i]) != int(y[i])
                # the recorded optimisation SSIM is the one of the stored image
                s = float(ssim(x[i : i + 1].double(), res.adv_u8[i : i + 1].double() / 255, "reflect"))
                assert abs(s - float(res.ssim_opt[i])) < 1e-4
    both = cai.success & cap.success
    assert bool(both.any())
    assert bool((cai.ssim_opt[both] > cap.ssim_opt[both]).all())


def test_seeded_runs_reproduce() -> None:
    torch.set_num_threads(1)
    model, x, y = _data(2, seed=1)
    a = l2_fixed(model, x, y, condition="CAI", generator=torch.Generator().manual_seed(3), steps=4, wang_steps=5)
    b = l2_fixed(model, x, y, condition="CAI", generator=torch.Generator().manual_seed(3), steps=4, wang_steps=5)
    assert torch.equal(a.adv_u8, b.adv_u8)
    c = linf_pgd_ssim(model, x, y, condition="CAP", generator=torch.Generator().manual_seed(3), steps=4)
    d = linf_pgd_ssim(model, x, y, condition="CAP", generator=torch.Generator().manual_seed(3), steps=4)
    assert torch.equal(c.adv_u8, d.adv_u8)


def test_unknown_condition() -> None:
    model, x, y = _data(1)
    with pytest.raises(ValueError):
        linf_pgd_ssim(model, x, y, condition="CB")
