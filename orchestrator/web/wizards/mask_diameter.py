"""``mask_diameter``: a circle over class averages (or particles, or a map's central slices); the
user sizes it to hold the particle with a margin and its diameter in Å goes into the field. 0 is
the protocols' "84 % of the box", drawn dashed."""

from __future__ import annotations

from typing import Any, ClassVar

from orchestrator.app.samples import CLASSES_2D, PARTICLES, VOLUME, ImagesSample, images_sample
from orchestrator.web.wizards.base import Wizard, WizardContext, bounded, slider_step
from orchestrator.web.wizards.png import encode_png, montage, to_gray

#: what a mask of 0 means in the emtools protocols
AUTO_FRACTION = 0.84
COLUMNS = 4
GAP_PX = 2
LIMIT = 12


class MaskDiameter(Wizard):
    kind: ClassVar[str] = "mask_diameter"
    title: ClassVar[str] = "Mask diameter"
    button: ClassVar[str] = "Draw on class averages"
    sample_types: ClassVar[tuple[str, ...]] = (CLASSES_2D, PARTICLES, VOLUME)
    prefer_form_input: ClassVar[bool] = False

    def panel(self, context: WizardContext) -> dict[str, Any]:
        sample = images_sample(context.folder, context.sample, LIMIT)
        box = int(sample.images.shape[-1])
        columns = _columns(sample)
        tiles = []
        for index, (label, short) in enumerate(zip(sample.labels, _short_labels(sample), strict=True)):
            row, column = divmod(index, columns)
            tiles.append({"x": column * (box + GAP_PX), "y": row * (box + GAP_PX), "label": label, "short": short})
        rows = -(-len(tiles) // columns)
        high = round(box * sample.pixel_size_a, 1)
        return {"kind_of_sample": sample.kind, "source": sample.source, "box": box, "tiles": tiles,
                "width": min(columns, len(tiles)) * (box + GAP_PX) - GAP_PX, "height": rows * (box + GAP_PX) - GAP_PX,
                "pixel_size_a": sample.pixel_size_a, "value": bounded(context.current(), 0.0, high), "min": 0,
                "max": high, "step": slider_step(sample.pixel_size_a),
                "auto_a": round(AUTO_FRACTION * box * sample.pixel_size_a, 1)}

    def image(self, context: WizardContext) -> bytes:
        sample = images_sample(context.folder, context.sample, LIMIT)
        tiles = [to_gray(image, 1.0, 99.0) for image in sample.images]
        return encode_png(montage(tiles, _columns(sample), GAP_PX))


def _short_labels(sample: ImagesSample) -> list[str]:
    """What fits on a tile (the whole label is its tooltip): ``1 (66)``, ``mean``, ``p3``, ``z``."""
    if sample.kind == "classes":
        return [label.replace("class ", "").replace(" · ", " (").replace(" particles", ")") for label in sample.labels]
    if sample.kind == "slices":
        return ["z", "y", "x"][:len(sample.labels)]
    return ["mean"] + [f"p{index}" for index in range(1, len(sample.labels))]


def _columns(sample: ImagesSample) -> int:
    return 3 if sample.kind == "slices" else COLUMNS
