"""The default models lpstudy ships (weights in ``workers/models/weights/``) and known external ones."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.design import DEFAULT_JUDGES
from app.design import DEFAULT_MODELS as DEFAULT_MODELS_BY_DATASET

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class DefaultModel:
    """A named model: ``weights`` is a file in ``workers/models/weights/`` or, when ``external``, a path relative to
    the data directory (``$LPSTUDY_DATA_DIR``)."""

    name: str
    dataset: str
    arch: str
    weights: str
    description: str
    external: bool = False

    def weights_path(self, data_dir: str | os.PathLike[str] | None = None) -> Path:
        if self.external:
            from workers.data.datasets import resolve_data_dir

            return resolve_data_dir(data_dir) / self.weights
        return WEIGHTS_DIR / self.weights

    def card_path(self, data_dir: str | os.PathLike[str] | None = None) -> Path:
        return self.weights_path(data_dir).with_suffix(".json")


DEFAULT_MODELS: dict[str, DefaultModel] = {
    m.name: m
    for m in (
        DefaultModel(
            "mnist-default", "mnist", "madry_mnist", "mnist-default.pt",
            "Madry et al. MNIST CNN, PGD adversarial training at L-inf 0.3 (lpstudy's own training).",
        ),
        DefaultModel(
            "mnist-second", "mnist", "cw_mnist", "mnist-second.pt",
            "Carlini-Wagner MNIST CNN, PGD adversarial training at L-inf 0.3, other seed: the independent judge.",
        ),
        DefaultModel(
            "cifar10-default", "cifar10", "preact_resnet18_w32", "cifar10-default.pt",
            "Half-width PreAct ResNet-18, FGSM-RS fast adversarial training at L-inf 8/255.",
        ),
        DefaultModel(
            "mnist-advertorch-lenet5", "mnist", "lenet5_advertorch", "models/mnist_lenet5_advtrained.pt",
            "advertorch's adversarially trained LeNet5 (LGPL-3.0), read from the data directory, not shipped.",
            external=True,
        ),
    )
}

# The study vocabulary names the defaults (app.design); these are the older names.
DEFAULT_FOR_DATASET = dict(DEFAULT_MODELS_BY_DATASET)
JUDGE_FOR_DATASET = {d: js[0] for d, js in DEFAULT_JUDGES.items() if js}
