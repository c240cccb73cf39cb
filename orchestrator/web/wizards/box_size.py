"""``box_size``: the boxes extraction will cut, drawn around the picks of one micrograph; the user
sizes them (drag a corner, or the slider) and the size in pixels goes into the field."""

from __future__ import annotations

from typing import Any, ClassVar

from orchestrator.app.samples import COORDINATES, MICROGRAPHS
from orchestrator.web.wizards.base import Wizard, WizardContext, bounded
from orchestrator.web.wizards.micrograph import frame, micrograph_png, sample_of

#: at most this many boxes are drawn (the best picks come first)
MAX_BOXES = 400


class BoxSize(Wizard):
    kind: ClassVar[str] = "box_size"
    title: ClassVar[str] = "Box size"
    button: ClassVar[str] = "Draw the boxes"
    sample_types: ClassVar[tuple[str, ...]] = (COORDINATES, MICROGRAPHS)
    reads: ClassVar[tuple[str, ...]] = ("bin_factor",)

    def panel(self, context: WizardContext) -> dict[str, Any]:
        sample = sample_of(context)
        height, width = sample.image.shape
        diameter_px = sample.particle_diameter_a / sample.pixel_size_a if sample.particle_diameter_a else None
        low = max(int(context.param.get("min") or 2), 2)
        # boxes of a few particle diameters at most, and never half the micrograph
        high = int(min(min(width, height) // 2, max(4 * (diameter_px or 64), 2 * context.current(), 64)))
        value = int(bounded(round(context.current()), low, high))
        picks = sample.picks.tolist()[:MAX_BOXES] if sample.picks is not None else []
        if not picks:  # no coordinates: one box in the middle, to move onto a particle
            picks = [[width / 2, height / 2]]
        binning = int(context.number("bin_factor", 1) or 1)
        return {**frame(sample), "value": value, "min": low, "max": high, "step": max(binning, 1),
                "picks": [[round(x, 1), round(y, 1)] for x, y in picks], "diameter_px": diameter_px,
                "bin_factor": max(binning, 1)}

    def image(self, context: WizardContext) -> bytes:
        return micrograph_png(context)
