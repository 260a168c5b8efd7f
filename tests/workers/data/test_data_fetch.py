"""Tests of workers.data.fetch against a real HTTP server on 127.0.0.1 serving real files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from workers.data import load_cifar10, load_mnist
from workers.data.cli import app
from workers.data.fetch import SOURCES, ChecksumMismatch, FetchError, download, fetch

pytestmark = pytest.mark.realdata

MNIST_FILES = [f.name for f in SOURCES["mnist"].files]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def serve() -> Iterator:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_mnist_from_local_server(data_dir: Path, tmp_path: Path, serve) -> None:
    src = data_dir / "mnist"
    url = serve(src)
    # the shared .gz wrappers differ from the official ones: inject their checksums
    table = {name: _sha256(src / name) for name in MNIST_FILES}
    target = fetch("mnist", tmp_path / "data", base_url=url, progress=False, checksums=table)
    assert target == tmp_path / "data" / "mnist"
    x, y = load_mnist(tmp_path / "data", "test")
    x0, y0 = load_mnist(data_dir, "test")
    assert np.array_equal(x, x0) and np.array_equal(y, y0)
    assert not list(target.glob("*.part"))
    # present and verified: no second download even if the server is gone
    assert fetch("mnist", tmp_path / "data", base_url="http://127.0.0.1:9", progress=False, checksums=table)


def test_official_checksums_reject_rewrapped_files(data_dir: Path, tmp_path: Path, serve) -> None:
    url = serve(data_dir / "mnist")
    with pytest.raises(ChecksumMismatch, match="checksum mismatch"):
        fetch("mnist", tmp_path, base_url=url, progress=False)
    assert not any(p.is_file() for p in (tmp_path / "mnist").iterdir())  # nothing half-written left


def test_corrupted_download_rejected(data_dir: Path, tmp_path: Path, serve) -> None:
    served = tmp_path / "served"
    served.mkdir()
    good = data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(good.read_bytes())
    data[100] ^= 0xFF  # one flipped byte in transit
    (served / good.name).write_bytes(bytes(data))
    url = serve(served)
    dest = tmp_path / "out" / good.name
    with pytest.raises(ChecksumMismatch):
        download(f"{url}/{good.name}", dest, checksum=_sha256(good), progress=False)
    assert not dest.exists() and not list(dest.parent.iterdir())
    # and a good one goes through atomically
    (served / good.name).write_bytes(good.read_bytes())
    download(f"{url}/{good.name}", dest, checksum=_sha256(good), progress=False)
    assert dest.read_bytes() == good.read_bytes()


def test_http_error_is_fetch_error(tmp_path: Path, serve) -> None:
    url = serve(tmp_path)
    with pytest.raises(FetchError, match="404"):
        download(f"{url}/missing.gz", tmp_path / "x" / "missing.gz", progress=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch("svhn", tmp_path)


def test_fetch_cifar10_archive(data_dir: Path, tmp_path: Path, serve, monkeypatch: pytest.MonkeyPatch) -> None:
    # a real-pixel archive in the official layout (cifar-10-batches-py/ with pickled batches)
    x, y = load_cifar10(data_dir, "test")
    build = tmp_path / "build" / "cifar-10-batches-py"
    build.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        xs, ys = x[i * 50 : (i + 1) * 50], y[i * 50 : (i + 1) * 50]
        batch = {b"data": xs.transpose(0, 3, 1, 2).reshape(50, -1), b"labels": ys.astype(int).tolist()}
        (build / name).write_bytes(pickle.dumps(batch))
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(build, arcname="cifar-10-batches-py")
    monkeypatch.setenv("LPSTUDY_DATA_MIRROR", serve(served))
    target = fetch("cifar10", tmp_path / "data", progress=False, checksums={archive.name: _sha256(archive)})
    assert not (target / archive.name).exists()  # archive removed after extraction
    xt, yt = load_cifar10(tmp_path / "data", "test")
    assert np.array_equal(xt, x[250:300]) and np.array_equal(yt, y[250:300])
    xtr, _ = load_cifar10(tmp_path / "data", "train")
    assert np.array_equal(xtr, x[:250])


def test_cli_fetch(data_dir: Path, tmp_path: Path, serve) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["fetch", "imagenet", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown dataset" in res.output
    url = serve(data_dir / "mnist")
    res = runner.invoke(app, ["fetch", "mnist", "--data-dir", str(tmp_path), "--base-url", url, "-q"])
    assert res.exit_code == 1 and "checksum mismatch" in res.output
