"""Deterministic PNG writing: same pixels, same bytes (no timestamps, no metadata).

A small PNG writer of our own (IHDR, IDAT, IEND, nothing else): every row uses the "Up"
filter, computed with numpy, then zlib with the run-length strategy. On this project's
images that is 2-3x faster than Pillow's encoder (which tries several filters per row) at a
similar file size, and the bytes depend only on the pixels and the zlib version.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZLIB_LEVEL = 3
FILTER_UP = 2  # each byte minus the byte above it


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, w * 3)
    filtered = np.empty((h, w * 3 + 1), np.uint8)
    filtered[:, 0] = FILTER_UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps, as PNG wants
    packer = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = packer.compress(filtered.tobytes()) + packer.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def save_png(image: np.ndarray | Image.Image, path: str | Path) -> None:
    """Write an RGB image (array or Pillow image) as PNG.

    Not atomic on purpose: a dataset's manifest, written last and atomically, is what makes
    its images count, and a rename per image costs more than encoding it on some file systems.
    """
    arr = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    Path(path).write_bytes(encode_png(np.ascontiguousarray(arr, dtype=np.uint8)))
