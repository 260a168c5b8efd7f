"""Equal-MSE SSIM ascent / descent (Wang et al. 2004) on the L2 sphere."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workers.attacks.wang import equal_mse_search, project_sphere_box, random_on_sphere, tangent
from workers.measures.ssim import ssim


def _smooth_images(n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g, dtype=torch.float64)
    return F.interpolate(x, size=32, mode="bilinear", align_corners=False) * 0.8 + 0.1


def _dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y - x).flatten(1).norm(dim=1)


def test_projection_onto_sphere_and_box() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32, generator=g, dtype=torch.float64)
    y = project_sphere_box(x, x + 3 * torch.randn(x.shape, generator=g, dtype=torch.float64), 6.0)
    assert torch.allclose(_dist(x, y), torch.full((6,), 6.0, dtype=torch.float64), atol=1e-9)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    # a tiny direction is scaled up, not lost
    y2 = project_sphere_box(x, x + 1e-6 * torch.randn(x.shape, generator=g, dtype=torch.float64), 6.0)
    assert torch.allclose(_dist(x, y2), torch.full((6,), 6.0, dtype=torch.float64), atol=1e-9)
    # zero direction falls back to a fixed one
    y3 = project_sphere_box(x, x.clone(), 2.0)
    assert torch.allclose(_dist(x, y3), torch.full((6,), 2.0, dtype=torch.float64), atol=1e-9)


def test_tangent_is_orthogonal() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    d = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    assert torch.allclose((tangent(a, d) * d).flatten(1).sum(1), torch.zeros(4, dtype=torch.float64), atol=1e-10)


def test_ascent_raises_and_descent_lowers_ssim_at_equal_mse() -> None:
    x = _smooth_images()
    start = random_on_sphere(x, 6.0, torch.Generator().manual_seed(2))
    s0 = ssim(x, start, "reflect")
    up, s_up = equal_mse_search(x, 6.0, +1, steps=40, y0=start)
    down, s_down = equal_mse_search(x, 6.0, -1, steps=40, y0=start)
    assert bool((s_up > s0 + 0.01).all())
    assert bool((s_down < s0 - 0.01).all())
    for y in (up, down):
        assert torch.allclose(_dist(x, y), torch.full((3,), 6.0, dtype=torch.float64), atol=1e-6)
        assert float(y.min()) >= 0 and float(y.max()) <= 1
    # the standard SSIM moves the same way
    assert bool((ssim(x, up) > ssim(x, down)).all())


def test_standard_ssim_ascent_hides_the_perturbation_in_the_frame() -> None:
    """The known trap: maximising standard SSIM puts (nearly) all of the L2 into the outer 5 pixels; the
    reflect variant does not (the frame is 53% of a 32x32 image)."""
    x = _smooth_images()
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[5:-5, 5:-5] = False

    def frame_share(y: torch.Tensor) -> torch.Tensor:
        e = (y - x) ** 2
        return e[..., frame].sum((1, 2)) / e.sum((1, 2, 3))

    y_std, _ = equal_mse_search(x, 6.0, +1, steps=30, variant="standard", generator=torch.Generator().manual_seed(1))
    y_ref, _ = equal_mse_search(x, 6.0, +1, steps=30, variant="reflect", generator=torch.Generator().manual_seed(1))
    assert bool((frame_share(y_std) > 0.95).all())
    assert bool((frame_share(y_ref) < 0.85).all())


def test_seeded_start_is_reproducible() -> None:
    x = _smooth_images(2)
    a, _ = equal_mse_search(x, 6.0, +1, steps=5, generator=torch.Generator().manual_seed(7))
    b, _ = equal_mse_search(x, 6.0, +1, steps=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
