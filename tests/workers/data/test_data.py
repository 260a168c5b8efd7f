"""Tests of workers.data.datasets on the real data and on files written in the official formats."""

from __future__ import annotations

import gzip
import io
import pickle
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from workers.data import (
    CIFAR10_CLASSES,
    MNIST_CLASSES,
    DatasetError,
    DatasetNotFound,
    load_cifar10,
    load_dataset,
    load_mnist,
)
from workers.data.datasets import parse_idx, read_idx

pytestmark = pytest.mark.realdata


def test_module_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, workers.data, workers.data.fetch, workers.data.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_class_tuples() -> None:
    assert MNIST_CLASSES == tuple("0123456789")
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[-1] == "truck" and len(CIFAR10_CLASSES) == 10


def test_load_mnist_real(data_dir: Path) -> None:
    x, y = load_mnist(data_dir, "test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y, minlength=10).min() > 800
    x2, y2 = load_mnist(data_dir / "mnist", "test")  # the folder itself works too
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_load_mnist_uncompressed_and_npz(data_dir: Path, tmp_path: Path) -> None:
    x, y = load_mnist(data_dir, "test")
    raw = tmp_path / "raw" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for kind in ("images-idx3", "labels-idx1"):
        src = data_dir / "mnist" / f"t10k-{kind}-ubyte.gz"
        (raw / f"t10k-{kind}-ubyte").write_bytes(gzip.decompress(src.read_bytes()))
    x2, y2 = load_mnist(tmp_path / "raw", "test")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)

    npz_dir = tmp_path / "npz"
    npz_dir.mkdir()
    np.savez(npz_dir / "mnist_test.npz", images=x[:50], labels=y[:50])
    x3, y3 = load_mnist(npz_dir, "test")
    assert np.array_equal(x3, x[:50]) and np.array_equal(y3, y[:50])


def test_idx_validation() -> None:
    header = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big")
    assert parse_idx(header + bytes([1, 2, 3])).tolist() == [1, 2, 3]
    with pytest.raises(DatasetError, match="magic"):
        parse_idx(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DatasetError, match="announces"):
        parse_idx(header + bytes([1, 2]))
    with pytest.raises(DatasetError, match="element type"):
        parse_idx(bytes([0, 0, 0x0D, 1]) + (1).to_bytes(4, "big") + b"abcd")


def test_corrupt_mnist_files(data_dir: Path, tmp_path: Path) -> None:
    shutil.copy(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError, match="cannot read IDX"):
        load_mnist(tmp_path, "test")
    # images and labels of different lengths
    x, _ = load_mnist(data_dir, "test")
    raw = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (5, 28, 28)) + x[:5].tobytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(DatasetError, match="labels"):
        load_mnist(tmp_path, "test")
    with pytest.raises(DatasetError):
        read_idx(tmp_path / "does-not-exist.gz")


def test_missing_dataset_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound) as info:
        load_mnist(tmp_path, "train")
    msg = str(info.value)
    assert "lpstudy data fetch mnist" in msg and str(tmp_path) in msg
    with pytest.raises(DatasetNotFound, match="lpstudy data fetch cifar10"):
        load_cifar10(tmp_path, "test")
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "validation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)


def test_load_cifar10_lossless_test(data_dir: Path) -> None:
    x, y = load_cifar10(data_dir, "test")
    assert x.shape == (1000, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (1000,)
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # the official test order
    x2, y2 = load_dataset("cifar10", data_dir, "test")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def _write_batches(folder: Path, parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    folder.mkdir(parents=True)
    for name, (x, y) in parts.items():
        batch = {b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), b"labels": y.astype(int).tolist()}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_python_batches_preferred(data_dir: Path, tmp_path: Path) -> None:
    x, y = load_cifar10(data_dir, "test")
    root = tmp_path / "cifar10"
    parts = {f"data_batch_{i}": (x[i * 100 : (i + 1) * 100], y[i * 100 : (i + 1) * 100]) for i in range(1, 6)}
    parts["test_batch"] = (x[:100], y[:100])
    _write_batches(root / "cifar-10-batches-py", parts)
    np.savez(root / "cifar10_test_first1000.npz", images=x, labels=y)  # batches win over npz
    xt, yt = load_cifar10(tmp_path, "test")
    assert np.array_equal(xt, x[:100]) and np.array_equal(yt, y[:100])
    xtr, ytr = load_cifar10(tmp_path, "train")
    assert np.array_equal(xtr, x[100:600]) and np.array_equal(ytr, y[100:600])
    xn, _ = load_cifar10(tmp_path, "test", source="npz")
    assert len(xn) == 1000


def test_cifar10_batch_pickle_is_restricted(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}))
    with pytest.raises(DatasetError, match="refusing"):
        load_cifar10(tmp_path, "test")


def _jpeg_tar(path: Path, x: np.ndarray, y: np.ndarray, split: str) -> None:
    from PIL import Image

    with tarfile.open(path, "w:gz") as tar:
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=95)
            info = tarfile.TarInfo(f"{split}/{CIFAR10_CLASSES[label]}/{i:04d}.jpg")
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)


def test_cifar10_jpeg_tar_and_lossless_rule(data_dir: Path, tmp_path: Path) -> None:
    x, y = load_cifar10(data_dir, "test")
    _jpeg_tar(tmp_path / "cifar10_jpeg_train50000_test10000.tar.gz", x[:40], y[:40], "train")
    xtr, ytr = load_cifar10(tmp_path, "train")
    assert xtr.shape == (40, 32, 32, 3)
    order = np.lexsort((np.arange(40), y[:40]))  # sorted by class then file name
    assert np.array_equal(ytr, y[:40][order])
    assert np.abs(xtr.astype(int) - x[:40][order].astype(int)).mean() < 8  # JPEG, lossy
    # the test split must not come from JPEGs unless asked
    _jpeg_tar(tmp_path / "cifar10_jpeg_train50000_test10000.tar.gz", x[:20], y[:20], "test")
    with pytest.raises(DatasetNotFound, match="allow_lossy"):
        load_cifar10(tmp_path, "test")
    xt, _ = load_cifar10(tmp_path, "test", allow_lossy=True)
    assert len(xt) == 20


def test_cifar10_extracted_tree(data_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    x, y = load_cifar10(data_dir, "test")
    for i in range(12):
        d = tmp_path / "cifar10" / "train" / CIFAR10_CLASSES[y[i]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(d / f"{i:04d}.png")  # PNG: lossless
    xtr, ytr = load_cifar10(tmp_path, "train")
    order = np.lexsort((np.arange(12), y[:12]))
    assert np.array_equal(xtr, x[:12][order]) and np.array_equal(ytr, y[:12][order])


def test_cifar10_real_jpeg_train_tar_member_names(data_dir: Path) -> None:
    tar_path = data_dir / "cifar10" / "cifar10_jpeg_train50000_test10000.tar.gz"
    if not tar_path.is_file():
        pytest.skip("JPEG archive absent")
    from workers.data.datasets import _JPEG_RE

    with tarfile.open(tar_path) as tar:
        member = next(m for m in tar if m.isfile())
    m = _JPEG_RE.search(member.name)
    assert m is not None and m.group(2) in CIFAR10_CLASSES
