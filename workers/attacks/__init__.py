"""Adversarial attacks for the three studies, behind a registry.

Each attack is declared (norms, conditions, parameters) in ``app/attack_specs.py``, torch-free, so that the web
process can check a study config's choice; the implementation registers against that name.

Layout: ``base.py`` (result type, call protocol, ``register``), ``registry.py`` (look-ups), one attack per
file, and helpers (``common.py``, ``wang.py``: Wang et al.'s equal-MSE SSIM search); ``jsma_reference.py`` is
cleverhans's JSMA as written, for the tests.

| norm | CAI | CAP |
|---|---|---|
| l0 | ``jsma`` (cleverhans 2.1, ``all`` targets) | ``l0_cap`` (copy pixels of a target-class digit) |
| l2 | ``l2_fixed`` from the highest-SSIM start | ``l2_fixed`` from the lowest-SSIM start |
| linf | ``linf_pgd_ssim`` with SSIM ascent | ``linf_pgd_ssim`` with SSIM descent |
"""

from workers.attacks.base import ATTACKS, CONDITIONS, AttackImpl, AttackResult, AttackSpec, register
from workers.attacks.registry import attack_for, get_attack, list_attacks

__all__ = [
    "ATTACKS",
    "AttackImpl",
    "CONDITIONS",
    "AttackResult",
    "AttackSpec",
    "attack_for",
    "get_attack",
    "list_attacks",
    "register",
]
