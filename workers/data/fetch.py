"""Download MNIST and CIFAR-10 from their official sources, with checksums and atomic writes.

Only the standard library, numpy and tqdm are used. The base URL can be overridden (``base_url=`` or the
environment variable ``LPSTUDY_DATA_MIRROR``) for mirrors and tests; then each file is fetched from
``{base_url}/{file name}``. A checksum table can be injected (``checksums=``) for mirrors whose files differ
from the official ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from workers.data.datasets import (
    DatasetError,
    _find_cifar_batches,
    read_idx,
    resolve_data_dir,
)

logger = logging.getLogger(__name__)

MIRROR_ENV = "LPSTUDY_DATA_MIRROR"
CHUNK = 1 << 16


class FetchError(Exception):
    """A download failed (network error, HTTP error, bad archive)."""


class ChecksumMismatch(FetchError):
    """A downloaded file does not have the expected checksum; the partial file was removed."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset and its expected checksum (``md5:<hex>`` or ``sha256:<hex>``)."""

    name: str
    checksum: str


@dataclass(frozen=True)
class DatasetSource:
    name: str
    base_url: str
    subdir: str
    files: tuple[RemoteFile, ...]
    extract: bool = False


SOURCES: dict[str, DatasetSource] = {
    # The official files, from the mirror torchvision uses (yann.lecun.com is often unavailable).
    "mnist": DatasetSource(
        name="mnist",
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist",
        subdir="mnist",
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", "md5:d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "md5:9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "md5:ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    "cifar10": DatasetSource(
        name="cifar10",
        base_url="https://www.cs.toronto.edu/~kriz",
        subdir="cifar10",
        files=(RemoteFile("cifar-10-python.tar.gz", "md5:c58f30108f718f92721af3b95e74349a"),),
        extract=True,
    ),
}


def _parse_checksum(checksum: str) -> tuple[str, str]:
    if ":" in checksum:
        algo, digest = checksum.split(":", 1)
    else:
        digest = checksum
        algo = {32: "md5", 40: "sha1", 64: "sha256"}.get(len(checksum), "")
    algo = algo.lower()
    if algo not in ("md5", "sha1", "sha256"):
        raise ValueError(f"unsupported checksum {checksum!r}: use md5:<hex>, sha1:<hex> or sha256:<hex>")
    return algo, digest.lower()


def file_checksum(path: str | os.PathLike[str], algo: str = "sha256") -> str:
    """Hex digest of a file."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike[str],
    checksum: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Stream ``url`` into ``dest`` atomically (temporary file + rename), verifying ``checksum``.

    Raises :class:`ChecksumMismatch` (the partial file is removed) or :class:`FetchError`.
    """
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    algo, expected = _parse_checksum(checksum) if checksum else ("sha256", None)
    h = hashlib.new(algo)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
                total = resp.headers.get("Content-Length")
                with tqdm(
                    total=int(total) if total else None,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                ) as bar:
                    while chunk := resp.read(CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise FetchError(f"download of {url} failed: {exc}") from exc
        got = h.hexdigest()
        if expected is not None and got != expected:
            raise ChecksumMismatch(
                f"checksum mismatch for {url}: expected {algo} {expected}, got {got}. "
                "The file was corrupted in transit or the mirror serves a different file; it was removed."
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("downloaded %s -> %s", url, dest)
    return dest


def _safe_extract(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            root = dest.resolve()
            for member in tar.getmembers():
                target = (dest / member.name).resolve()
                if not target.is_relative_to(root) or member.issym() or member.islnk():
                    raise FetchError(f"{archive}: refusing unsafe archive member {member.name!r}")
            tar.extractall(dest, filter="data")
    except tarfile.TarError as exc:
        raise FetchError(f"cannot extract {archive}: {exc}") from exc


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    progress: bool = True,
    checksums: Mapping[str, str] | None = None,
    force: bool = False,
    keep_archive: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download dataset ``name`` (``mnist`` or ``cifar10``) into ``data_dir/<name>/`` and return that folder.

    ``base_url`` (or ``$LPSTUDY_DATA_MIRROR``) replaces the official location; ``checksums`` maps file names
    to ``md5:<hex>`` / ``sha256:<hex>`` and overrides the built-in table (for mirrors serving other bytes).
    Files already present with the right checksum are not downloaded again unless ``force``.
    """
    key = name.lower().replace("-", "")
    if key not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(SOURCES)}")
    src = SOURCES[key]
    base = (base_url or os.environ.get(MIRROR_ENV) or src.base_url).rstrip("/")
    target = resolve_data_dir(data_dir) / src.subdir
    target.mkdir(parents=True, exist_ok=True)
    table = dict(checksums or {})

    if src.extract and not force and _find_cifar_batches([target], "train") and _find_cifar_batches(
        [target], "test"
    ):
        logger.info("%s already present in %s", key, target)
        return target

    for f in src.files:
        checksum = table.get(f.name, f.checksum)
        dest = target / f.name
        if dest.is_file() and not force:
            algo, digest = _parse_checksum(checksum)
            if file_checksum(dest, algo) == digest:
                logger.info("%s already present and verified", dest)
                continue
            logger.warning("%s exists with a different checksum; downloading it again", dest)
        download(f"{base}/{f.name}", dest, checksum=checksum, progress=progress, timeout=timeout)
        if f.name.endswith("ubyte.gz"):
            try:
                read_idx(dest)
            except DatasetError as exc:
                dest.unlink(missing_ok=True)
                raise FetchError(f"downloaded {f.name} is not a valid IDX file: {exc}") from exc

    if src.extract:
        for f in src.files:
            archive = target / f.name
            _safe_extract(archive, target)
            if not keep_archive:
                archive.unlink(missing_ok=True)
        if not (_find_cifar_batches([target], "train") and _find_cifar_batches([target], "test")):
            raise FetchError(f"the archive did not contain the CIFAR-10 python batches under {target}")
    return target


def remove_partial_files(folder: str | os.PathLike[str]) -> int:
    """Remove leftover ``*.part`` files from interrupted downloads; returns how many were removed."""
    n = 0
    for p in Path(folder).glob(".*.part"):
        if p.is_file():
            p.unlink()
            n += 1
        elif p.is_dir():
            shutil.rmtree(p)
            n += 1
    return n
