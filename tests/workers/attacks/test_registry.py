"""The attack registry against the torch-free specs: every declared attack is implemented, every implementation
is declared, and the function's own defaults are the spec's (a direct call and a config behave the same)."""

from __future__ import annotations

import inspect

import pytest

from app.attack_specs import DEFAULTS, SPECS, choice_problems, get_spec
from workers.attacks import ATTACKS, attack_for, get_attack, list_attacks, register


def test_every_spec_has_an_implementation_and_back() -> None:
    assert set(list_attacks()) == set(SPECS)
    for (norm, cond), name in DEFAULTS.items():
        assert attack_for(norm, cond).name == name


# Deliberate differences: a direct jsma() call is cleverhans's exact lock step over every target; studies
# prune to two targets at a time (see workers/attacks/jsma.py).
DIFFERENT_ON_PURPOSE = {("jsma", "parallel")}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_function_defaults_match_the_spec(name: str) -> None:
    impl = get_attack(name)
    sig = inspect.signature(impl.fn)
    for param, default in impl.defaults.items():
        assert param in sig.parameters, f"{name}: spec parameter {param!r} is not an argument of the function"
        fn_default = sig.parameters[param].default
        if isinstance(fn_default, tuple):
            fn_default = list(fn_default)
        if (name, param) in DIFFERENT_ON_PURPOSE:
            continue
        assert fn_default == default, f"{name}.{param}: function default {fn_default!r}, spec {default!r}"
    for u in impl.spec.uses:
        assert u in sig.parameters or any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()), (name, u)


def test_lookups_and_errors() -> None:
    assert attack_for("l0", "CB").name == "benign"
    with pytest.raises(ValueError, match="unknown attack"):
        get_attack("fgsm")
    with pytest.raises(ValueError, match="unknown condition"):
        attack_for("l0", "XX")
    with pytest.raises(ValueError, match="not declared"):
        register("not-declared")
    with pytest.raises(ValueError, match="registered twice"):
        register("benign")(ATTACKS["benign"].fn)
    assert choice_problems("l0", "CAI", "jsma", {"gamma": 0.5})[0][0] == ("params", "gamma")
    assert get_spec("l2_fixed").serves("l2", "CAP") and not get_spec("l2_fixed").serves("linf", "CAP")
