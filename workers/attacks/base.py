"""What every attack is and how it registers: the result type, the call protocol and ``register``.

Attack modules import this file only; the registry (``registry.py``) imports the attack modules. So neither
imports the other in a circle.

Every attack is a callable ``attack(model, x, y, *, condition, generator=None, **params) -> AttackResult``:

* ``model`` maps float images in [0, 1] (``[N, C, H, W]``) to logits and owns its normalisation;
* ``x`` is the benign batch (on the 8-bit grid) on the model's device, ``y`` the true labels (long ``[N]``);
* ``condition`` is ``"CAI"`` (imperceptible) or ``"CAP"`` (perceptible);
* the result holds the stored (8-bit, budget-respecting) images and per-image success as judged on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

CONDITIONS = ("CAI", "CAP")


@dataclass
class AttackResult:
    """What an attack returns for a batch of N images."""

    adv_u8: torch.Tensor  # uint8 [N, C, H, W]: the images to store, inside the budget after rounding
    success: torch.Tensor  # bool [N]: misclassified on adv_u8 (plus any attack-specific criterion)
    target: torch.Tensor  # long [N]: target class, -1 where none (untargeted or failed)
    iterations: torch.Tensor  # long [N]
    ssim_opt: torch.Tensor | None = None  # float [N]: optimisation SSIM (reflect) where one was used
    notes: list[str] = field(default_factory=list)  # per image, "" or why it failed
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # attack-specific per-image values
    params: dict[str, Any] = field(default_factory=dict)  # effective parameters worth recording


class Attack(Protocol):
    def __call__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        condition: str,
        generator: torch.Generator | None = None,
        **params: Any,
    ) -> AttackResult: ...


@dataclass(frozen=True)
class AttackSpec:
    name: str
    norm: str
    conditions: tuple[str, ...]
    fn: Attack
    defaults: dict[str, Any]
    ssim_variant: str | None  # the SSIM variant the attack optimises, None if it uses none


ATTACKS: dict[str, AttackSpec] = {}
BY_NORM: dict[tuple[str, str], str] = {}


def register(
    name: str,
    norm: str,
    conditions: tuple[str, ...],
    defaults: dict[str, Any] | None = None,
    ssim_variant: str | None = None,
    default: bool = True,
) -> Callable[[Attack], Attack]:
    """Decorator: register ``fn`` as ``name``; with ``default``, the default attack for ``(norm, c)`` for each
    condition c (a non-default attack is chosen by name, e.g. per condition in a study config)."""

    def deco(fn: Attack) -> Attack:
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} registered twice")
        ATTACKS[name] = AttackSpec(name, norm, conditions, fn, dict(defaults or {}), ssim_variant)
        for c in conditions if default else ():
            if (norm, c) in BY_NORM:
                raise ValueError(f"two default attacks for ({norm!r}, {c!r}): {BY_NORM[(norm, c)]!r} and {name!r}")
            BY_NORM[(norm, c)] = name
        return fn

    return deco
