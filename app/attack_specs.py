"""What each attack is, without torch: its name, norm, the conditions it serves and its parameters.

A study config chooses an attack and its parameters per condition (``[generation.attacks.CAI]``); the web
process validates that choice here, so an unknown attack or parameter is a config error with file and line,
long before a worker runs. The torch implementations live in ``workers/attacks/`` (one per file) and register
against these names (``workers.attacks.base.register``); a spec without an implementation is an error there.

To add an attack: declare its spec here (a params model with ``extra="forbid"``, whose defaults are the attack's
defaults), then write ``workers/attacks/<name>.py`` with ``@register("<name>")``.

``uses`` names the inputs an attack needs besides the model and the batch; ``workers.generation`` provides them
by name, so it never needs to know an attack by name:

* ``judges``: the study's judge models (``[generation] judges``), a list of ``nn.Module``;
* ``second_model``: the first judge (the older single-judge interface);
* ``train_images``, ``train_labels``: the dataset's training split (uint8, as stored);
* ``donor_images``, ``donor_labels``: the test images of the spec's ``reserves_test`` part (never sources);
* ``reference_l0``: the L0 (pixels) of the CAI stimuli made for the same block.

Success is judged by ``workers.generation`` on the stored 8-bit image, the same way for every attack: the
attack's own verdict, the budget, the model's prediction (CB: the true label; CAI/CAP: another label), and,
where the attack reports a target class, the model and every judge it ``uses`` must predict that target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.design import ADVERSARIAL, L0_FRACTION, LINF_EPS, NORMS, Condition, Norm

RESOURCES = (
    "judges",
    "second_model",
    "train_images",
    "train_labels",
    "donor_images",
    "donor_labels",
    "reference_l0",
)


class AttackParams(BaseModel):
    """Base of every attack's parameters: unknown names are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class AttackSpec:
    name: str
    norms: tuple[Norm, ...]
    conditions: tuple[Condition, ...]
    params: type[AttackParams]
    description: str
    uses: tuple[str, ...] = ()
    ssim_variant: str | None = None  # the SSIM variant the attack optimises (recorded as ssim_opt), if any
    # The part of the test set [start, stop), as fractions of its size, that the attack uses as material (donor
    # digits): never source images.
    reserves_test: tuple[float, float] | None = None

    def serves(self, norm: str, condition: str) -> bool:
        return norm in self.norms and condition in self.conditions

    def validate_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """All parameters with defaults filled in; raises pydantic's ValidationError on a bad one."""
        return self.params.model_validate(params or {}).model_dump(mode="json")


SPECS: dict[str, AttackSpec] = {}
# The attack a condition gets when the config does not choose one.
DEFAULTS: dict[tuple[str, str], str] = {}


def declare(spec: AttackSpec, *, default_for: tuple[tuple[Norm, Condition], ...] = ()) -> AttackSpec:
    if spec.name in SPECS:
        raise ValueError(f"attack {spec.name!r} declared twice")
    bad = [u for u in spec.uses if u not in RESOURCES]
    if bad:
        raise ValueError(f"attack {spec.name!r} uses unknown inputs {bad}; known: {RESOURCES}")
    SPECS[spec.name] = spec
    for key in default_for:
        if not spec.serves(*key):
            raise ValueError(f"attack {spec.name!r} cannot be the default for {key}")
        DEFAULTS[key] = spec.name
    return spec


