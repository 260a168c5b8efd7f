"""Readers for the datasets lpstudy uses (MNIST and CIFAR-10).

This module deliberately depends only on numpy, PIL and the standard library (no torch): the web app imports
it to show and cut stimuli.

All readers return ``uint8`` arrays:

- :func:`load_mnist` -> images ``[N, 28, 28]`` and labels ``[N]``;
- :func:`load_cifar10` -> images ``[N, 32, 32, 3]`` (RGB, HWC) and labels ``[N]``.

They look for the files in ``data_dir`` and in the usual sub-folders (``mnist/``, ``MNIST/raw/``,
``cifar10/``, ``cifar-10-batches-py/`` ...). A missing dataset raises :class:`DatasetNotFound` with the list
of places searched; a corrupt file raises :class:`DatasetError`.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import pickle
import re
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from app.design import CLASS_NAMES

logger = logging.getLogger(__name__)

Split = Literal["train", "test"]
CifarSource = Literal["auto", "batches", "npz", "jpeg"]

DATA_DIR_ENV = "LPSTUDY_DATA_DIR"

MNIST_CLASSES: tuple[str, ...] = CLASS_NAMES["mnist"]
CIFAR10_CLASSES: tuple[str, ...] = CLASS_NAMES["cifar10"]

MNIST_SIZES = {"train": 60000, "test": 10000}
CIFAR10_SIZES = {"train": 50000, "test": 10000}
CIFAR10_JPEG_TAR = "cifar10_jpeg_train50000_test10000.tar.gz"

_IDX_DTYPES = {0x08: np.uint8}
_MNIST_PREFIX = {"train": "train", "test": "t10k"}


class DatasetError(Exception):
    """A dataset file exists but cannot be read (corrupt, truncated, wrong shape or magic number)."""


class DatasetNotFound(DatasetError, FileNotFoundError):
    """The dataset is not present in the data directory."""


# --------------------------------------------------------------------------------------------------------
# data directory
# --------------------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """The data directory: ``$LPSTUDY_DATA_DIR`` if set, else ``~/.cache/lpstudy/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lpstudy" / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir`` as a Path, or :func:`default_data_dir` when it is None."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _not_found(name: str, searched: Iterable[Path], extra: str = "") -> DatasetNotFound:
    places = "\n  ".join(str(p) for p in searched)
    msg = (
        f"{name} not found. Looked in:\n  {places}\n"
        f"Download it with `lpstudy data fetch {name.split()[0].lower().replace('-', '')} --data-dir DIR` "
        f"or point ${DATA_DIR_ENV} at a folder that holds it."
    )
    if extra:
        msg += "\n" + extra
    return DatasetNotFound(msg)


# --------------------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------------------


def _mnist_dirs(root: Path) -> list[Path]:
    subs = ["", "mnist", "MNIST", "mnist/raw", "MNIST/raw", "mnist/MNIST/raw"]
    return [root / s if s else root for s in subs]


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed when its name ends in ``.gz``) into a numpy array.

    Raises :class:`DatasetError` for a wrong magic number, an unsupported type or a size mismatch.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    return parse_idx(raw, source=str(path))


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{source}: not an IDX file (bad magic number)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise DatasetError(f"{source}: unsupported IDX element type 0x{type_code:02x} (only ubyte)")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{source}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DatasetError(
            f"{source}: IDX header announces {dims} = {expected} bytes but the file holds {len(raw) - offset}"
        )
    return np.frombuffer(raw, dtype=_IDX_DTYPES[type_code], offset=offset).reshape(dims).copy()


