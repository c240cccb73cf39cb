"""The emtools protocols, one module per family (simulation, imports, micrographs, particles)."""

from emtools.protocols.imports import ImportMicrographs, ImportMovies, ImportParticles
from emtools.protocols.micrographs import CtfFind, Extract, MotionCorr, Pick
from emtools.protocols.particles import Classify2D, Fsc, Reconstruct, Refine3D
from emtools.protocols.simulate import Simulate
from emtools.protocols.subsets import SelectClasses
from orchestrator.protocol import Protocol

PROTOCOLS: tuple[type[Protocol], ...] = (
    Simulate, ImportMovies, ImportMicrographs, ImportParticles, MotionCorr, CtfFind, Pick, Extract,
    Classify2D, Reconstruct, Refine3D, Fsc, SelectClasses,
)

__all__ = ["PROTOCOLS", "Classify2D", "CtfFind", "Extract", "Fsc", "ImportMicrographs", "ImportMovies",
           "ImportParticles", "MotionCorr", "Pick", "Reconstruct", "Refine3D", "SelectClasses", "Simulate"]
