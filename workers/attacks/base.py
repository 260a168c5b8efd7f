"""What every attack is and how it registers: the result type, the call protocol and ``register``.

Attack modules import this file only; the registry (``registry.py``) imports the attack modules. So neither
imports the other in a circle.

Every attack is a callable ``attack(model, x, y, *, condition, generator=None, **params) -> AttackResult``:

* ``model`` maps float images in [0, 1] (``[N, C, H, W]``) to logits and owns its normalisation;
* ``x`` is the benign batch (on the 8-bit grid) on the model's device, ``y`` the true labels (long ``[N]``);
* ``condition`` is ``"CAI"`` (imperceptible), ``"CAP"`` (perceptible) or, for the benign identity, ``"CB"``;
* ``params`` are the attack's declared parameters (validated by its spec), and the inputs its spec ``uses``
  (judges, donor digits, ...) come as keyword arguments of the same names;
* the result holds the stored (8-bit, budget-respecting) images and per-image success as judged on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from app.design import ADVERSARIAL as CONDITIONS  # noqa: F401  (the conditions attacks serve; CB: benign)

if TYPE_CHECKING:
    from app.attack_specs import AttackSpec as Spec


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
class AttackImpl:
    """A registered attack: its torch-free spec (``app.attack_specs``) and the function that runs it."""

    spec: Spec
    fn: Attack

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def norms(self) -> tuple[str, ...]:
        return tuple(self.spec.norms)

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(self.spec.conditions)

    @property
    def defaults(self) -> dict[str, Any]:
        return self.spec.validate_params({})

    @property
    def ssim_variant(self) -> str | None:
        return self.spec.ssim_variant


# Older name, kept for callers that type-annotate with it.
AttackSpec = AttackImpl

ATTACKS: dict[str, AttackImpl] = {}


def register(name: str, *declared: Any, **legacy: Any) -> Callable[[Attack], Attack]:
    """Decorator: ``fn`` implements the attack declared as ``name`` in ``app/attack_specs.py``.

    The spec (norms, conditions, parameters and their defaults, inputs) is the single source of truth; an
    undeclared name is an error. Older call forms (``register(name, norm, conditions, defaults=...)``) are
    accepted and checked against the spec.
    """
    from app.attack_specs import SPECS

    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(
            f"attack {name!r} is not declared: add its AttackSpec (norms, conditions, params) to app/attack_specs.py"
        )
    if declared:
        norm = declared[0]
        if norm not in spec.norms:
            raise ValueError(f"attack {name!r}: norm {norm!r} does not match its spec {spec.norms}")

    def deco(fn: Attack) -> Attack:
        if name in ATTACKS:
            raise ValueError(f"attack {name!r} registered twice")
        ATTACKS[name] = AttackImpl(spec, fn)
        return fn

    return deco
