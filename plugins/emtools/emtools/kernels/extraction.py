"""Particle extraction from a micrograph (RELION-style preprocessing).

Order of operations, as in ``relion_preprocess``: cut a ``box_size`` box around each
coordinate (the coordinate, rounded to the nearest pixel, lands on pixel ``box // 2``,
the box-centre origin of the particle kernels); optionally phase-flip it with the
micrograph's CTF; optionally bin it by Fourier cropping (no aliasing, unlike averaging
pixel blocks); optionally invert the contrast (raw micrographs have dark particles,
RELION's references are white); normalise so that the background outside a circle has
mean 0 and standard deviation 1.

Boxes that reach past the micrograph edge are either skipped (``edge="skip"``, the
default: half a particle biases 2D classes) or kept with the missing pixels filled with
the mean of the pixels that were inside (``edge="pad"``: flat, so it adds no edge to
the spectrum, and it leaves the background statistics close to the rest of the box's).
Phase flipping a box ignores the CTF's delocalisation beyond the box: use a box at
least twice the particle for high defocus.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import xp as xpmod
from .ctf import CtfParams, ctf_2d
from .filters import normalize_background
from .micrograph_fourier import crop_rfft2

EDGE_MODES = ("skip", "pad")


class ExtractionError(ValueError):
    """Extraction parameters that cannot work (odd binning, unknown edge mode, ...)."""


@dataclass
class ExtractedParticles:
    """A float32 stack and where each box came from."""

    images: np.ndarray  # (N, b, b) float32, b = box_size // bin_factor
    centres: np.ndarray  # (N, 2) int64 (x, y) micrograph pixel on the box centre
    kept: np.ndarray  # (n_input,) bool: which input coordinates gave a box
    pixel_size_a: float | None  # of the output boxes, when the micrograph's was given


def cut_boxes(
    micrograph: Any, coordinates_xy: Any, box_size: int, edge: str = "skip", xp: ModuleType = np
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Boxes ``(N, box, box)`` around the coordinates with one gather (see module doc).

    Returns ``(boxes, centres, kept)``.
    """
    if edge not in EDGE_MODES:
        raise ExtractionError(f"edge must be one of {EDGE_MODES}, got {edge!r}")
    img = xp.asarray(micrograph, dtype=xp.float32)
    ny, nx = img.shape
    coords = np.asarray(xpmod.to_numpy(coordinates_xy), dtype=np.float64).reshape(-1, 2)
    centres = np.floor(coords + 0.5).astype(np.int64)
    lo = centres - box_size // 2
    hi = lo + box_size
    inside = (lo[:, 0] >= 0) & (lo[:, 1] >= 0) & (hi[:, 0] <= nx) & (hi[:, 1] <= ny)
    kept = inside if edge == "skip" else np.ones(len(coords), dtype=bool)
    offs = np.arange(box_size)
    ix = lo[kept, 0, None, None] + offs[None, None, :]
    iy = lo[kept, 1, None, None] + offs[None, :, None]
    ix, iy = np.broadcast_arrays(ix, iy)
    valid = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    flat = xp.asarray(np.clip(iy, 0, ny - 1) * nx + np.clip(ix, 0, nx - 1))
    boxes = img.reshape(-1)[flat]
    if edge == "pad" and not valid.all():
        v = xp.asarray(valid)
        fill = (boxes * v).sum(axis=(1, 2)) / xp.maximum(v.sum(axis=(1, 2)), 1)
        boxes = xp.where(v, boxes, fill[:, None, None])
    return boxes, centres[kept], kept


def phase_flip(boxes: Any, ctf: CtfParams, xp: ModuleType | None = None) -> Any:
    """Multiply centred boxes by ``sign(CTF)`` in Fourier space (pixel size of ``ctf``)."""
    xp = xp or xpmod.array_module(boxes)
    b = boxes.shape[-1]
    sign = xp.sign(ctf_2d(ctf, (b, b), xp=xp))
    return xpmod.centered_irfft2(xpmod.centered_rfft2(boxes, xp) * sign, (b, b), xp).astype(xp.float32)


def fourier_bin(boxes: Any, new_size: int, xp: ModuleType | None = None) -> Any:
    """Bin centred square boxes to ``new_size`` by Fourier cropping, keeping pixel values."""
    xp = xp or xpmod.array_module(boxes)
    b = boxes.shape[-1]
    if new_size == b:
        return boxes
    ft = crop_rfft2(xpmod.centered_rfft2(boxes, xp), (new_size, new_size))
    out = xpmod.centered_irfft2(ft, (new_size, new_size), xp) * (new_size / b) ** 2
    return out.astype(xp.float32)


def extract_particles(
    micrograph: Any,
    coordinates_xy: Any,
    box_size: int,
    bin_factor: int = 1,
    edge: str = "skip",
    normalize: bool = True,
    background_radius_px: float | None = None,
    invert_contrast: bool = False,
    ctf: CtfParams | None = None,
    pixel_size_a: float | None = None,
    xp: ModuleType = np,
) -> ExtractedParticles:
    """Extract, and optionally phase-flip, bin, invert and normalise, particle boxes.

    ``box_size`` is in micrograph pixels and must be a multiple of ``bin_factor``;
    ``background_radius_px`` is in output pixels (default 75 % of the half box, RELION's);
    ``ctf`` enables phase flipping and must have the micrograph's pixel size.
    """
    if bin_factor < 1 or box_size % bin_factor:
        raise ExtractionError(f"box_size {box_size} is not a multiple of bin_factor {bin_factor}")
    if ctf is not None and pixel_size_a is not None and not np.isclose(ctf.pixel_size_a, pixel_size_a):
        raise ExtractionError(f"ctf pixel size {ctf.pixel_size_a} != micrograph pixel size {pixel_size_a}")
    boxes, centres, kept = cut_boxes(micrograph, coordinates_xy, box_size, edge, xp)
    out_size = box_size // bin_factor
    if boxes.shape[0] == 0:
        empty = np.zeros((0, out_size, out_size), dtype=np.float32)
        return ExtractedParticles(
            empty, centres, kept, None if pixel_size_a is None else pixel_size_a * bin_factor
        )
    if ctf is not None:
        boxes = phase_flip(boxes, ctf, xp)
    boxes = fourier_bin(boxes, out_size, xp)
    if invert_contrast:
        boxes = -boxes
    if normalize:
        radius = background_radius_px if background_radius_px is not None else 0.375 * out_size
        boxes = normalize_background(boxes, radius, xp)
    return ExtractedParticles(
        images=xpmod.to_numpy(boxes).astype(np.float32),
        centres=centres,
        kept=kept,
        pixel_size_a=None if pixel_size_a is None else pixel_size_a * bin_factor,
    )
