"""The attack registry: look attacks up by name or by (norm, condition). Importing it loads the built-in attacks."""

from __future__ import annotations

from workers.attacks.base import ATTACKS, BY_NORM, CONDITIONS, AttackSpec


def get_attack(name: str) -> AttackSpec:
    _load_builtin()
    try:
        return ATTACKS[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; known: {sorted(ATTACKS)}") from None


def attack_for(norm: str, condition: str) -> AttackSpec:
    """The attack that makes ``condition`` stimuli for the ``norm`` study."""
    _load_builtin()
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose one of {CONDITIONS}")
    try:
        return ATTACKS[BY_NORM[(norm, condition)]]
    except KeyError:
        raise KeyError(f"no attack registered for norm {norm!r} and condition {condition!r}") from None


def list_attacks() -> list[str]:
    _load_builtin()
    return sorted(ATTACKS)


def _load_builtin() -> None:
    # Importing the modules registers them (each imports only workers.attacks.base).
    from workers.attacks import jsma, l0_cap, l0_paste, l0_search, l2_fixed, linf_pgd_ssim  # noqa: F401
