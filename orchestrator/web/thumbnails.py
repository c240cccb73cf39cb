"""PNG pictures of a project's MRC files, rendered here and cached on disk.

Why on the server: a browser reads no MRC, a micrograph is tens of megabytes of floats and a
particle is one image among thousands in a stack. The browser gets small 8-bit PNGs,
block-averaged (which also averages the noise away) and contrast-stretched.

The cache lives in the project's own hidden folder, ``.orch/thumbnails/aa/bb/SOURCE-VERSION.png``:
``SOURCE`` hashes what is drawn (the file's path, the image or slice, the size, the
renderer's version), ``VERSION`` the file's fingerprint (size, modification time in ns,
inode). A hit costs one ``stat`` of the MRC file and one read of the PNG. A file that changed
gets another ``VERSION``: the old picture is never served again, and it is removed when the
new one is written. A picture whose file changed while it was drawn is served but not kept.
Stack images and volume slices are read through a memory map: only their own bytes.

A gallery page of particles is one *sheet*: its images side by side in one PNG, cached with
the fingerprints of all the stacks it draws from, so a page of a hundred particles costs the
browser one request rather than a hundred.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from orchestrator.em import mrc
from orchestrator.errors import NotFoundError, OrchestratorError, UsageError

log = logging.getLogger("orchestrator.web")

#: bump when the pictures change for the same file (another stretch, another filter)
RENDER_VERSION = "2"
CACHE_DIR = Path(".orch") / "thumbnails"
#: the sizes a picture may be asked in (longest side, px): a bounded set keeps the cache bounded
SIZES = (64, 96, 128, 192, 256, 384, 512, 768, 1024)
#: contrast: the grey range runs from this percentile to 100 minus it
CLIP_PERCENT = 0.5
VOLUME_CLIP_PERCENT = 0.02
AXES = ("z", "y", "x")

Kind = Literal["image", "stack", "slice", "projection"]


@dataclass(frozen=True)
class Picture:
    """What to draw of an MRC file.

    ``image``: the single 2D image of the file (a micrograph); ``stack``: image ``index``
    (1-based, as the sets store it) of a stack; ``slice``: section ``index`` (0-based) of a
    volume across ``axis``; ``projection``: the volume's maximum along ``axis``.
    """

    kind: Kind
    index: int = 1
    axis: str = "z"
    size: int = 256

    def __post_init__(self) -> None:
        if self.kind not in ("image", "stack", "slice", "projection"):
            raise UsageError(f"picture kind {self.kind!r}: use image, stack, slice or projection")
        if self.size not in SIZES:
            raise UsageError(f"size {self.size}: use one of {', '.join(map(str, SIZES))}")
        if self.axis not in AXES:
            raise UsageError(f"axis {self.axis!r}: use z, y or x")

    def describe(self) -> str:
        """The part of the cache key that says what is drawn."""
        return f"{self.kind}:{self.index}:{self.axis}:{self.size}"


@dataclass(frozen=True)
class Fingerprint:
    """What changes when a file is written again (a rename over it changes the inode)."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> Fingerprint:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise NotFoundError(f"{path}: file does not exist") from None
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino)

    def token(self) -> str:
        """A short text that changes with the file (for URLs and cache names)."""
        return hashlib.sha1(f"{self.size}:{self.mtime_ns}:{self.inode}".encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- the cache

def cache_root(project_dir: Path) -> Path:
    return project_dir / CACHE_DIR


def cached(project_dir: Path, source: Path | Sequence[Path], what: str, render: Callable[[], bytes],
           suffix: str = "png") -> bytes:
    """The bytes ``render()`` makes of ``source`` (a file of the project, or several), from the
    cache when no file changed since they were made. ``what`` names what is made of them."""
    sources = [source] if isinstance(source, Path) else list(source)
    relative = "|".join(os.path.relpath(path, project_dir) for path in sources)
    key = hashlib.sha1(f"{RENDER_VERSION}|{relative}|{what}".encode()).hexdigest()
    before = [_fingerprint_or_none(path) for path in sources]
    version = hashlib.sha1("|".join(f.token() if f else "-" for f in before).encode()).hexdigest()[:12] \
        if len(sources) > 1 else (before[0].token() if before[0] else "-")
    if len(sources) == 1 and before[0] is None:
        raise NotFoundError(f"{sources[0]}: file does not exist")
    folder = cache_root(project_dir) / key[:2] / key[2:4]
    target = folder / f"{key}-{version}.{suffix}"
    try:
        return target.read_bytes()
    except FileNotFoundError:
        pass  # not drawn yet for this version of the files
    data = render()
    if [_fingerprint_or_none(path) for path in sources] == before:  # unchanged while read: safe to keep
        try:
            _store(folder, target, data, stale=f"{key}-*.{suffix}")
        except OSError as exc:  # a project served read-only, a full disk: draw it each time instead
            log.warning("cannot keep the picture %s in the cache: %s", target, exc)
    return data


def _fingerprint_or_none(path: Path) -> Fingerprint | None:
    try:
        return Fingerprint.of(path)
    except NotFoundError:
        return None


def _store(folder: Path, target: Path, data: bytes, stale: str) -> None:
    """Write ``target`` through a temporary name, then drop older versions of the same picture."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, target)
    for old in folder.glob(stale):
        if old != target:
            old.unlink(missing_ok=True)


def thumbnail(project_dir: Path, source: Path, picture: Picture) -> bytes:
    """The PNG of ``picture`` of the MRC file ``source`` (cached: see the module docstring)."""
    return cached(project_dir, source, picture.describe(), lambda: render_png(source, picture))


def sheet(project_dir: Path, sources: Sequence[Path], items: Sequence[tuple[int, int]], size: int,
          columns: int) -> bytes:
    """One PNG holding stack images ``items`` ((source number, 1-based image index)) in rows of
    ``columns`` cells of at most ``size`` px: a gallery page's particles in one request instead
    of a hundred. Cached like a single picture, with the fingerprints of all its files."""
    if size not in SIZES:
        raise UsageError(f"size {size}: use one of {', '.join(map(str, SIZES))}")
    if not items or not 1 <= columns <= len(items):
        raise UsageError(f"a sheet of {len(items)} images in {columns} columns: give 1 to {len(items)} columns")
    what = f"sheet:{size}:{columns}:" + ",".join(f"{s}.{i}" for s, i in items)
    return cached(project_dir, list(sources), what, lambda: render_sheet(sources, items, size, columns))


def render_sheet(sources: Sequence[Path], items: Sequence[tuple[int, int]], size: int, columns: int) -> bytes:
    """Draw a sheet (no cache); an image that cannot be read is a dark cell, not a failed page."""
    pictures: list[np.ndarray | None] = []
    for source_no, index in items:
        if not 0 <= source_no < len(sources):  # an item whose file is not served: an empty cell
            pictures.append(None)
            continue
        try:
            pixels, _ = read_pixels(sources[source_no], Picture("stack", index=index, size=size))
            pictures.append(shrink(pixels, size))
        except OrchestratorError:  # missing, truncated, an index past the end: a dark cell
            pictures.append(None)
    cell = max((max(p.shape) for p in pictures if p is not None), default=1)
    rows = -(-len(items) // columns)
    grey = np.zeros((rows * cell, columns * cell), dtype=np.uint8)
    for number, picture in enumerate(pictures):
        if picture is None:
            continue
        ny, nx = picture.shape
        top, left = (number // columns) * cell + (cell - ny) // 2, (number % columns) * cell + (cell - nx) // 2
        grey[top:top + ny, left:left + nx] = _grey(picture, stretch_limits(picture))
    return _png(grey)


# --------------------------------------------------------------------------- drawing

def render_png(source: Path, picture: Picture) -> bytes:
    """Read what ``picture`` needs of ``source`` and draw it (no cache)."""
    pixels, limits = read_pixels(source, picture)
    return to_png(shrink(pixels, picture.size), limits)


def read_pixels(source: Path, picture: Picture) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The 2D float32 array to draw, and the grey range to use when it is not the image's own
    (a volume's slices share the volume's, so that moving through them does not flicker)."""
    info = mrc.read_header(source)
    nz, ny, nx = info.shape
    if picture.kind == "image":
        return _as_float(_section(info, 0)), None
    if picture.kind == "stack":
        if not 1 <= picture.index <= nz:
            raise NotFoundError(f"{source}: image {picture.index} asked for, the stack holds {nz} (from 1)")
        return _as_float(_section(info, picture.index - 1)), None
    axis = AXES.index(picture.axis)
    if picture.kind == "projection":
        volume = _as_float(mrc.read_volume(source))
        return volume.max(axis=axis), None
    length = info.shape[axis]
    if not 0 <= picture.index < length:
        raise NotFoundError(f"{source}: slice {picture.index} asked for along {picture.axis}, "
                            f"the map has {length} (from 0)")
    mapped = _mapped(info)
    section = mapped[picture.index] if axis == 0 else mapped[:, picture.index] if axis == 1 \
        else mapped[:, :, picture.index]
    return _as_float(np.array(section)), volume_limits(source)


def _mapped(info: mrc.MrcInfo) -> np.ndarray:
    """The file's data as a read-only memory map (nothing read until indexed)."""
    return np.memmap(info.path, dtype=info.dtype, mode="r", offset=info.data_offset, shape=info.shape)


def _section(info: mrc.MrcInfo, index: int) -> np.ndarray:
    """One 2D section of the file, read alone (a particle of a stack of 100,000)."""
    ny, nx = info.shape[1:]
    offset = info.data_offset + index * ny * nx * info.dtype.itemsize
    return np.array(np.memmap(info.path, dtype=info.dtype, mode="r", offset=offset, shape=(ny, nx)))


def _as_float(data: np.ndarray) -> np.ndarray:
    values = np.abs(data) if np.iscomplexobj(data) else data
    return np.asarray(values, dtype=np.float32)


_LIMITS: OrderedDict[tuple[str, Fingerprint], tuple[float, float]] = OrderedDict()
_LIMITS_LOCK = threading.Lock()


def volume_limits(source: Path) -> tuple[float, float]:
    """The grey range of a whole volume (read once per version of the file, then remembered)."""
    key = (str(source), Fingerprint.of(source))
    with _LIMITS_LOCK:
        if key in _LIMITS:
            _LIMITS.move_to_end(key)
            return _LIMITS[key]
    # a map is mostly solvent: clipping 0.5 % of the voxels would let its noise fill the grey range
    limits = stretch_limits(_as_float(mrc.read_volume(source)), VOLUME_CLIP_PERCENT)
    with _LIMITS_LOCK:
        _LIMITS[key] = limits
        while len(_LIMITS) > 32:
            _LIMITS.popitem(last=False)
    return limits


def shrink(image: np.ndarray, size: int) -> np.ndarray:
    """Average blocks of pixels so that the longest side is at most ``size`` (never enlarged:
    the browser scales a 32 px particle up at no cost to the server)."""
    longest = max(image.shape)
    if longest <= size:
        return image
    factor = -(-longest // size)  # ceil: the result fits in size
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    if ny == 0 or nx == 0:  # a strip thinner than one block: keep every factor-th pixel
        return image[::factor, ::factor]
    cropped = image[:ny, :nx]
    return cropped.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3), dtype=np.float64) \
        .astype(np.float32)


def stretch_limits(image: np.ndarray, clip: float = CLIP_PERCENT) -> tuple[float, float]:
    """The grey range: the ``clip`` percent darkest and brightest pixels saturate."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(finite, [clip, 100.0 - clip])
    return float(low), float(high)


def to_png(image: np.ndarray, limits: tuple[float, float] | None = None) -> bytes:
    """8-bit greyscale PNG of ``image`` stretched to ``limits`` (its own by default)."""
    return _png(_grey(image, limits if limits is not None else stretch_limits(image)))


def _grey(image: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    low, high = limits
    if high <= low:
        return np.full(image.shape, 128, dtype=np.uint8)
    scaled = (np.nan_to_num(image, nan=low) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _png(grey: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(grey)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
