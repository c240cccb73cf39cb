"""A soft spherical mask, written out for runs whose FSC used one but did not save it.

The formula is the one of emtools' ``soft_spherical_mask`` (which emtools' reconstruct,
refine3d and fsc apply to both half maps before correlating them): 1 inside ``radius_px`` of
the box centre (index ``n // 2``), a raised cosine to 0 over ``edge_px``. It is repeated here,
not imported, so an export does not need the plugin installed; the tests check that the mask
written here reproduces the FSC curve the run recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SphericalMask:
    """A soft sphere centred in the box: radius and width of the cosine edge, in pixels."""

    radius_px: float
    edge_px: float

    def describe(self, pixel_size_a: float) -> str:
        """The mask in words, for the bundle's README."""
        return (f"soft spherical mask centred in the box: radius {self.radius_px:.2f} px "
                f"({self.radius_px * pixel_size_a:.1f} Å), raised-cosine edge {self.edge_px:g} px")

    def render(self, box: int) -> np.ndarray:
        """The mask as a (box, box, box) float32 volume."""
        axis = np.arange(box, dtype=np.float32) - box // 2
        z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
        radius = np.sqrt(x * x + y * y + z * z)
        t = np.clip((radius - self.radius_px) / max(self.edge_px, 1e-6), 0.0, 1.0)
        return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)
