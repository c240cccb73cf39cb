"""Optics groups: the acquisition settings shared by a set of particles.

RELION 3.1 moved voltage, spherical aberration, amplitude contrast and pixel size out of the
per-particle rows into a ``data_optics`` table; we keep the same split, so a particle set
holds a short list of :class:`Optics` records and each particle names its group by number.
The record itself belongs to the data model (:mod:`orchestrator.objects.em`).
"""

from orchestrator.objects.em import Optics

__all__ = ["Optics"]
