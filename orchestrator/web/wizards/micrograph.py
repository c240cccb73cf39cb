"""The micrograph the diameter, box and threshold wizards draw on: its picture and its frame."""

from __future__ import annotations

from typing import Any

from orchestrator.app.samples import MicrographSample, micrograph_sample
from orchestrator.web.wizards.base import WizardContext
from orchestrator.web.wizards.png import bin_factor, binned, encode_png, to_gray

#: the smoothing of the shown micrograph, in shown pixels: raw micrographs are mostly noise
SMOOTH_PX = 1.2


def sample_of(context: WizardContext) -> MicrographSample:
    return micrograph_sample(context.folder, context.sample, context.index)


def frame(sample: MicrographSample) -> dict[str, Any]:
    """What every micrograph panel shows: the image's size in its own pixels, which micrograph of
    how many, and the pixel size."""
    height, width = sample.image.shape
    return {"width": width, "height": height, "name": sample.name, "index": sample.index, "count": sample.count,
            "pixel_size_a": sample.pixel_size_a, "source": sample.source}


def micrograph_png(context: WizardContext) -> bytes:
    """The micrograph binned to a screen's size, smoothed and contrast-stretched (the overlay is
    drawn in its full-size pixels: the browser scales the picture to the same frame)."""
    sample = sample_of(context)
    factor = bin_factor(sample.image.shape)
    return encode_png(to_gray(binned(sample.image, factor), smooth_px=SMOOTH_PX))
