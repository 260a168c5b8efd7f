"""Architectures, the normalising wrapper and model loading (imports torch)."""

from workers.nets import archs as _archs  # noqa: F401  (registers the architectures)
from workers.nets.defaults import DEFAULT_FOR_DATASET, DEFAULT_MODELS, JUDGE_FOR_DATASET, WEIGHTS_DIR, DefaultModel
from workers.nets.loading import (
    CHECKPOINT_FORMAT,
    ModelLoadError,
    export_torchscript,
    is_torchscript,
    list_models,
    load_model,
    make_model_id,
    read_checkpoint,
    save_model_file,
    sha256_file,
)
from workers.nets.registry import ArchInfo, UnknownArch, get_arch, list_archs, register_arch
from workers.nets.wrapper import NormalizedModel, images_to_tensor, labels_to_tensor

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_FOR_DATASET",
    "DEFAULT_MODELS",
    "JUDGE_FOR_DATASET",
    "WEIGHTS_DIR",
    "ArchInfo",
    "DefaultModel",
    "ModelLoadError",
    "NormalizedModel",
    "UnknownArch",
    "export_torchscript",
    "get_arch",
    "images_to_tensor",
    "is_torchscript",
    "labels_to_tensor",
    "list_archs",
    "list_models",
    "load_model",
    "make_model_id",
    "read_checkpoint",
    "register_arch",
    "save_model_file",
    "sha256_file",
]
