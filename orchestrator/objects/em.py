"""The EM types a single-particle workflow passes between protocol runs.

Plain dataclasses with ``slots``: cheap to build by the million, easy to read, and free of
the attribute-reflection layer that makes Scipion's objects slow to iterate. Units follow
RELION 3.1: Ångström for lengths and defocus, degrees for angles, kV, mm, pixels for
coordinates and shifts. Euler angles use RELION's ZYZ convention (rot, tilt, psi).

Items that live in sets (Movie, Micrograph, Coordinate, Particle, Class2D/Class3D, CTF on
its own) are stored column by column; :mod:`orchestrator.objects.columns` holds their column
schemas. Set-level facts (acquisition, optics) live on the set, not on every item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from orchestrator.errors import UsageError


@dataclass(slots=True)
class Acquisition:
    """Microscope and detector settings shared by all items of a set (one optics group)."""

    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    pixel_size_a: float = 1.0
    dose_per_frame: float | None = None  # electrons per Å² per frame, for movies
    magnification: float | None = None


@dataclass(frozen=True, slots=True)
class Optics:
    """One optics group (RELION 3.1's ``data_optics`` row); particles name it by number.

    ``group`` is RELION's 1-based ``rlnOpticsGroup``. ``image_size`` is the box size of the
    extracted particle images in pixels (0 when unknown, e.g. before extraction).
    """

    group: int
    name: str
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    pixel_size_a: float
    image_size: int = 0

    def __post_init__(self) -> None:
        if self.group < 1:
            raise UsageError(f"optics group numbers start at 1, got {self.group} for {self.name!r}")

    @property
    def acquisition(self) -> Acquisition:
        return Acquisition(self.voltage_kv, self.cs_mm, self.amplitude_contrast, self.pixel_size_a)


@dataclass(slots=True)
class CTF:
    """Contrast transfer function fit of one micrograph (or one particle after refinement)."""

    defocus_u: float
    defocus_v: float
    defocus_angle: float
    resolution: float | None = None  # Å where the fit stops agreeing with the spectrum
    fit_quality: float | None = None  # cross-correlation of model and spectrum

    @property
    def defocus_mean(self) -> float:
        return 0.5 * (self.defocus_u + self.defocus_v)


@dataclass(slots=True)
class Coordinate:
    """A picked position on a micrograph, in pixels of that micrograph."""

    x: float
    y: float
    micrograph_id: int | None = None
    score: float | None = None


@dataclass(slots=True)
class Alignment:
    """Rotation (ZYZ Euler angles, degrees) and shift (pixels) of a particle.

    The rotation is stored as three numbers rather than a 3x3 matrix: it is exact, takes a
    third of the space, and is what RELION reads and writes. :meth:`matrix` gives the 4x4
    transform when a matrix is wanted. For 2D alignment tilt is 0 and psi is the in-plane angle.
    """

    rot: float = 0.0
    tilt: float = 0.0
    psi: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    shift_z: float = 0.0

    def matrix(self) -> np.ndarray:
        """The 4x4 rigid transform (RELION's Euler_angles2matrix, shifts in the last column)."""
        a, b, g = (math.radians(v) for v in (self.rot, self.tilt, self.psi))
        ca, sa, cb, sb, cg, sg = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(g), math.sin(g)
        cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
        m = np.eye(4)
        m[0, :3] = (cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb)
        m[1, :3] = (-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb)
        m[2, :3] = (sc, ss, cb)
        m[:3, 3] = (self.shift_x, self.shift_y, self.shift_z)
        return m


@dataclass(slots=True)
class Movie:
    """A multi-frame exposure as it comes off the detector."""

    id: int
    path: str
    n_frames: int
    optics_group: int = 1
    enabled: bool = True


@dataclass(slots=True)
class Micrograph:
    """A (motion-corrected) micrograph, with its CTF once estimated."""

    id: int
    path: str
    movie_id: int | None = None
    ctf: CTF | None = None
    optics_group: int = 1
    enabled: bool = True


@dataclass(slots=True)
class Particle:
    """One particle image: where it is stored, where it came from, its CTF, pose and class.

    ``image_index`` is 1-based within the stack at ``image_path`` (RELION's ``12@stack.mrcs``).
    """

    id: int
    image_index: int
    image_path: str
    micrograph_id: int
    micrograph_name: str
    coordinate: Coordinate
    ctf: CTF
    alignment: Alignment
    class_id: int = 0
    subset: int = 0  # 0: none, 1 or 2: gold-standard half set
    optics_group: int = 1
    enabled: bool = True

    @property
    def location(self) -> tuple[int, str]:
        return self.image_index, self.image_path


@dataclass(slots=True)
class ClassAverage:
    """A 2D or 3D class: its representative image or map and how many particles it holds."""

    id: int
    image_index: int
    image_path: str
    size: int
    resolution: float | None = None
    dimensions: int = 2
    enabled: bool = True


@dataclass(slots=True)
class Volume:
    """A 3D map on disk, with its sampling and, once known, its resolution."""

    path: str
    pixel_size_a: float
    box: int
    resolution: float | None = None
    half_maps: tuple[str, str] | None = None
    symmetry: str = "C1"


@dataclass(slots=True)
class FSCCurve:
    """Fourier shell correlation: resolution (1/Å) per shell and the correlation there."""

    frequency: list[float] = field(default_factory=list)
    correlation: list[float] = field(default_factory=list)
    label: str = ""

    def resolution_at(self, threshold: float = 0.143) -> float | None:
        """Resolution in Å where the curve first drops below ``threshold`` (interpolated)."""
        freq, corr = self.frequency, self.correlation
        for i in range(1, len(corr)):
            if corr[i] < threshold <= corr[i - 1]:
                f0, f1, c0, c1 = freq[i - 1], freq[i], corr[i - 1], corr[i]
                f = f0 + (threshold - c0) * (f1 - f0) / (c1 - c0)
                return 1.0 / f if f > 0 else None
        if corr and corr[-1] >= threshold and freq[-1] > 0:
            return 1.0 / freq[-1]
        return None
