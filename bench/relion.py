# ruff: noqa: E402 - sys.path is fixed before the imports, see below
"""Benchmark: the same 3D refinement by the native plugin and by RELION, side by side.

Usage:
    .venv/bin/python bench/relion.py [--quick] [--mpi 3]

Both refine the same simulated particles (emtools' phantom and forward model, as in
``plugins/emtools/tests/test_particles_refinement.py``) from the same start, the phantom
low-passed to 30 Å, in the same invocation:

* native: ``emtools.kernels.refinement.refine_3d`` in this process;
* RELION: ``relion.import_particles`` then ``relion.autorefine`` (``relion_refine_mpi
  --auto_refine``, ``--mpi`` ranks) through the orchestrator's scheduler on a local
  cluster, timed from the autorefine run's start to its end (export, refine, import).

Sizes: full, 1,000 particles of 48 px at 3 Å/px with SNR 0.1 (the demo's particles);
``--quick``, 300 particles of 32 px at 4 Å/px with SNR 1. RELION needs minutes even for
the quick size on two cores (its auto-refine iterates to convergence), so ``--quick`` takes
about 2-4 minutes there rather than one.

Lines follow DESIGN.md: ``BENCH figure=<name> value=<v> unit=<u> n=<particles> [ratio=..]``.
Resolutions: ``*_resolution_a`` is the gold-standard half-map FSC at 0.143 that each reports
itself (unmasked for RELION); ``*_vs_truth_a`` the FSC at 0.5 of its map against the phantom.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# This script imports nothing from bench/, and bench/queue.py would shadow the standard
# library's queue module (which dask imports) if the script's folder stayed on sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np

from orchestrator.em.mrc import read_volume, write_stack, write_volume
from orchestrator.em.relion import particles_to_star
from orchestrator.objects.em import Optics
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState

SIZES = {"quick": (32, 4.0, 300, 1.0), "full": (48, 3.0, 1000, 0.1)}


def bench(figure: str, value: float, unit: str, n: int, **extra: object) -> None:
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"BENCH figure={figure} value={value:.6g} unit={unit} n={n}{tail}", flush=True)


def simulate(folder: Path, box: int, pixel: float, n: int, snr: float) -> tuple[np.ndarray, object]:
    from emtools.kernels.phantom import make_phantom
    from emtools.kernels.simulate_particles import simulate_particles

    truth = make_phantom(box, pixel, seed=0)
    stack = simulate_particles(truth, n, pixel, snr=snr, seed=1)
    write_volume(folder / "truth.mrc", truth, pixel)
    write_stack(folder / "particles.mrcs", stack.images, pixel)
    columns = {k: v for k, v in stack.metadata.items() if k.startswith("defocus")}
    columns["image_index"] = np.arange(1, n + 1)
    columns["image_path"] = np.array(["particles.mrcs"] * n)
    particles_to_star(columns, [Optics(1, "opticsGroup1", 300.0, 2.7, 0.1, pixel, box)], folder / "particles.star")
    return truth, stack


def native(truth: np.ndarray, stack: object, pixel: float, quick: bool) -> tuple[float, float, float]:
    from emtools.kernels.fsc import fsc
    from emtools.kernels.refinement import RefinementSettings, refine_3d

    settings = RefinementSettings(max_iterations=6) if quick else RefinementSettings()
    m = stack.metadata  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    result = refine_3d(
        stack.images,
        stack.optics,
        m["defocus_u"],
        m["defocus_v"],
        m["defocus_angle"],  # type: ignore[attr-defined]
        truth,
        pixel,
        settings,
    )
    seconds = time.perf_counter() - t0
    return seconds, result.resolution_a, fsc(result.volume, truth, pixel).resolution(0.5)


def relion(
    folder: Path, truth: np.ndarray, pixel: float, box: int, quick: bool, mpi: int
) -> tuple[float, float, float]:
    from emtools.kernels.fsc import fsc

    project = Project.create(folder / "project")
    registry = discover()
    sampling = (
        {"healpix_order": 1, "local_healpix_order": 3} if quick else {"healpix_order": 2, "local_healpix_order": 4}
    )
    with project.open_store() as store:
        planner.create_run(
            store,
            project,
            registry,
            "relion.import_particles",
            {"star_file": str(folder / "particles.star")},
            name="import",
        )
        planner.create_run(
            store,
            project,
            registry,
            "relion.autorefine",
            {
                "particles": "import.particles",
                "reference_file": str(folder / "truth.mrc"),
                "ini_high": 30.0,
                "particle_diameter": round(0.75 * box * pixel),
                "mpi": mpi,
                **sampling,
            },
            name="autorefine",
        )
    daemon.serve(project, idle_exit_s=1.0, workers=2)
    with project.open_store() as store:
        run = store.runs.get("autorefine")
        if run.run_state is not RunState.FINISHED:
            raise SystemExit(f"relion.autorefine ended {run.state}: {run.error}")
        seconds = (run.finished_at - run.started_at).total_seconds()
        volume = {o.name: o for o in store.outputs.list(run.id)}["volume"]
    vs_truth = fsc(read_volume(project.run_dir("autorefine") / volume.path), truth, pixel).resolution(0.5)
    return seconds, float(volume.value["resolution_a"]), vs_truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 particles of 32 px (a few minutes)")
    parser.add_argument("--mpi", type=int, default=3, help="MPI ranks for relion_refine_mpi (>= 3)")
    args = parser.parse_args(argv)
    box, pixel, n, snr = SIZES["quick" if args.quick else "full"]
    print(f"# {n} particles, {box} px at {pixel} Å/px (Nyquist {2 * pixel:g} Å), SNR {snr}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-relion-") as tmp:
        folder = Path(tmp)
        os.environ["ORCH_HOME"] = str(folder / "orch-home")  # keep the user's project list clean
        truth, stack = simulate(folder, box, pixel, n, snr)
        native_s, native_res, native_truth = native(truth, stack, pixel, args.quick)
        bench("native_refine3d_s", native_s, "s", n)
        bench("native_refine3d_resolution_a", native_res, "A", n)
        bench("native_refine3d_vs_truth_a", native_truth, "A", n)
        relion_s, relion_res, relion_truth = relion(folder, truth, pixel, box, args.quick, args.mpi)
        bench("relion_autorefine_s", relion_s, "s", n, anchor=f"{native_s:.4g}")
        bench("relion_autorefine_resolution_a", relion_res, "A", n, anchor=f"{native_res:.4g}")
        bench("relion_autorefine_vs_truth_a", relion_truth, "A", n, anchor=f"{native_truth:.4g}")
        bench("relion_over_native_time_ratio", relion_s / native_s, "x", n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
