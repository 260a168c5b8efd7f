"""PNG handling without torch: decode, validate size/mode, and re-encode canonically (no metadata)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.errors import ConfigError

MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class CanonicalPng:
    png: bytes
    width: int
    height: int
    channels: int
    sha256: str


def encode_png(pixels: np.ndarray) -> CanonicalPng:
    """uint8 HxW (grey) or HxWx3 (RGB) -> a PNG with no ancillary chunks."""
    if pixels.dtype != np.uint8:
        raise ValueError("pixels must be uint8")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    img = Image.fromarray(pixels, mode=None)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    data = buf.getvalue()
    h, w = pixels.shape[:2]
    return CanonicalPng(data, w, h, 1 if pixels.ndim == 2 else 3, hashlib.sha256(data).hexdigest())


def canonical(png: bytes) -> CanonicalPng:
    """PNG bytes made by ``encode_png`` (the worker's), kept byte for byte, with their size and hash."""
    pixels = decode_png(png)
    h, w = pixels.shape[:2]
    return CanonicalPng(png, w, h, 1 if pixels.ndim == 2 else 3, hashlib.sha256(png).hexdigest())


def decode_png(data: bytes, *, what: str = "image") -> np.ndarray:
    """PNG bytes -> uint8 array (HxW or HxWx3). Anything that is not a readable PNG is an error."""
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"{what}: not a readable PNG file ({exc})") from exc
    if fmt != "PNG":
        raise ConfigError(f"{what}: is a {fmt} file, not a PNG")
    if img.mode in ("L", "RGB"):
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode in ("P", "LA", "RGBA", "I;16", "I", "1"):
        if img.mode in ("LA", "RGBA"):
            alpha = np.asarray(img.getchannel("A"))
            if alpha.min() < 255:
                raise ConfigError(f"{what}: has transparent pixels; save it without transparency")
        target = "L" if img.mode in ("LA", "1") else "RGB"
        if img.mode in ("I;16", "I"):
            raise ConfigError(f"{what}: is a 16-bit PNG; save it as 8-bit")
        return np.asarray(img.convert(target), dtype=np.uint8).copy()
    raise ConfigError(f"{what}: unsupported PNG mode {img.mode}")


def conform(pixels: np.ndarray, shape: tuple[int, int, int], *, what: str) -> np.ndarray:
    """Check size and colour against the dataset's (h, w, c); a grey-looking RGB for MNIST is accepted."""
    h, w, c = shape
    if pixels.shape[:2] != (h, w):
        raise ConfigError(f"{what}: is {pixels.shape[1]}x{pixels.shape[0]} pixels, expected {w}x{h}")
    if c == 1:
        if pixels.ndim == 3:
            if not (np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])):
                raise ConfigError(f"{what}: is a colour image; this dataset's images are greyscale")
            pixels = pixels[..., 0]
        return pixels
    if pixels.ndim == 2:
        raise ConfigError(f"{what}: is greyscale; this dataset's images are RGB")
    return pixels