class UnknownAttack(ValueError, KeyError):
    """No attack of that name (a ValueError for config and CLI checks, a KeyError for look-ups)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown attack"


def get_spec(name: str) -> AttackSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownAttack(f"unknown attack {name!r}; known: {', '.join(sorted(SPECS))}") from None


def default_attack(norm: str, condition: str) -> AttackSpec:
    try:
        return SPECS[DEFAULTS[(norm, condition)]]
    except KeyError:
        raise UnknownAttack(f"no attack makes {condition} stimuli for the {norm} study") from None


def attacks_for(norm: str, condition: str) -> list[str]:
    return sorted(n for n, s in SPECS.items() if s.serves(norm, condition))


def choice_problems(norm: str, condition: str, name: str, params: dict[str, Any] | None) -> list[tuple[tuple, str]]:
    """Problems with choosing attack ``name`` with ``params`` for ``condition``: ``(location, message)``."""
    if name not in SPECS:
        return [
            (
                ("name",),
                f"unknown attack {name!r}; for {condition} in the {norm} study choose one of "
                f"{', '.join(attacks_for(norm, condition)) or '(none)'}",
            )
        ]
    spec = SPECS[name]
    if not spec.serves(norm, condition):
        return [
            (
                ("name",),
                f"attack {name!r} does not make {condition} stimuli for the {norm} study; choose one of "
                f"{', '.join(attacks_for(norm, condition)) or '(none)'}",
            )
        ]
    try:
        spec.validate_params(params)
    except ValidationError as exc:
        out: list[tuple[tuple, str]] = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                known = ", ".join(spec.params.model_fields) or "(none)"
                msg = f"unknown parameter of attack {name!r} (its parameters: {known})"
            out.append((("params", *err["loc"]), msg))
        return out
    return []


# --- the built-in attacks ---------------------------------------------------------------------------------


class NoParams(AttackParams):
    pass


declare(
    AttackSpec(
        "benign",
        NORMS,
        ("CB",),
        NoParams,
        "The source image as it is (the benign condition); kept only when the model classifies it correctly.",
    ),
    default_for=tuple((n, "CB") for n in NORMS),
)


class JsmaParams(AttackParams):
    mode: Literal["all", "random"] = "all"
    theta: float = Field(1.0, gt=0, le=1)
    gamma: float = Field(L0_FRACTION, gt=0, le=L0_FRACTION)
    use_logits: bool = False
    stop: Literal["target", "misclassified"] | None = None
    max_targets: int | None = Field(None, ge=1, le=9)
    parallel: int | None = Field(2, ge=1, le=9)


declare(
    AttackSpec(
        "jsma",
        ("l0",),
        ("CAI",),
        JsmaParams,
        "JSMA (Papernot et al. 2016; cleverhans 2.1 semantics), every target, the smallest success kept. Kept "
        "for comparison: the gradient of an L-inf-trained MNIST model says little about pixel flips.",
    ),
)


class L0CapParams(AttackParams):
    k_step: int = Field(4, ge=1, le=100)
    max_fraction: float = Field(L0_FRACTION, gt=0, le=L0_FRACTION)
    candidates_per_class: int = Field(8, ge=1, le=1000)
    pool_per_class: int = Field(1000, ge=1, le=100000)


declare(
    AttackSpec(
        "l0_cap",
        ("l0",),
        ("CAP",),
        L0CapParams,
        "The first automated L0 CAP: copy the most different pixels of a training digit of another class, at "
        "CAI's L0; the attacked model and one judge must both see that class.",
        uses=("second_model", "train_images", "train_labels", "reference_l0"),
    ),
)


class L0SearchParams(AttackParams):
    values: list[float] = Field(default_factory=lambda: [0.0, 1.0], min_length=1, max_length=256)
    beam: int = Field(1, ge=1, le=64)
    refresh: int = Field(4, ge=1, le=1000)
    shortlist: int = Field(64, ge=1, le=784)
    kappa: float = Field(0.0, ge=0, le=100)
    max_fraction: float = Field(L0_FRACTION, gt=0, le=L0_FRACTION)
    prune: bool = True


declare(
    AttackSpec(
        "l0_search",
        ("l0",),
        ("CAI",),
        L0SearchParams,
        "Greedy L0 search that scores every single-pixel change exactly (no gradient), one pixel per step.",
    ),
    default_for=(("l0", "CAI"),),
)

# The second half of the test set (MNIST: images 5000-9999) holds l0_paste's donor digits: never source images,
# and no judge was trained on them.
L0_DONORS = (0.5, 1.0)


class L0PasteParams(AttackParams):
    mean_fraction: float = Field(0.0448, gt=0, le=L0_FRACTION)
    sd_fraction: float = Field(0.0245, gt=0, le=L0_FRACTION)
    min_fraction: float = Field(0.015, gt=0, le=L0_FRACTION)
    max_fraction: float = Field(L0_FRACTION, gt=0, le=L0_FRACTION)
    k_step: int = Field(4, ge=1, le=100)
    confidence: float = Field(0.5, gt=0, lt=1)
    candidates_per_class: int = Field(8, ge=1, le=1000)
    # The ensemble: the attacked model plus the judges; at least this many must agree.
    min_judges: int = Field(3, ge=2, le=10)


declare(
    AttackSpec(
        "l0_paste",
        ("l0",),
        ("CAP",),
        L0PasteParams,
        "L0 CAP at the paper's size distribution: paste the most telling pixels of a held-out donor digit; the "
        "attacked model and every judge ([generation] judges, at least two) must see the new class.",
        uses=("judges", "donor_images", "donor_labels"),
        reserves_test=L0_DONORS,
    ),
    default_for=(("l0", "CAP"),),
)


class L2FixedParams(AttackParams):
    wang_steps: int = Field(100, ge=0, le=10000)
    steps: int = Field(60, ge=0, le=10000)
    step: float = Field(0.05, gt=0, le=10)
    ssim_steps: bool = False
    ssim_step: float = Field(0.02, ge=0, le=10)
    select: Literal["first", "best_ssim"] = "first"


declare(
    AttackSpec(
        "l2_fixed",
        ("l2",),
        ADVERSARIAL,
        L2FixedParams,
        "Fixed-L2 attack at L2 = 6 as the paper describes: Wang et al.'s highest- (CAI) or lowest-SSIM (CAP) "
        "start, gradient steps renormalised to 6; an SSIM step per iteration and best-SSIM selection are options.",
        ssim_variant="reflect",
    ),
    default_for=(("l2", "CAI"), ("l2", "CAP")),
)


class LinfPgdSsimParams(AttackParams):
    eps: float = Field(LINF_EPS, gt=0, le=LINF_EPS)
    steps: int = Field(40, ge=1, le=10000)
    alpha: float = Field(0.01, gt=0, le=1)
    ssim_step: float = Field(0.1, ge=0, le=10)
    random_start: bool = True
    select: Literal["final", "best_ssim"] = "final"


declare(
    AttackSpec(
        "linf_pgd_ssim",
        ("linf",),
        ADVERSARIAL,
        LinfPgdSsimParams,
        "Madry PGD at L-inf 0.1 (cross-entropy, projected steps, final iterate) with the same Wang SSIM step, "
        "raising SSIM for CAI and lowering it for CAP.",
        ssim_variant="reflect",
    ),
    default_for=(("linf", "CAI"), ("linf", "CAP")),
)
