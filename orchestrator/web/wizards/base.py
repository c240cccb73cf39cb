"""What every wizard is: a panel beside a field, computed on a sample of the project's data.

A protocol declares ``wizard="KIND"`` on a param; the form shows a button beside that field,
and the button opens the wizard's panel (``fragments/wizard_KIND.html``) in the form's side
column. The panel draws on one image (a micrograph, class averages, a map's slices) rendered
here as a PNG; the browser draws the overlay (circle, boxes, picks) and writes the value the
user sets by dragging or with the slider back into the field.

A wizard reads a *sample*: one registered output (``RUN.OUTPUT``) of the types it takes. By
default it is what the form's own input of such a type names, so the user sees the data the
run will read; the panel lets the user pick another.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.errors import UsageError


@dataclass(frozen=True)
class WizardContext:
    """One request to a wizard: the project, the param it helps with (as ``describe()`` gives it),
    the form's fields as the user has them now, the sample, which image of it, and a value to
    show (the low-pass, whose picture is computed for each value)."""

    folder: Path
    protocol: str
    param: Mapping[str, Any]
    fields: Mapping[str, str]
    sample: str
    index: int = 0
    value: float | None = None

    @property
    def name(self) -> str:
        return str(self.param["name"])

    def number(self, name: str, default: float | None = None) -> float | None:
        """The form's field ``name`` as a number; ``default`` when it is empty or not a number
        (the form's own check says what is wrong with it)."""
        text = (self.fields.get(name) or "").strip()
        try:
            number = float(text)
        except ValueError:
            return default
        return number if number == number and abs(number) != float("inf") else default

    def current(self) -> float:
        """The value of the wizard's own field now: the field's, else the param's default, else 0."""
        default = self.param.get("default")
        return self.number(self.name, float(default) if isinstance(default, int | float) else 0.0) or 0.0


class Wizard(ABC):
    """A kind of wizard. ``sample_types`` are the output types it reads, preferred first;
    ``reads`` the other fields whose change redraws the panel."""

    kind: ClassVar[str]
    title: ClassVar[str]
    #: the label of the button beside the field
    button: ClassVar[str]
    sample_types: ClassVar[tuple[str, ...]]
    reads: ClassVar[tuple[str, ...]] = ()
    #: False: a sample of the first type is preferred to the form's own input (class averages show
    #: a mask better than the particles the run reads)
    prefer_form_input: ClassVar[bool] = True

    @abstractmethod
    def panel(self, context: WizardContext) -> dict[str, Any]:
        """What the panel's template draws: sizes in the image's pixels, the slider's range, notes."""

    @abstractmethod
    def image(self, context: WizardContext) -> bytes:
        """The panel's picture, as a PNG."""


def emtools_kernel(name: str) -> Any:
    """An emtools kernel module (``picking``, ``filters``), which the wizards compute with; a clear
    error when that plugin is not installed here."""
    try:
        return importlib.import_module(f"emtools.kernels.{name}")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("emtools"):
            raise UsageError("this wizard computes with the emtools plugin, which is not installed here "
                             "(pip install -e plugins/emtools)") from None
        raise


def slider_step(pixel_size_a: float) -> float:
    """A slider step in Å that moves by about half a pixel, rounded to a readable number."""
    for step in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0):
        if step >= pixel_size_a / 2:
            return step
    return 10.0


def bounded(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
