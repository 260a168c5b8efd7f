"""Helpers shared by the attacks (losses, gradients, per-sample reshaping)."""

from __future__ import annotations

import torch


def bshape(x: torch.Tensor) -> tuple[int, ...]:
    """A shape that broadcasts a per-sample vector against ``x``."""
    return (-1, *([1] * (x.dim() - 1)))


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{k != y} z_k - z_y`` per sample: positive iff misclassified."""
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    other = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -torch.inf)
    return other.amax(1) - true


def margin_grad(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, kappa: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``min(margin, kappa)``: zero once a sample is misclassified by at least ``kappa``.

    Returns ``(margin, gradient)``.
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        m = margin(model(xg), y)
        (g,) = torch.autograd.grad(m.clamp(max=kappa).sum(), xg)
    return m.detach(), g


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def condition_direction(condition: str) -> int:
    """+1 (raise SSIM) for CAI, -1 (lower SSIM) for CAP."""
    if condition == "CAI":
        return 1
    if condition == "CAP":
        return -1
    raise ValueError(f"unknown condition {condition!r}; choose CAI or CAP")
