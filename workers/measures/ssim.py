"""SSIM (Wang et al. 2004) in torch: differentiable, batched, two border variants.

Both variants use an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1 and population
(co)variances, and return the mean SSIM over the map and over the channels (colour images are the mean of the
per-channel SSIM, as scikit-image does with ``channel_axis``).

* ``"standard"`` keeps every window inside the image ("valid" convolution). This is the value scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``
  returns (it filters the whole image and then crops 5 pixels off each side before averaging). The outer
  5 pixels of each side enter fewer windows, and the SSIM map never centres on them.
* ``"reflect"`` reflect-pads the image by 5 pixels before filtering, so the map has one value per pixel and
  every pixel is a window centre. Optimising this variant cannot hide a perturbation in the image frame; it
  is the variant the attacks optimise (``OPT_VARIANT``), while ``"standard"`` is always stored as well.

Inputs are float tensors in [0, 1] shaped ``[N, C, H, W]`` (or ``[N, H, W]`` for grey images).
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F

Variant = Literal["standard", "reflect"]

WIN_SIZE = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
DATA_RANGE = 1.0
PAD = WIN_SIZE // 2
OPT_VARIANT: Variant = "reflect"
VARIANTS: tuple[Variant, ...] = ("standard", "reflect")


@functools.lru_cache(maxsize=16)
def _gaussian_1d(dtype: torch.dtype, device_str: str) -> torch.Tensor:
    """The normalised 11-tap Gaussian (sigma 1.5), the same taps as scipy's gaussian_filter (truncate 3.5)."""
    x = torch.arange(WIN_SIZE, dtype=torch.float64) - PAD
    g = torch.exp(-0.5 * (x / SIGMA) ** 2)
    g = g / g.sum()
    return g.to(dtype=dtype, device=torch.device(device_str))


def _as_nchw(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 4:
        return x
    raise ValueError(f"expected [N, C, H, W] or [N, H, W], got shape {tuple(x.shape)}")


def _filter(x: torch.Tensor, variant: Variant) -> torch.Tensor:
    """Separable Gaussian filter per channel; x is [N*C, 1, H, W]."""
    g = _gaussian_1d(x.dtype, str(x.device))
    if variant == "reflect":
        x = F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect")
    elif variant != "standard":
        raise ValueError(f"unknown SSIM variant {variant!r}; choose one of {VARIANTS}")
    x = F.conv2d(x, g.view(1, 1, 1, WIN_SIZE))
    return F.conv2d(x, g.view(1, 1, WIN_SIZE, 1))


def ssim_map(x: torch.Tensor, y: torch.Tensor, variant: Variant = "standard") -> torch.Tensor:
    """The SSIM map ``[N, C, H', W']`` between two batches (``H' = H - 10`` for standard, ``H`` for reflect)."""
    x = _as_nchw(x)
    y = _as_nchw(y)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    n, c, h, w = x.shape
    if h < WIN_SIZE or w < WIN_SIZE:
        raise ValueError(f"images must be at least {WIN_SIZE}x{WIN_SIZE}, got {h}x{w}")
    if x.dtype != y.dtype:
        y = y.to(x.dtype)
    # Filter the five moments in one call: [5 * N * C, 1, H, W].
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=0).reshape(5 * n * c, 1, h, w)
    mu_x, mu_y, e_xx, e_yy, e_xy = _filter(stack, variant).reshape(5, n, c, *_filter_shape(h, w, variant))
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def _filter_shape(h: int, w: int, variant: Variant) -> tuple[int, int]:
    if variant == "reflect":
        return h, w
    return h - 2 * PAD, w - 2 * PAD


def ssim(x: torch.Tensor, y: torch.Tensor, variant: Variant = "standard") -> torch.Tensor:
    """Mean SSIM per image, shape ``[N]``; differentiable with respect to both inputs."""
    return ssim_map(x, y, variant).flatten(1).mean(dim=1)


def ssim_grad(x: torch.Tensor, y: torch.Tensor, variant: Variant = OPT_VARIANT) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(ssim(x, y), d ssim / d y)`` for a batch, with autograd (the true gradient of the value)."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        value = ssim(x.detach(), y, variant)
        (grad,) = torch.autograd.grad(value.sum(), y)
    return value.detach(), grad
