"""The attack registry: look attacks up by name or by (norm, condition). Importing it loads the built-in attacks.

The specs (what an attack is: norms, conditions, parameters) are torch-free, in ``app/attack_specs.py``; the
implementations here register against those names.
"""

from __future__ import annotations

from app.attack_specs import SPECS, UnknownAttack, default_attack
from app.design import CONDITIONS
from workers.attacks.base import ATTACKS, AttackImpl


def get_attack(name: str) -> AttackImpl:
    _load_builtin()
    if name not in SPECS:
        raise UnknownAttack(f"unknown attack {name!r}; known: {', '.join(sorted(SPECS))}")
    try:
        return ATTACKS[name]
    except KeyError:
        raise UnknownAttack(f"attack {name!r} is declared but has no implementation in workers/attacks/") from None


def attack_for(norm: str, condition: str) -> AttackImpl:
    """The default attack that makes ``condition`` stimuli for the ``norm`` study."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose one of {CONDITIONS}")
    return get_attack(default_attack(norm, condition).name)


def list_attacks() -> list[str]:
    _load_builtin()
    return sorted(ATTACKS)


def _load_builtin() -> None:
    # Importing the modules registers them (each imports only workers.attacks.base and helpers).
    from workers.attacks import benign, jsma, l0_cap, l0_paste, l0_search, l2_fixed, linf_pgd_ssim  # noqa: F401
