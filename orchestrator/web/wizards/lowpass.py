"""``lowpass``: a map's central slices, as they are and low-passed to the value the slider sets, so
the user sees how much detail the filter leaves (a starting model should keep only its shape)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from orchestrator.app.samples import VOLUME, central_slices, volume_sample
from orchestrator.web.wizards.base import Wizard, WizardContext, bounded, emtools_kernel, slider_step
from orchestrator.web.wizards.png import encode_png, montage

GAP_PX = 2


class Lowpass(Wizard):
    kind: ClassVar[str] = "lowpass"
    title: ClassVar[str] = "Low-pass filter"
    button: ClassVar[str] = "Preview on the map"
    sample_types: ClassVar[tuple[str, ...]] = (VOLUME,)

    def panel(self, context: WizardContext) -> dict[str, Any]:
        sample = volume_sample(context.folder, context.sample)
        box = int(sample.volume.shape[0])
        pixel = sample.pixel_size_a
        nyquist = 2 * pixel
        low = max(float(context.param.get("min") or 0.0), nyquist)
        high = max(low + 1.0, box * pixel / 2, context.current())
        return {"source": sample.source, "box": box, "pixel_size_a": pixel, "nyquist_a": round(nyquist, 2),
                "value": bounded(context.current(), low, high), "min": round(low, 1), "max": round(high, 1),
                "step": slider_step(pixel), "width": 3 * box + 2 * GAP_PX, "height": 2 * box + GAP_PX}

    def image(self, context: WizardContext) -> bytes:
        sample = volume_sample(context.folder, context.sample)
        pixel = sample.pixel_size_a
        value = max(context.value if context.value is not None else context.current(), 2 * pixel)
        filtered = emtools_kernel("filters").lowpass_volume(sample.volume, value, pixel, xp=np)
        before, after = central_slices(sample.volume), central_slices(np.asarray(filtered))
        # one contrast for both rows: the filtered slices look as much fainter as they are
        low, high = np.percentile(before, [0.5, 99.5])
        tiles = [_gray(image, float(low), float(high)) for image in (*before, *after)]
        return encode_png(montage(tiles, 3, GAP_PX))


def _gray(image: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (image - low) / max(high - low, 1e-12)
    return np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
