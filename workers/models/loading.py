"""Save and load models: registered defaults, our checkpoints, TorchScript files, ``package.module:factory``."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.models import archs as _archs  # noqa: F401  (registers the architectures)
from workers.models.defaults import DEFAULT_MODELS, DefaultModel
from workers.models.registry import DATASET_INFO, UnknownArch, get_arch
from workers.models.wrapper import NormalizedModel

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "lpstudy-model/1"
PathLike = str | os.PathLike[str]


class ModelLoadError(Exception):
    """A model spec could not be resolved or loaded."""


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_model_id(name: str, path: PathLike | None) -> str:
    """``name@<first 12 hex digits of the weights file's sha256>`` (``name@noweights`` without a file)."""
    return f"{name}@{sha256_file(path)[:12]}" if path is not None else f"{name}@noweights"


def is_torchscript(path: PathLike) -> bool:
    """True if ``path`` is a TorchScript archive (a zip holding ``code/`` and ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model_file(
    path: PathLike,
    model: nn.Module,
    arch: str,
    *,
    normalization: Mapping[str, Sequence[float]] | None = None,
    card: Mapping[str, Any] | None = None,
    half: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint ``{"format", "arch", "dataset", "state_dict", "normalization", "card", ...}``.

    ``model`` is the bare network (not the wrapper). ``half`` stores floating tensors as fp16 (loading converts
    them back to fp32). ``extra`` adds keys (e.g. the trainer's resume state). The write is atomic.
    """
    info = get_arch(arch)
    if isinstance(model, NormalizedModel):
        model = model.model
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    norm = dict(normalization) if normalization is not None else {"mean": list(info.mean), "std": list(info.std)}
    obj: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "dataset": info.dataset,
        "state_dict": state,
        "normalization": {"mean": [float(x) for x in norm["mean"]], "std": [float(x) for x in norm["std"]]},
        "card": json.loads(json.dumps(dict(card or {}))),
    }
    if extra:
        obj.update(extra)
    path = Path(path)
    _atomic_torch_save(obj, path)
    return path


