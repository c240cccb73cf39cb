"""Images for the wizards: EM data (float, any range, any size) as small 8-bit PNGs a browser shows.

The PNG is written here (a few lines of zlib) rather than with an imaging library: a grey image
is all a wizard needs, and the server then needs nothing that ``orch`` does not already have.
Contrast is set from percentiles, not the extremes, so one hot pixel does not leave the rest
black; large images are binned down (block means), which also averages the noise away.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

#: a micrograph is binned until its longer side is at most this (display pixels)
MAX_SIDE = 900
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit grey PNG of ``pixels[y, x]`` (uint8)."""
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"a PNG is made of a 2D uint8 array, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape
    rows = np.hstack([np.zeros((height, 1), np.uint8), pixels])  # filter byte 0 (none) before each row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + _chunk(b"IEND", b""))


def bin_factor(shape: Sequence[int], max_side: int = MAX_SIDE) -> int:
    """The smallest whole factor that brings the longer side of ``shape`` to ``max_side`` or less."""
    return max(1, -(-max(shape) // max_side))


def binned(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor`` x ``factor`` pixels (the ragged edge is dropped)."""
    if factor <= 1:
        return image.astype(np.float32)
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:height, :width].reshape(height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def to_gray(image: np.ndarray, low: float = 0.5, high: float = 99.5, *,
            invert: bool = False, smooth_px: float = 0.0) -> np.ndarray:
    """``image`` scaled to 0..255 between two percentiles, optionally smoothed (a Gaussian of
    ``smooth_px``, so noisy micrographs show their particles) and inverted."""
    data = np.asarray(image, dtype=np.float32)
    if smooth_px > 0:
        from scipy.ndimage import gaussian_filter

        data = gaussian_filter(data, smooth_px)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(data.shape, np.uint8)
    bottom, top = np.percentile(finite, [low, high])
    scaled = (np.nan_to_num(data, nan=float(bottom)) - bottom) / max(float(top - bottom), 1e-12)
    gray = np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return 255 - gray if invert else gray


def montage(tiles: Sequence[np.ndarray], columns: int, gap: int = 4, fill: int = 255) -> np.ndarray:
    """Equal-sized uint8 tiles in rows of ``columns``, ``gap`` pixels apart (``fill`` between)."""
    if not tiles:
        raise ValueError("a montage needs at least one tile")
    height, width = tiles[0].shape
    rows = -(-len(tiles) // columns)
    columns = min(columns, len(tiles))
    canvas = np.full((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap), fill, np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        canvas[top:top + height, left:left + width] = tile
    return canvas

