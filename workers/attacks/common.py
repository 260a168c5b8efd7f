"""Helpers shared by the attacks (losses, gradients, per-sample reshaping)."""

from __future__ import annotations

import torch

from workers.attacks.base import AttackResult


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


class BestBySsim:
    """Per image, the best misclassified 8-bit iterate so far: highest SSIM (CAI) or lowest (CAP).

    Shared by the L2 and L-inf attacks, which both keep the best successful iterate rather than the last one.
    """

    def __init__(self, first_u8: torch.Tensor, direction: int) -> None:
        n, dev = first_u8.shape[0], first_u8.device
        self.direction = direction
        self.u8 = first_u8
        self.score = torch.full((n,), -torch.inf, dtype=torch.float64, device=dev)
        self.ssim = torch.full((n,), torch.nan, dtype=torch.float64, device=dev)
        self.iteration = torch.zeros(n, dtype=torch.long, device=dev)
        self.found = torch.zeros(n, dtype=torch.bool, device=dev)

    def update(self, q_u8: torch.Tensor, ok: torch.Tensor, s: torch.Tensor, it: int) -> None:
        """Offer iterate ``q_u8`` (misclassified where ``ok``, SSIM ``s``) from iteration ``it``."""
        better = ok & (self.direction * s > self.score)
        self.u8 = torch.where(better.view(bshape(q_u8)), q_u8, self.u8)
        self.score = torch.where(better, self.direction * s, self.score)
        self.ssim = torch.where(better, s, self.ssim)
        self.iteration = torch.where(better, it, self.iteration)
        self.found |= better

    def result(self, failure_note: str) -> AttackResult:
        n = self.u8.shape[0]
        return AttackResult(
            adv_u8=self.u8,
            success=self.found,
            target=torch.full((n,), -1, dtype=torch.long, device=self.u8.device),
            iterations=self.iteration,
            ssim_opt=self.ssim.float(),
            notes=["" if bool(f) else failure_note for f in self.found],
        )