def _find_first(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    for d in dirs:
        for n in names:
            p = d / n
            if p.is_file():
                return p
    return None


def _validate(images: np.ndarray, labels: np.ndarray, shape: tuple[int, ...], source: str) -> None:
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DatasetError(f"{source}: expected uint8 arrays, got {images.dtype} and {labels.dtype}")
    if images.ndim != len(shape) + 1 or tuple(images.shape[1:]) != shape:
        raise DatasetError(f"{source}: expected images of shape [N, {', '.join(map(str, shape))}], "
                           f"got {list(images.shape)}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DatasetError(f"{source}: {images.shape[0]} images but labels of shape {list(labels.shape)}")
    if labels.size and int(labels.max()) > 9:
        raise DatasetError(f"{source}: labels outside 0..9 (max {int(labels.max())})")


def _load_npz(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "images" not in data or "labels" not in data:
                raise DatasetError(f"{path}: npz must hold arrays 'images' and 'labels', has {list(data)}")
            images = np.asarray(data["images"])
            labels = np.asarray(data["labels"])
    except DatasetError:
        raise
    except Exception as exc:  # zipfile/ValueError/OSError on a corrupt archive
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if labels.dtype != np.uint8 and np.issubdtype(labels.dtype, np.integer):
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DatasetError(f"{path}: labels outside 0..9")
        labels = labels.astype(np.uint8)
    _validate(images, labels, shape, str(path))
    return images, labels


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, split: Split = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST: ``(images uint8 [N, 28, 28], labels uint8 [N])``.

    Reads the official IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without ``.gz``),
    or ``mnist_{split}.npz`` with arrays ``images`` and ``labels``.
    """
    _check_split(split)
    root = resolve_data_dir(data_dir)
    dirs = _mnist_dirs(root)
    prefix = _MNIST_PREFIX[split]
    img_names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"]
    lbl_names = [f"{prefix}-labels-idx1-ubyte.gz", f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"]
    img_path = _find_first(dirs, img_names)
    lbl_path = _find_first(dirs, lbl_names)
    if img_path is not None and lbl_path is not None:
        images = read_idx(img_path)
        labels = read_idx(lbl_path)
        _validate(images, labels, (28, 28), str(img_path))
        logger.debug("MNIST %s: %d images from %s", split, len(labels), img_path)
        return images, labels
    npz = _find_first(dirs, [f"mnist_{split}.npz"])
    if npz is not None:
        return _load_npz(npz, (28, 28))
    raise _not_found(f"MNIST {split} split", dirs, f"Expected {img_names[0]} + {lbl_names[0]} or mnist_{split}.npz.")


# --------------------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------------------


def _cifar_dirs(root: Path) -> list[Path]:
    subs = ["", "cifar10", "cifar-10", "CIFAR10", "CIFAR-10"]
    return [root / s if s else root for s in subs]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the official CIFAR batches: only numpy array reconstruction is allowed."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except Exception as exc:
        raise DatasetError(f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: not a CIFAR-10 batch (not a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DatasetError(f"{path}: CIFAR-10 batch lacks 'data' or 'labels'")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: expected uint8 data [N, 3072], got {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetError(f"{path}: bad labels")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def _find_cifar_batches(dirs: Sequence[Path], split: Split) -> list[Path] | None:
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    for d in dirs:
        for base in (d / "cifar-10-batches-py", d):
            paths = [base / n for n in names]
            if all(p.is_file() for p in paths):
                return paths
    return None


def _find_cifar_npz(dirs: Sequence[Path], split: Split) -> list[Path]:
    found: list[Path] = []
    for d in dirs:
        if not d.is_dir():
            continue
        exact = d / f"cifar10_{split}.npz"
        if exact.is_file():
            found.append(exact)
        found.extend(sorted(p for p in d.glob(f"cifar10_{split}_*.npz") if p.is_file()))
    return found


def _npz_len(path: Path) -> int:
    try:
        with np.load(path, allow_pickle=False) as data:
            # reading the array header only is not exposed by np.load; labels are small, read them
            return int(np.asarray(data["labels"]).shape[0]) if "labels" in data else -1
    except Exception:
        return -1


_JPEG_RE = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+\.(?:jpe?g|png))$", re.IGNORECASE)


def _decode_image(raw: bytes, source: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise DatasetError(f"cannot decode image {source}: {exc}") from exc
    if arr.shape != (32, 32, 3):
        raise DatasetError(f"{source}: expected a 32x32 RGB image, got {arr.shape}")
    return arr


def _finish_tree(items: list[tuple[int, str, np.ndarray]], source: str) -> tuple[np.ndarray, np.ndarray]:
    if not items:
        raise DatasetError(f"{source}: no images found")
    items.sort(key=lambda t: (t[0], t[1]))
    images = np.stack([t[2] for t in items])
    labels = np.array([t[0] for t in items], dtype=np.uint8)
    return images, labels


def _class_index(name: str, source: str) -> int:
    try:
        return CIFAR10_CLASSES.index(name)
    except ValueError:
        raise DatasetError(f"{source}: unknown CIFAR-10 class folder {name!r}") from None


def read_image_tree_tar(path: str | os.PathLike[str], split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Read ``{split}/<class>/*.jpg`` straight from a (gzip) tar archive, sorted by class then file name."""
    path = Path(path)
    items: list[tuple[int, str, np.ndarray]] = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                m = _JPEG_RE.search(member.name)
                if m is None or m.group(1).lower() != split:
                    continue
                label = _class_index(m.group(2), str(path))
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                items.append((label, m.group(3), _decode_image(fh.read(), f"{path}:{member.name}")))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"cannot read image archive {path}: {exc}") from exc
    return _finish_tree(items, f"{path} ({split}/)")


def read_image_tree_dir(root: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read an extracted ``<class>/*.jpg`` folder tree, sorted by class then file name."""
    root = Path(root)
    items: list[tuple[int, str, np.ndarray]] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _class_index(class_dir.name, str(root))
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in (".jpg", ".jpeg", ".png") and f.is_file():
                items.append((label, f.name, _decode_image(f.read_bytes(), str(f))))
    return _finish_tree(items, str(root))


def _find_cifar_tree(dirs: Sequence[Path], split: Split) -> tuple[str, Path] | None:
    for d in dirs:
        tree = d / split
        if tree.is_dir() and any((tree / c).is_dir() for c in CIFAR10_CLASSES):
            return "dir", tree
    for d in dirs:
        tar = d / CIFAR10_JPEG_TAR
        if tar.is_file():
            return "tar", tar
    return None


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    split: Split = "test",
    *,
    allow_lossy: bool = False,
    source: CifarSource = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10: ``(images uint8 [N, 32, 32, 3] RGB HWC, labels uint8 [N])``.

    Sources, in order of preference for ``source="auto"``:

    1. the official python batches (``cifar-10-batches-py/test_batch``, ``data_batch_1..5``);
    2. ``cifar10_{split}.npz`` / ``cifar10_{split}_*.npz`` holding the full split (lossless);
    3. the JPEG class-per-folder tree (``{split}/<class>/*.jpg``, extracted or inside
       ``cifar10_jpeg_train50000_test10000.tar.gz``): used for the train split, and for the test split only
       when ``allow_lossy=True`` (stimuli need lossless images);
    4. an ``.npz`` holding a lossless subset of the split (e.g. ``cifar10_test_first1000.npz``).

    JPEG-sourced images are ordered by class then file name, not in the official order.
    """
    _check_split(split)
    if source not in ("auto", "batches", "npz", "jpeg"):
        raise ValueError(f"source must be auto, batches, npz or jpeg, got {source!r}")
    root = resolve_data_dir(data_dir)
    dirs = _cifar_dirs(root)
    lossy_ok = allow_lossy or split == "train" or source == "jpeg"

    if source in ("auto", "batches"):
        batches = _find_cifar_batches(dirs, split)
        if batches is not None:
            parts = [_read_cifar_batch(p) for p in batches]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            logger.debug("CIFAR-10 %s: %d images from python batches", split, len(labels))
            return images, labels
        if source == "batches":
            raise _not_found(f"CIFAR-10 {split} python batches", dirs)

    npzs = _find_cifar_npz(dirs, split) if source in ("auto", "npz") else []
    if source == "npz":
        if not npzs:
            raise _not_found(f"CIFAR-10 {split} npz", dirs)
        return _load_npz(max(npzs, key=_npz_len), (32, 32, 3))
    full = [p for p in npzs if _npz_len(p) == CIFAR10_SIZES[split]]
    if full:
        return _load_npz(full[0], (32, 32, 3))

    if source == "jpeg" or (source == "auto" and lossy_ok):
        tree = _find_cifar_tree(dirs, split)
        if tree is not None:
            kind, path = tree
            logger.info("reading CIFAR-10 %s split from JPEG images in %s (lossy)", split, path)
            return read_image_tree_dir(path) if kind == "dir" else read_image_tree_tar(path, split)
        if source == "jpeg":
            raise _not_found(f"CIFAR-10 {split} JPEG tree", dirs)

    if npzs:
        best = max(npzs, key=_npz_len)
        logger.info("CIFAR-10 %s: using the lossless subset %s", split, best)
        return _load_npz(best, (32, 32, 3))

    extra = ""
    if split == "test" and not allow_lossy and _find_cifar_tree(dirs, split) is not None:
        extra = "A JPEG tree exists but is lossy; pass allow_lossy=True to use it anyway (not for stimuli)."
    raise _not_found(f"CIFAR-10 {split} split", dirs, extra)


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, split: Split = "test", **kwargs: object
) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch to :func:`load_mnist` or :func:`load_cifar10` by name (``mnist`` / ``cifar10``)."""
    key = name.lower().replace("-", "")
    if key == "mnist":
        return load_mnist(data_dir, split)
    if key == "cifar10":
        return load_cifar10(data_dir, split, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown dataset {name!r}: expected 'mnist' or 'cifar10'")


DATASET_CLASSES: dict[str, tuple[str, ...]] = dict(CLASS_NAMES)
