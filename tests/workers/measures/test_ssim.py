"""SSIM in torch against scikit-image, and the border behaviour of the two variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from workers.measures.ssim import ssim, ssim_grad, ssim_map


def _sk(a: np.ndarray, b: np.ndarray) -> float:
    kw = {"channel_axis": -1} if a.ndim == 3 else {}
    return float(
        structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, **kw)
    )


def _t(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(a)
    return t[None, None] if a.ndim == 2 else t.permute(2, 0, 1)[None]


@pytest.mark.parametrize("shape", [(28, 28), (32, 32, 3), (11, 11), (40, 23)])
@pytest.mark.parametrize("noise", [0.01, 0.1, 0.4])
def test_matches_skimage(shape: tuple[int, ...], noise: float) -> None:
    rng = np.random.default_rng(hash((shape, noise)) % 2**32)
    a = rng.random(shape)
    if len(shape) == 2 and shape[0] == 28:  # MNIST-like: mostly black
        a = np.where(rng.random(shape) < 0.8, 0.0, a)
    b = np.clip(a + rng.normal(0, noise, shape), 0, 1)
    assert abs(float(ssim(_t(a), _t(b))) - _sk(a, b)) < 1e-5


def test_matches_skimage_uint8_images() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    fa, fb = a / 255.0, b / 255.0
    assert abs(float(ssim(_t(fa), _t(fb))) - _sk(fa, fb)) < 1e-5
    # float32 batches agree too, at float32 precision
    assert abs(float(ssim(_t(fa).float(), _t(fb).float())) - _sk(fa, fb)) < 1e-4


def test_batched_equals_single_and_identity() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 32, 32, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    batch = ssim(x, y)
    single = torch.stack([ssim(x[i : i + 1], y[i : i + 1])[0] for i in range(5)])
    assert torch.allclose(batch, single, atol=1e-12)
    assert torch.allclose(ssim(x, x), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(ssim(x, x, "reflect"), torch.ones(5, dtype=torch.float64))
    assert ssim_map(x, y).shape == (5, 3, 22, 22)
    assert ssim_map(x, y, "reflect").shape == (5, 3, 32, 32)


def test_gradient_is_the_true_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 12, 12, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0.05, 0.95)
    for variant in ("standard", "reflect"):
        assert torch.autograd.gradcheck(lambda t, v=variant: ssim(x, t, v), (y.clone().requires_grad_(True),))
        value, grad = ssim_grad(x, y, variant)
        # finite difference along a random direction
        d = torch.randn(y.shape, generator=g, dtype=torch.float64)
        h = 1e-6
        fd = (ssim(x, y + h * d, variant) - ssim(x, y - h * d, variant)) / (2 * h)
        assert torch.allclose((grad * d).flatten(1).sum(1), fd, atol=1e-7)
        assert torch.allclose(value, ssim(x, y, variant))


def test_standard_ssim_barely_sees_the_frame() -> None:
    """Standard SSIM is almost blind to the outer pixels (they enter few windows, with tiny Gaussian weights);
    the reflect variant weighs them like the others."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, 32, 32, generator=g, dtype=torch.float64) * 0.5 + 0.25
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    outer = torch.zeros(32, 32, dtype=torch.bool)
    outer[:2, :] = outer[-2:, :] = outer[:, :2] = outer[:, -2:] = True
    inner = torch.zeros(32, 32, dtype=torch.bool)
    inner[8:-8, 8:-8] = True
    _, g_std = ssim_grad(x, y, "standard")
    _, g_ref = ssim_grad(x, y, "reflect")
    ratio_std = float(g_std.abs()[..., outer].mean() / g_std.abs()[..., inner].mean())
    ratio_ref = float(g_ref.abs()[..., outer].mean() / g_ref.abs()[..., inner].mean())
    assert ratio_std < 0.1
    assert ratio_ref > 0.5


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 17))
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), "valid")  # type: ignore[arg-type]
