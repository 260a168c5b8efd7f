"""The ``[generation]`` table of a study config: how the background worker makes the study's stimuli.

Checked against the attacks' declared parameters (app/attack_specs.py) and resolved to exactly what the worker
will do (every default filled in), so the stored config is the record of the stimuli's design. `lpstudy stimuli
make` resolves its options the same way (resolve_generation_dict).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from app.attack_specs import choice_problems, default_attack, get_spec
from app.design import DEFAULT_JUDGES, DEFAULT_MODELS, DEFAULT_SOURCE_IMAGES, Condition, study_pair_problem
from app.studies.strict import Strict


class AttackConfig(Strict):
    """``[generation.attacks.CAI]``: the attack that makes a condition's stimuli, and its parameters."""

    name: str = Field(min_length=1)
    # Checked against the attack's declared parameters (app/attack_specs.py); unknown names are errors.
    params: dict[str, Any] = Field(default_factory=dict)


class Generation(Strict):
    """Present when the background worker makes this study's stimuli (absent: stimuli are imported)."""

    # A registered model name (e.g. mnist-default), a TorchScript file or a checkpoint; default per dataset.
    model: str | None = None
    # Models that judge the automated L0 CAP (it must fool all of them); default per dataset.
    judges: list[str] | None = None
    # The older single-judge form of ``judges``.
    second_model: str | None = None
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Source images the study holds, each with a stimulus in every condition; default: the paper's (75 for L0,
    # 100 for L2 and L-inf). A source image whose attack fails in any condition is replaced by the next one.
    images: int | None = Field(default=None, ge=1, le=10000)
    # Source images per job (the worker sizes its attack batches to its device, not to this).
    batch_size: int = Field(default=25, ge=1, le=1000)
    max_attempts: int = Field(default=3, ge=1, le=20)
    # Open the study to participants as soon as the worker has filled every pool.
    activate_when_ready: bool = False
    # The attack per condition; a condition not named gets its norm's default attack.
    attacks: dict[Condition, AttackConfig] = Field(default_factory=dict)

    @field_validator("judges")
    @classmethod
    def _judges(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (any(not j.strip() for j in v) or len(set(v)) != len(v)):
            raise ValueError("judges must be distinct, non-empty model names")
        return v

    @model_validator(mode="after")
    def _one_judge_form(self) -> Generation:
        if self.judges is not None and self.second_model is not None:
            raise ValueError("give either judges or second_model, not both")
        return self


def generation_problems(gen: Generation, norm: str, conditions: list[str]) -> list[tuple[tuple[Any, ...], str]]:
    out: list[tuple[tuple[Any, ...], str]] = []
    for cond, choice in gen.attacks.items():
        loc = ("generation", "attacks", cond)
        if cond not in conditions:
            out.append((loc, f"condition {cond} is not one of the study's conditions ({', '.join(conditions)})"))
            continue
        out += [((*loc, *sub), msg) for sub, msg in choice_problems(norm, cond, choice.name, choice.params)]
    return out


def resolve_generation(gen: Generation, dataset: str, norm: str, conditions: list[str]) -> Generation:
    gen.model = gen.model or DEFAULT_MODELS[dataset]
    if gen.judges is None:
        gen.judges = [gen.second_model] if gen.second_model else list(DEFAULT_JUDGES[dataset])
    gen.second_model = None
    gen.images = gen.images or DEFAULT_SOURCE_IMAGES[norm]
    resolved: dict[Condition, AttackConfig] = {}
    for cond in conditions:
        choice = gen.attacks.get(cond)  # type: ignore[call-overload]
        spec = get_spec(choice.name) if choice else default_attack(norm, cond)
        resolved[cond] = AttackConfig(name=spec.name, params=spec.validate_params(choice.params if choice else {}))  # type: ignore[index]
    gen.attacks = resolved
    if not any({"judges", "second_model"} & set(get_spec(a.name).uses) for a in resolved.values()):
        gen.judges = []  # no attack of this study uses judges: none are loaded
    return gen


def resolve_generation_dict(
    dataset: str, norm: str, conditions: list[str], generation: dict[str, Any]
) -> dict[str, Any]:
    """A ``[generation]`` table (as a dict) checked and resolved as a study config's would be; ValueError if bad.

    ``lpstudy stimuli make`` uses this, so that its options mean what the same config means to the worker."""
    problem = study_pair_problem(dataset, norm)
    if problem:
        raise ValueError(problem)
    try:
        gen = Generation.model_validate(generation)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    problems = generation_problems(gen, norm, conditions)
    if problems:
        raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
    return resolve_generation(gen, dataset, norm, conditions).model_dump(mode="json")
