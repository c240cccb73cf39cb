"""Wizards (Scipion's name): helpers beside a form's field that let a user choose a value by eye on
a sample of the data, before the whole run is launched. One module per kind; a protocol names the
kind on its param (``FloatParam("particle_diameter", ..., wizard="particle_diameter")``).

=====================  =====================================================================
``particle_diameter``  a circle to size on a particle of one micrograph (Å)
``box_size``           the boxes extraction will cut, around the picks of one micrograph (px)
``pick_threshold``     the blob picker's picks on one micrograph, above the threshold (σ)
``mask_diameter``      a circle over class averages, particles or a map's slices (Å)
``lowpass``            a map's central slices before and after the low-pass (Å)
=====================  =====================================================================
"""

from __future__ import annotations

from orchestrator.web.wizards.base import Wizard, WizardContext
from orchestrator.web.wizards.box_size import BoxSize
from orchestrator.web.wizards.lowpass import Lowpass
from orchestrator.web.wizards.mask_diameter import MaskDiameter
from orchestrator.web.wizards.particle_diameter import ParticleDiameter
from orchestrator.web.wizards.pick_threshold import PickThreshold

WIZARDS: dict[str, Wizard] = {wizard.kind: wizard for wizard in (
    ParticleDiameter(), BoxSize(), PickThreshold(), MaskDiameter(), Lowpass())}

__all__ = ["WIZARDS", "Wizard", "WizardContext"]
