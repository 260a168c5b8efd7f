"""The study vocabulary, defined once: conditions, norms, datasets, budgets, default models and counts.

Sharif, Bauer & Reiter (2018): an L0 study on MNIST and L2 and L-inf studies on CIFAR-10; between subjects,
participants see benign images (CB), adversarial images meant to be imperceptible (CAI) or perceptible (CAP)
within the same budget. No torch here: the web app, the CLI and ``workers/`` all import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

Condition = Literal["CB", "CAI", "CAP"]
Norm = Literal["l0", "l2", "linf"]
Dataset = Literal["mnist", "cifar10"]
Device = Literal["auto", "cpu", "cuda"]

CONDITIONS: tuple[Condition, ...] = get_args(Condition)
# The conditions whose stimuli an attack makes, inside the study's budget (CB shows the source image as it is).
ADVERSARIAL: tuple[Condition, ...] = ("CAI", "CAP")
NORMS: tuple[Norm, ...] = get_args(Norm)
DATASETS: tuple[Dataset, ...] = get_args(Dataset)
DEVICES: tuple[Device, ...] = get_args(Device)

CONDITION_NAMES: dict[str, str] = {
    "CB": "benign",
    "CAI": "adversarial, meant to be imperceptible",
    "CAP": "adversarial, meant to be perceptible",
}
NORM_NAMES: dict[str, str] = {"l0": "L0", "l2": "L2", "linf": "L-inf"}

# Which norms a dataset can be studied under. L0 runs on MNIST only: its attacks (JSMA's pixel flips, CAP's
# copied digit strokes) are defined for grey digits, as in the paper. L2 and L-inf work on both.
DATASET_NORMS: dict[str, tuple[Norm, ...]] = {"mnist": ("l0", "l2", "linf"), "cifar10": ("l2", "linf")}
# The paper's pairing, used where a dataset or a norm is not given.
PAPER_DATASET: dict[str, Dataset] = {"l0": "mnist", "l2": "cifar10", "linf": "cifar10"}

# (height, width, channels) of a dataset's images.
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
NUM_CLASSES = 10
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(i) for i in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}

# The models stimuli are made against, and the judges of the automated L0 CAP: models of other architectures
# or training data that must see the same new class (see workers/models/defaults.py; the advertorch LeNet5
# is read from the data directory).
DEFAULT_MODELS: dict[str, str] = {"mnist": "mnist-default", "cifar10": "cifar10-default"}
DEFAULT_JUDGES: dict[str, tuple[str, ...]] = {"mnist": ("mnist-second", "mnist-advertorch-lenet5"), "cifar10": ()}

# The paper's number of source images per study: every condition gets a stimulus for each of them.
DEFAULT_SOURCE_IMAGES: dict[str, int] = {"l0": 75, "l2": 100, "linf": 100}

# Budgets, with pixels in [0, 1]: L0 at most 15% of the pixels; L2 exactly 6 (within a rounding tolerance);
# L-inf at most 0.1.
L0_FRACTION = 0.15
L2_TARGET = 6.0
L2_TOL = 0.01
LINF_EPS = 0.1


@dataclass(frozen=True)
class Budget:
    """The budget of one study's adversarial stimuli."""

    norm: Norm
    l0_fraction: float = L0_FRACTION
    l2_target: float = L2_TARGET
    l2_tol: float = L2_TOL
    linf_eps: float = LINF_EPS

    def describe(self) -> str:
        if self.norm == "l0":
            return f"L0 <= {self.l0_fraction:.0%} of pixels"
        if self.norm == "l2":
            return f"{self.l2_target - self.l2_tol:g} <= L2 <= {self.l2_target + self.l2_tol:g}"
        return f"Linf <= {self.linf_eps:g}"


BUDGETS: dict[str, Budget] = {n: Budget(n) for n in NORMS}


def l0_max_pixels(h: int, w: int, fraction: float = L0_FRACTION) -> int:
    """The largest allowed number of changed pixels for an ``h x w`` image."""
    return int(math.floor(h * w * fraction + 1e-9))


def linf_levels(eps: float = LINF_EPS) -> int:
    """The largest allowed per-channel change in 8-bit levels."""
    return int(math.floor(eps * 255 + 1e-9))


def study_pair_problem(dataset: str, norm: str) -> str | None:
    """Why ``dataset`` cannot be studied under ``norm`` (None: it can)."""
    if dataset not in DATASETS:
        return f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
    if norm not in NORMS:
        return f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}"
    allowed = DATASET_NORMS[dataset]
    if norm not in allowed:
        return f"the {NORM_NAMES[norm]} study does not run on {dataset}: {dataset} allows {', '.join(allowed)}" + (
            " (L0 is an MNIST study: its attacks are defined for grey digits)" if norm == "l0" else ""
        )
    return None


def check_study(dataset: str, norm: str) -> None:
    """Raise ValueError unless ``dataset`` can be studied under ``norm``."""
    problem = study_pair_problem(dataset, norm)
    if problem:
        raise ValueError(problem)
