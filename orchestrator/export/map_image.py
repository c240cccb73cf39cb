"""The map image of an EMDB deposition: a 500 × 500 px PNG a person recognises the map in.

Three rows, one column per axis (views along Z, Y and X): the surface at the suggested
contour level, shaded as a light from the upper left would show it; the central slice; the
projection (sum along the axis). Drawn with matplotlib's Agg canvas directly, so no display
and no global backend choice are involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

#: EMDB asks for an image of about 500 × 500 pixels.
SIZE_PX = 500
_DPI = 100
_SURFACE_PX = 160  # the map is resampled to about this many voxels a side before the surface is traced
_AXES = ("Z", "Y", "X")
_PLANES = ("XY", "XZ", "YZ")
_SURFACE_COLOUR = np.array([0.45, 0.68, 0.92])


def surface_level(volume: np.ndarray) -> float:
    """The level the surface is drawn at: 5 standard deviations above the mean of the solvent,
    taken as the voxels outside the sphere inscribed in the box (where a centred particle is not),
    and at least a tenth of the way from that mean to the map's maximum (a map without noise
    would otherwise be drawn at the level of its faintest ripples)."""
    box = volume.shape[0]
    axis = np.arange(box) - box // 2
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij", sparse=True)
    solvent = volume[(x * x + y * y + z * z) > (0.5 * box) ** 2]
    if solvent.size < 100:
        solvent = volume.ravel()
    mean = float(solvent.mean())
    return max(mean + 5.0 * float(solvent.std()), mean + 0.1 * (float(volume.max()) - mean))


def matching_level(volume: np.ndarray, voxels_inside: int) -> float:
    """The level of ``volume`` that encloses ``voxels_inside`` voxels: a contour level for a map
    that shows as much as the surface drawn from another (the low-passed) map."""
    fraction = min(max(voxels_inside / volume.size, 0.0), 1.0)
    return float(np.quantile(volume, 1.0 - fraction))


def without_dust(inside: np.ndarray, keep: float = 0.05) -> np.ndarray:
    """``inside`` without the specks: connected pieces smaller than ``keep`` of the largest go
    (what ChimeraX's "hide dust" does), so that noise above the level does not hide the map."""
    labels, count = ndimage.label(inside)
    if count <= 1:
        return inside
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.isin(labels, np.flatnonzero(sizes >= keep * sizes.max()))


def lowpass(volume: np.ndarray, pixel_size_a: float, resolution_a: float) -> np.ndarray:
    """``volume`` with the frequencies beyond ``resolution_a`` removed (a raised-cosine edge one
    twentieth of Nyquist wide): the noise past the resolution only makes the surface speckled."""
    box = volume.shape[0]
    freq = np.fft.fftfreq(box, d=pixel_size_a)
    fz, fy, fx = np.meshgrid(freq, freq, np.fft.rfftfreq(box, d=pixel_size_a), indexing="ij", sparse=True)
    radius = np.sqrt(fz * fz + fy * fy + fx * fx)
    cutoff, width = 1.0 / resolution_a, 0.05 / (2 * pixel_size_a)
    t = np.clip((radius - cutoff) / width + 0.5, 0.0, 1.0)
    filtered = np.fft.irfftn(np.fft.rfftn(volume) * 0.5 * (1 + np.cos(np.pi * t)), s=volume.shape, axes=(0, 1, 2))
    return filtered.astype(np.float32)


def surface_shade(volume: np.ndarray, level: float, axis: int) -> np.ndarray:
    """Brightness (0..1, NaN where the ray meets nothing) of the ``level`` surface seen along ``axis``.

    The image's axes are those of the slice in the same column ((Y, X), (Z, X), (Z, Y), up and
    right); the eye is on the side that keeps the axes right-handed: +Z, -Y and +X."""
    stack = np.moveaxis(volume, axis, 0)
    if axis != 1:
        stack = np.flip(stack, axis=0)
    inside = without_dust(stack >= level)
    hit = inside.any(axis=0)
    first = np.argmax(inside, axis=0)
    # sub-voxel depth: where between the last voxel outside and the first inside the level is crossed
    before = np.take_along_axis(stack, np.maximum(first - 1, 0)[None], axis=0)[0]
    at = np.take_along_axis(stack, first[None], axis=0)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where((first > 0) & (at > before) & (before < level), (level - before) / (at - before), 1.0)
    depth = np.where(hit, first - 1 + np.clip(step, 0.0, 1.0), np.nan)
    filled = np.where(hit, depth, np.nanmax(depth) if hit.any() else 0.0)
    gy, gx = np.gradient(filled)
    normal = np.stack([-gx, -gy, np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=0)
    light = np.array([-0.45, 0.55, 1.0])
    light /= np.linalg.norm(light)
    diffuse = np.clip(np.tensordot(light, normal, axes=1), 0.0, 1.0)
    shade = 0.22 + 0.78 * diffuse
    return np.where(hit, shade, np.nan)


def _resampled(volume: np.ndarray) -> np.ndarray:
    factor = _SURFACE_PX / volume.shape[0]
    if abs(factor - 1.0) < 0.05:
        return volume
    return ndimage.zoom(volume, factor, order=3 if factor > 1 else 1)


def _plane(volume: np.ndarray, axis: int, project: bool) -> np.ndarray:
    """A central slice or projection shown with the first remaining axis up."""
    image = volume.sum(axis=axis) if project else np.take(volume, volume.shape[axis] // 2, axis=axis)
    return image


def _stretch(image: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(image, [0.5, 99.8])
    return float(low), float(high if high > low else low + 1.0)


def write_map_image(volume: np.ndarray, surface: np.ndarray, level: float, title: str, path: Path,
                    surface_label: str = "surface") -> None:
    """Draw the three rows of views and write them to ``path`` as PNG: ``surface`` (the map, or
    the map low-passed) at ``level`` in the first row, slices and projections of ``volume`` below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(SIZE_PX / _DPI, SIZE_PX / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, 3, left=0.075, right=0.995, top=0.9, bottom=0.01, wspace=0.03, hspace=0.1)
    figure.suptitle(title, fontsize=9.5, y=0.975)
    fine = _resampled(surface)
    rows = (surface_label, "central slice", "projection")
    for column, axis in enumerate(range(3)):
        shade = surface_shade(fine, level, axis)
        rgb = np.ones(shade.shape + (3,))
        lit = ~np.isnan(shade)
        rgb[lit] = np.clip(shade[lit, None] * _SURFACE_COLOUR[None, :] * 1.15, 0, 1)
        panels = (rgb, _plane(volume, axis, project=False), _plane(volume, axis, project=True))
        for row, image in enumerate(panels):
            ax = figure.add_subplot(grid[row, column])
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("#bbbbbb")
            if row == 0:
                ax.imshow(image, origin="lower", interpolation="antialiased")
                ax.set_title(f"along {_AXES[axis]} ({_PLANES[axis]})", fontsize=8, pad=3)
            else:
                low, high = _stretch(image)
                ax.imshow(image, origin="lower", cmap="gray", vmin=low, vmax=high, interpolation="lanczos")
            if column == 0:
                ax.set_ylabel(rows[row], fontsize=8)
    figure.savefig(path, dpi=_DPI, format="png")
