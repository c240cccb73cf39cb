"""Optics groups: the acquisition settings shared by a set of particles.

RELION 3.1 moved voltage, spherical aberration, amplitude contrast and pixel size out of the
per-particle rows into a ``data_optics`` table; we keep the same split, so a particle set
holds a short list of :class:`Optics` records and each particle names its group by number.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import UsageError


@dataclass(frozen=True, slots=True)
class Optics:
    """One optics group (RELION's ``data_optics`` row).

    ``group`` is RELION's 1-based ``rlnOpticsGroup``; particles refer to it through their
    ``optics_group`` column. ``image_size`` is the box size of the extracted particle images in
    pixels (0 when unknown, e.g. before extraction).
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
