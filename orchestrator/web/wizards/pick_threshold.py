"""``pick_threshold``: the blob picker run on one micrograph at every threshold at once; the browser
shows the picks above the threshold the slider sets, and how many there are at each threshold."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from orchestrator.app.samples import MICROGRAPHS
from orchestrator.web.wizards.base import Wizard, WizardContext, bounded, emtools_kernel
from orchestrator.web.wizards.micrograph import frame, micrograph_png, sample_of

#: the lowest threshold offered (in robust standard deviations); picks below it are not sent
LOWEST_SIGMA = 0.5
MAX_PICKS_SENT = 5000


class PickThreshold(Wizard):
    kind: ClassVar[str] = "pick_threshold"
    title: ClassVar[str] = "Picking threshold"
    button: ClassVar[str] = "Preview the picks"
    sample_types: ClassVar[tuple[str, ...]] = (MICROGRAPHS,)
    reads: ClassVar[tuple[str, ...]] = ("particle_diameter", "min_distance", "max_picks", "method")

    def panel(self, context: WizardContext) -> dict[str, Any]:
        sample = sample_of(context)
        pixel = sample.pixel_size_a
        diameter = context.number("particle_diameter") or 150.0
        radius_px = max(diameter / 2 / pixel, 1.0)
        distance = context.number("min_distance") or 0.0
        picks = emtools_kernel("picking").pick_blobs(
            sample.image, radius_px, min_distance_px=distance / pixel if distance > 0 else None,
            threshold_sigma=LOWEST_SIGMA, max_picks=MAX_PICKS_SENT)
        scores = np.asarray(picks.scores, dtype=np.float64)
        high = max(8.0, float(np.ceil(scores.max())) if scores.size else 8.0)
        value = bounded(context.current(), LOWEST_SIGMA, high)
        found = [[round(float(x), 1), round(float(y), 1), round(float(s), 3)]
                 for (x, y), s in zip(picks.coordinates, scores, strict=True)]
        return {**frame(sample), "value": value, "min": LOWEST_SIGMA, "max": high, "step": 0.1, "picks": found,
                "radius_px": radius_px, "max_picks": int(context.number("max_picks") or 0),
                "template": (context.fields.get("method") or "") == "template", "diameter_a": diameter}

    def image(self, context: WizardContext) -> bytes:
        return micrograph_png(context)
