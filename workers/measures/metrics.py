"""Image-quality metrics of a stored stimulus against its benign image (both uint8, HW or HWC).

* L0 (changed pixels, count and fraction; a colour pixel counts once), L2 and L-inf, pixels in [0, 1];
* SSIM, standard (scikit-image's value) and reflect-padded (the optimisation variant), see ``workers.measures.ssim``;
* PSNR in dB (data range 1; empty / ``None`` for identical images, where it is infinite);
* UQI, the universal quality index (Wang & Bovik 2002): SSIM with K1 = K2 = 0 over 8x8 uniform windows, with
  the usual conventions for flat windows (1 where both windows are flat and equal).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from workers.measures.budgets import distances
from workers.measures.ssim import ssim

UQI_WINDOW = 8


def _to_nchw(img: np.ndarray) -> torch.Tensor:
    a = torch.from_numpy(np.asarray(img).astype(np.float64) / 255.0)
    if a.dim() == 2:
        return a[None, None]
    if a.dim() == 3:
        return a.permute(2, 0, 1)[None]
    raise ValueError(f"expected an HW or HWC image, got shape {tuple(a.shape)}")


def psnr(benign: np.ndarray, adv: np.ndarray) -> float | None:
    """Peak signal-to-noise ratio in dB (data range 1); ``None`` when the images are identical."""
    b = np.asarray(benign).astype(np.float64) / 255.0
    a = np.asarray(adv).astype(np.float64) / 255.0
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return None
    return 10.0 * math.log10(1.0 / mse)


def uqi(benign: np.ndarray, adv: np.ndarray, window: int = UQI_WINDOW) -> float:
    """Universal quality index, mean over the valid 8x8 windows and the channels."""
    x = _to_nchw(benign)
    y = _to_nchw(adv)
    n, c, h, w = x.shape
    k = torch.full((1, 1, window, window), 1.0 / (window * window), dtype=torch.float64)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t.reshape(n * c, 1, h, w), k)

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    var_x = var_x.clamp(min=0)
    var_y = var_y.clamp(min=0)
    d1 = var_x + var_y
    d2 = mu_x**2 + mu_y**2
    tol = 1e-12
    q = torch.ones_like(mu_x)
    only_means = (d1 <= tol) & (d2 > tol)
    q = torch.where(only_means, 2 * mu_x * mu_y / d2.clamp(min=tol), q)
    only_vars = (d1 > tol) & (d2 <= tol)
    q = torch.where(only_vars, 2 * cov / d1.clamp(min=tol), q)
    both = (d1 > tol) & (d2 > tol)
    q = torch.where(both, 4 * cov * mu_x * mu_y / (d1 * d2).clamp(min=tol), q)
    return float(q.mean())


def ssim_values(benign: np.ndarray, adv: np.ndarray) -> dict[str, float]:
    """Standard and reflect-padded SSIM (float64)."""
    x = _to_nchw(benign)
    y = _to_nchw(adv)
    return {"ssim": float(ssim(x, y, "standard")), "ssim_reflect": float(ssim(x, y, "reflect"))}


def image_metrics(benign: np.ndarray, adv: np.ndarray) -> dict[str, float | int | None]:
    """All distance and quality metrics of ``adv`` against ``benign``."""
    out: dict[str, float | int | None] = {}
    out.update(distances(benign, adv))
    out.update(ssim_values(benign, adv))
    out["psnr"] = psnr(benign, adv)
    out["uqi"] = uqi(benign, adv)
    return out
