"""Architecture registry: ``@register_arch(name, dataset)`` on a factory returning an ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from app.design import IMAGE_SHAPES, NUM_CLASSES

# Per-dataset input geometry and the default input normalisation (mean, std per channel).
DATASET_INFO: dict[str, dict] = {
    d: {"input_shape": (c, h, w), "num_classes": NUM_CLASSES} for d, (h, w, c) in IMAGE_SHAPES.items()
}
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


@dataclass(frozen=True)
class ArchInfo:
    """A registered architecture."""

    name: str
    dataset: str
    factory: Callable[[], nn.Module]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return DATASET_INFO[self.dataset]["input_shape"]

    @property
    def num_classes(self) -> int:
        return DATASET_INFO[self.dataset]["num_classes"]

    def build(self) -> nn.Module:
        return self.factory()


_REGISTRY: dict[str, ArchInfo] = {}


class UnknownArch(KeyError):
    """No architecture of that name is registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown architecture"


def register_arch(
    name: str,
    dataset: str,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    description: str = "",
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator registering a zero-argument factory under ``name`` for ``dataset`` (mnist or cifar10).

    ``mean``/``std`` are the per-channel normalisation the architecture expects (default: none, i.e. the
    network sees [0, 1] inputs).
    """
    if dataset not in DATASET_INFO:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASET_INFO)}")
    channels = DATASET_INFO[dataset]["input_shape"][0]

    def deco(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        m = tuple(mean) if mean is not None else (0.0,) * channels
        s = tuple(std) if std is not None else (1.0,) * channels
        if len(m) != channels or len(s) != channels:
            raise ValueError(f"{name}: mean/std need {channels} values")
        doc = description or ((factory.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[name] = ArchInfo(name=name, dataset=dataset, factory=factory, mean=m, std=s, description=doc)
        return factory

    return deco


def get_arch(name: str) -> ArchInfo:
    """The registered architecture ``name``; raises :class:`UnknownArch` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise UnknownArch(f"unknown architecture {name!r}; registered: {known}") from None


def list_archs(dataset: str | None = None) -> list[ArchInfo]:
    """All registered architectures (optionally only those for ``dataset``), sorted by name."""
    return sorted((a for a in _REGISTRY.values() if dataset is None or a.dataset == dataset), key=lambda a: a.name)
