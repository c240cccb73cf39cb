"""A small project with finished map runs, for the export tests (EMDB bundle, RO-Crate).

Raw data: 240 particles of 32 px at 4 Å/px projected from emtools' phantom with CTF and
noise (SNR 2), with their true angles, in ``raw/`` of the project. Runs: ``imp``
(emtools.import_particles of ``raw/particles.star``), ``rec`` (emtools.reconstruct, a 100 Å
FSC mask), ``fsc`` (emtools.fsc of ``rec.volume`` with the default mask); with RELION
installed also ``rimp`` (relion.import_particles), ``rrec`` (relion.reconstruct) and
``post`` (relion.postprocess). About 10 s without RELION.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.em.mrc import write_stack
from orchestrator.em.relion import particles_to_star
from orchestrator.objects.em import Optics
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState

BOX, PIXEL, COUNT = 32, 4.0, 240
RELION_PROGRAMS = ("relion_reconstruct", "relion_image_handler", "relion_mask_create", "relion_postprocess")


@dataclass
class ExportProject:
    project: Project
    relion: bool  # whether the RELION runs are there


def has_relion() -> bool:
    return all(shutil.which(program) for program in RELION_PROGRAMS)


def write_raw_particles(folder: Path) -> Path:
    """The particles (two stacks) and their STAR file with true angles; returns the STAR file."""
    from emtools.kernels.phantom import make_phantom
    from emtools.kernels.simulate_particles import simulate_particles

    folder.mkdir(parents=True)
    stack = simulate_particles(make_phantom(BOX, PIXEL, seed=0), COUNT, PIXEL, snr=2.0, seed=1)
    half = COUNT // 2
    write_stack(folder / "a.mrcs", stack.images[:half], PIXEL)
    write_stack(folder / "b.mrcs", stack.images[half:], PIXEL)
    columns: dict[str, np.ndarray] = {name: np.asarray(values, dtype=np.float32)
                                      for name, values in stack.metadata.items()}
    columns["id"] = np.arange(1, COUNT + 1, dtype=np.int64)
    columns["image_index"] = np.concatenate([np.arange(1, half + 1), np.arange(1, COUNT - half + 1)]).astype(np.int32)
    columns["image_path"] = np.array(["a.mrcs"] * half + ["b.mrcs"] * (COUNT - half))
    columns["micrograph_id"] = (np.arange(COUNT) // 60 + 1).astype(np.int32)
    optics = Optics(1, "opticsGroup1", 300.0, 2.7, 0.1, PIXEL, BOX)
    return particles_to_star(columns, [optics], folder / "particles.star")


def make_export_project(folder: Path) -> ExportProject:
    """Create the project under ``folder`` and run it to the end (every run must finish)."""
    project = Project.create(folder / "proj")
    write_raw_particles(project.path / "raw")
    runs = [("imp", "emtools.import_particles", {"star_file": "raw/particles.star"}),
            ("rec", "emtools.reconstruct", {"particles": "imp.particles", "mask_diameter": "100"}),
            ("fsc", "emtools.fsc", {"volume": "rec.volume"})]
    relion = has_relion()
    if relion:
        runs += [("rimp", "relion.import_particles", {"star_file": str(project.path / "raw/particles.star")}),
                 ("rrec", "relion.reconstruct", {"particles": "rimp.particles"}),
                 ("post", "relion.postprocess", {"volume": "rrec.volume", "bfactor": "-50"})]
    registry = discover()
    with project.open_store() as store:
        for name, protocol, params in runs:
            planner.create_run(store, project, registry, protocol, params, name=name)
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    with project.open_store() as store:
        for name, _protocol, _params in runs:
            run = store.runs.get(name)
            assert run.run_state is RunState.FINISHED, f"{name}: {run.state} {run.error}"
    return ExportProject(project, relion)