def read_checkpoint(path: PathLike) -> dict[str, Any]:
    """``torch.load`` (weights only, on the CPU) with a clear error."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot read {path} as a PyTorch file: {exc}") from exc
    return obj


def _build(arch: str, state_dict: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    try:
        info = get_arch(arch)
    except UnknownArch as exc:
        raise ModelLoadError(f"{source}: {exc}") from None
    net = info.build()
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
    except RuntimeError as exc:
        raise ModelLoadError(f"{source}: the state_dict does not fit architecture {arch!r}: {exc}") from exc
    return net


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _finish(model: NormalizedModel, device: str | torch.device, freeze: bool) -> NormalizedModel:
    model = model.to(device).eval()
    if freeze:
        model.requires_grad_(False)
    return model


def _norm_args(
    normalization: Mapping[str, Sequence[float]] | None, default: tuple[Sequence[float], Sequence[float]]
) -> tuple[Sequence[float], Sequence[float]]:
    if normalization is None:
        return default
    return normalization["mean"], normalization["std"]


def _load_default(
    entry: DefaultModel, device: str | torch.device, freeze: bool, data_dir: PathLike | None
) -> NormalizedModel:
    path = entry.weights_path(data_dir)
    if not path.is_file():
        where = "the data directory ($LPSTUDY_DATA_DIR)" if entry.external else "workers/models/weights/"
        raise ModelLoadError(f"weights of the default model {entry.name!r} are missing: {path} (expected in {where})")
    model = load_model(path, device=device, arch=entry.arch, name=entry.name, dataset=entry.dataset, freeze=freeze)
    card_path = entry.card_path(data_dir)
    if card_path.is_file():
        try:
            model.card = json.loads(card_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"model card {card_path} is not valid JSON: {exc}") from exc
    return model


def _load_factory(
    spec: str, weights: PathLike | None, name: str | None, dataset: str | None, normalization, device, freeze
) -> NormalizedModel:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(f"cannot import module {module_name!r} for model spec {spec!r}: {exc}") from exc
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ModelLoadError(f"module {module_name!r} has no attribute {attr!r} (model spec {spec!r})")
    if not callable(factory):
        raise ModelLoadError(f"{spec!r} is not callable")
    net = factory()
    if not isinstance(net, nn.Module):
        raise ModelLoadError(f"{spec!r} returned {type(net).__name__}, not a torch.nn.Module")
    if weights is not None:
        wpath = Path(weights)
        if not wpath.is_file():
            raise ModelLoadError(f"state_dict file not found: {wpath}")
        obj = read_checkpoint(wpath)
        if isinstance(obj, Mapping) and "state_dict" in obj and not _is_state_dict(obj):
            if normalization is None and "normalization" in obj:
                normalization = obj["normalization"]
            obj = obj["state_dict"]
        if not _is_state_dict(obj):
            raise ModelLoadError(f"{wpath} does not hold a state_dict")
        try:
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in obj.items()})
        except RuntimeError as exc:
            raise ModelLoadError(f"{wpath} does not fit {spec!r}: {exc}") from exc
    else:
        logger.warning("model %s loaded without weights (randomly initialised)", spec)
    channels = DATASET_INFO[dataset]["input_shape"][0] if dataset in DATASET_INFO else None
    mean, std = _norm_args(normalization, ((0.0,) * (channels or 1), (1.0,) * (channels or 1)))
    label = name or spec
    wrapped = NormalizedModel(
        net, mean, std, name=label, model_id=make_model_id(label, weights), dataset=dataset, arch=spec,
        input_shape=DATASET_INFO[dataset]["input_shape"] if dataset in DATASET_INFO else None,
    )
    return _finish(wrapped, device, freeze)


def _looks_like_factory(spec: str) -> bool:
    if ":" not in spec or Path(spec).exists():
        return False
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or len(module_name) == 1:  # "C:\..." drive letters
        return False
    return all(p.isidentifier() for p in module_name.split(".")) and all(p.isidentifier() for p in attr.split("."))


def load_model(
    spec: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    arch: str | None = None,
    weights: PathLike | None = None,
    name: str | None = None,
    dataset: str | None = None,
    normalization: Mapping[str, Sequence[float]] | None = None,
    freeze: bool = True,
    data_dir: PathLike | None = None,
) -> NormalizedModel:
    """Load a model wrapped in :class:`NormalizedModel` (takes [0, 1] NCHW images, returns logits).

    ``spec`` is one of:

    - a default model name (``mnist-default``, ``mnist-second``, ``cifar10-default``,
      ``mnist-advertorch-lenet5`` read from ``data_dir``/``$LPSTUDY_DATA_DIR``);
    - a checkpoint written by lpstudy's trainer (:func:`save_model_file`);
    - a plain state_dict file, with ``arch=`` naming a registered architecture;
    - a TorchScript file (normalisation assumed inside unless ``normalization=`` is given);
    - ``package.module:factory`` (a zero-argument callable returning an ``nn.Module``), with ``weights=`` a
      state_dict file.

    The model is returned in eval mode on ``device``; with ``freeze`` its parameters do not require grad.
    ``model.model_id`` is ``name@sha256[:12]`` of the weights file.
    """
    spec_str = os.fspath(spec)
    if spec_str in DEFAULT_MODELS:
        return _load_default(DEFAULT_MODELS[spec_str], device, freeze, data_dir)
    if _looks_like_factory(spec_str):
        return _load_factory(spec_str, weights, name, dataset, normalization, device, freeze)

    path = Path(spec_str)
    if not path.is_file():
        known = ", ".join(DEFAULT_MODELS)
        raise ModelLoadError(
            f"model {spec_str!r} not found: not a default model ({known}), not an existing file, "
            "and not a 'package.module:factory' spec"
        )
    label = name or path.stem
    model_id = make_model_id(label, path)

    if is_torchscript(path):
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream but still the portable format
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelLoadError(f"cannot load TorchScript file {path}: {exc}") from exc
        ds = dataset
        channels = DATASET_INFO[ds]["input_shape"][0] if ds in DATASET_INFO else 1
        mean, std = _norm_args(normalization, ((0.0,) * channels, (1.0,) * channels))
        wrapped = NormalizedModel(
            net, mean, std, name=label, model_id=model_id, dataset=ds, arch="torchscript",
            input_shape=DATASET_INFO[ds]["input_shape"] if ds in DATASET_INFO else None,
        )
        return _finish(wrapped, device, freeze)

    obj = read_checkpoint(path)
    card: dict[str, Any] | None = None
    if isinstance(obj, Mapping) and "state_dict" in obj and not _is_state_dict(obj):
        arch_name = arch or obj.get("arch")
        if not arch_name:
            raise ModelLoadError(f"{path}: checkpoint names no architecture; pass arch=")
        state = obj["state_dict"]
        if normalization is None:
            normalization = obj.get("normalization")
        card = dict(obj.get("card") or {}) or None
    elif _is_state_dict(obj):
        if not arch:
            raise ModelLoadError(
                f"{path} is a bare state_dict: name its architecture with arch= (e.g. --arch lenet5_advertorch)"
            )
        arch_name, state = arch, obj
    else:
        raise ModelLoadError(f"{path}: not a TorchScript file, an lpstudy checkpoint or a state_dict")

    net = _build(arch_name, state, str(path))
    info = get_arch(arch_name)
    if dataset is not None and dataset != info.dataset:
        raise ModelLoadError(f"{path}: architecture {arch_name!r} is for {info.dataset}, not {dataset}")
    mean, std = _norm_args(normalization, (info.mean, info.std))
    json_card = path.with_suffix(".json")
    if json_card.is_file():
        try:
            card = json.loads(json_card.read_text())
        except json.JSONDecodeError:
            logger.warning("ignoring invalid model card %s", json_card)
    wrapped = NormalizedModel(
        net, mean, std, name=label, model_id=model_id, dataset=info.dataset, arch=arch_name, card=card,
        input_shape=info.input_shape,
    )
    return _finish(wrapped, device, freeze)


def list_models(data_dir: PathLike | None = None) -> list[dict[str, Any]]:
    """The named models: name, dataset, arch, weights path, card path and whether the weights exist."""
    rows = []
    for m in DEFAULT_MODELS.values():
        w = m.weights_path(data_dir)
        rows.append(
            {
                "name": m.name,
                "dataset": m.dataset,
                "arch": m.arch,
                "weights": str(w),
                "card": str(m.card_path(data_dir)),
                "available": w.is_file(),
                "description": m.description,
            }
        )
    return rows


def export_torchscript(model: NormalizedModel, out: PathLike) -> Path:
    """Trace ``model`` (normalisation included) to a TorchScript file taking [0, 1] images."""
    shape = model.input_shape or DATASET_INFO.get(model.dataset or "", {}).get("input_shape")
    if shape is None:
        raise ModelLoadError("cannot export: the model's input shape is unknown")
    model = model.cpu().eval()
    example = torch.rand(2, *shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, example, check_trace=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            traced.save(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
