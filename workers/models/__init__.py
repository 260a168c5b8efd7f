"""Models: architectures, the normalising wrapper, loading, training and evaluation (torch).

``archs.py`` (the architectures), ``registry.py`` (the architecture registry), ``wrapper.py``
(``NormalizedModel``), ``loading.py`` (``load_model`` and model files), ``defaults.py`` (the shipped models,
weights in ``weights/``), ``train/`` (adversarial training), ``evaluate.py`` and ``cli.py`` (``lpstudy models ...``).

The names below are loaded on first use, so that importing ``workers.models.cli`` (which the web process's
CLI mounts) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHECKPOINT_FORMAT": "loading",
    "ModelLoadError": "loading",
    "export_torchscript": "loading",
    "is_torchscript": "loading",
    "list_models": "loading",
    "load_model": "loading",
    "make_model_id": "loading",
    "read_checkpoint": "loading",
    "save_model_file": "loading",
    "sha256_file": "loading",
    "DEFAULT_FOR_DATASET": "defaults",
    "DEFAULT_MODELS": "defaults",
    "JUDGE_FOR_DATASET": "defaults",
    "WEIGHTS_DIR": "defaults",
    "DefaultModel": "defaults",
    "ArchInfo": "registry",
    "UnknownArch": "registry",
    "get_arch": "registry",
    "list_archs": "registry",
    "register_arch": "registry",
    "NormalizedModel": "wrapper",
    "images_to_tensor": "wrapper",
    "labels_to_tensor": "wrapper",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workers.models' has no attribute {name!r}")
    if module in ("loading", "registry"):
        importlib.import_module("workers.models.archs")  # registers the architectures
    value = getattr(importlib.import_module(f"workers.models.{module}"), name)
    globals()[name] = value
    return value
