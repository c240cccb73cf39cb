"""Helpers of the RELION plugin tests: simulated particles and RELION on PATH.

The particles are simulated with the native plugin's kernels (emtools: a protein-like
phantom, projections with CTF and white noise); RELION then works on them as it would on
extracted particles. Without RELION the tests that run it skip on a developer's machine;
in CI (``CI`` set) a missing RELION is a failure.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from orchestrator.em.mrc import write_stack, write_volume
from orchestrator.em.relion import particles_to_star
from orchestrator.objects.em import Optics


def require_relion(*programs: str) -> None:
    """Skip (or fail, in CI) when a RELION program or mpirun is missing."""
    for program in programs or ("relion_refine", "relion_refine_mpi", "mpirun"):
        if shutil.which(program) is None:
            message = f"{program} is not installed (apt-get install relion openmpi-bin)"
            if os.environ.get("CI"):
                pytest.fail(f"{message}; CI must run the RELION tests")
            pytest.skip(message)


@dataclass
class SimulatedParticles:
    """Particles on disk with their ground truth (what each test reads)."""

    folder: Path
    truth_map: Path  # the phantom, box³ at pixel_size
    star_with_angles: Path  # true angles and shifts
    star_without_angles: Path  # CTF only: what a refinement starts from
    columns: dict[str, np.ndarray]  # true metadata, image paths relative to folder
    optics: Optics
    volume: np.ndarray
    box: int
    pixel_size: float
    snr: float

    @property
    def count(self) -> int:
        return len(self.columns["id"])


def simulate(
    folder: Path, box: int = 32, pixel_size: float = 4.0, count: int = 300, snr: float = 1.0, seed: int = 1
) -> SimulatedParticles:
    """``count`` particles of ``box`` px at ``pixel_size`` Å/px and SNR ``snr``, in two stacks."""
    from emtools.kernels.phantom import make_phantom
    from emtools.kernels.simulate_particles import simulate_particles

    folder.mkdir(parents=True, exist_ok=True)
    volume = make_phantom(box, pixel_size, seed=0)
    stack = simulate_particles(volume, count, pixel_size, snr=snr, seed=seed)
    write_volume(folder / "truth.mrc", volume, pixel_size)
    half = count // 2
    (folder / "Particles").mkdir(exist_ok=True)
    write_stack(folder / "Particles/a.mrcs", stack.images[:half], pixel_size)
    write_stack(folder / "Particles/b.mrcs", stack.images[half:], pixel_size)
    columns = {name: np.asarray(values, dtype=np.float32) for name, values in stack.metadata.items()}
    columns["id"] = np.arange(1, count + 1, dtype=np.int64)
    columns["image_index"] = np.concatenate([np.arange(1, half + 1), np.arange(1, count - half + 1)]).astype(np.int32)
    columns["image_path"] = np.array(["Particles/a.mrcs"] * half + ["Particles/b.mrcs"] * (count - half))
    columns["micrograph_id"] = (np.arange(count) // 50 + 1).astype(np.int32)
    optics = Optics(1, "opticsGroup1", 300.0, 2.7, 0.1, pixel_size, box)
    particles_to_star(columns, [optics], folder / "with_angles.star")
    no_angles = {k: v for k, v in columns.items() if k not in ("rot", "tilt", "psi", "shift_x", "shift_y")}
    particles_to_star(no_angles, [optics], folder / "without_angles.star")
    return SimulatedParticles(
        folder,
        folder / "truth.mrc",
        folder / "with_angles.star",
        folder / "without_angles.star",
        columns,
        optics,
        volume,
        box,
        pixel_size,
        snr,
    )
