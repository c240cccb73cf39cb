"""``particle_diameter``: a circle over a micrograph, the user moves it onto a particle and sizes
it to the particle; its diameter in Å goes into the field."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from orchestrator.app.samples import MICROGRAPHS
from orchestrator.web.wizards.base import Wizard, WizardContext, bounded, emtools_kernel, slider_step
from orchestrator.web.wizards.micrograph import frame, micrograph_png, sample_of
from orchestrator.web.wizards.png import bin_factor, binned


class ParticleDiameter(Wizard):
    kind: ClassVar[str] = "particle_diameter"
    title: ClassVar[str] = "Particle diameter"
    button: ClassVar[str] = "Measure on a micrograph"
    sample_types: ClassVar[tuple[str, ...]] = (MICROGRAPHS,)

    def panel(self, context: WizardContext) -> dict[str, Any]:
        sample = sample_of(context)
        pixel = sample.pixel_size_a
        height, width = sample.image.shape
        low = max(float(context.param.get("min") or 0.0), 4 * pixel)
        high = max(low + pixel, min(width, height) * pixel / 4, context.current())  # no particle is larger
        value = bounded(context.current(), low, high)
        x, y = _likely_particle(sample.image, value / 2 / pixel)
        return {**frame(sample), "value": value, "min": round(low, 1), "max": round(high, 1),
                "step": slider_step(pixel), "x": x, "y": y}

    def image(self, context: WizardContext) -> bytes:
        return micrograph_png(context)


def _likely_particle(image: np.ndarray, radius_px: float) -> tuple[float, float]:
    """Where the circle starts: the strongest blob of about that radius (the centre when none is
    found), so the user starts on a particle rather than on empty ice."""
    factor = bin_factor(image.shape, 512)
    small = binned(image, factor)
    picks = emtools_kernel("picking").pick_blobs(small, max(radius_px / factor, 1.0), threshold_sigma=2.0,
                                                 max_picks=1)
    if len(picks.scores) == 0:
        return image.shape[1] / 2, image.shape[0] / 2
    x, y = picks.coordinates[0]
    return float((x + 0.5) * factor), float((y + 0.5) * factor)
