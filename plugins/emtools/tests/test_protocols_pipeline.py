"""The emtools pipeline end to end through the real scheduler, checked against the ground truth.

Data (``emtools.simulate``): 4 movies of 10 frames, 40 e/Å², 50 particles each (200 in
all) of the 32-px phantom at 4 Å/px (Nyquist 8 Å), particle SNR 1.0, defocus 0.8-1.6 µm,
8 px of drift. The runs are submitted as the demo submits them (pointers by run name)
and served by ``daemon.serve`` in this process with two worker processes.

Stated results (measured on two shared cores; thresholds leave margin):
* motion correction recovers the drift within 0.3 px RMS per movie (reached 0.04-0.05 px);
* CTF estimation recovers the mean defocus within 300 Å (reached 120-160 Å, all over);
* blob picking finds >= 85 % of the particles within 4 px, precision >= 85 % (reached 98 %,
  98 %); template picking with the 2D classes >= 80 %, >= 70 % (reached 93 %, 91 %);
* refinement of the ~200 extracted particles from the ground truth low-passed to 30 Å
  reaches a gold-standard FSC 0.143 better than 15 Å (reached 13.1 Å) and the map matches
  the truth at FSC 0.5 better than 16 Å (reached 13.9 Å).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from emtools.kernels.xp import gpu_available
from emtools.steps.ground_truth import compare

from orchestrator.em import mrc
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon
from orchestrator.scheduler.control import submit
from orchestrator.store import RunState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # ~1 min on two idle cores

BOX, PIXEL = 32, 4.0
RUNS: list[tuple[str, str, dict[str, Any]]] = [
    ("simulate", "emtools.simulate", {"n_micrographs": 4, "particles_per_micrograph": 50, "box": BOX,
                                      "pixel_size": PIXEL, "snr": 1.0, "frames": 10, "dose": 40.0, "seed": 3}),
    ("motioncorr", "emtools.motioncorr", {"movies": "simulate.movies", "batch_size": 2}),
    ("ctffind", "emtools.ctffind", {"micrographs": "motioncorr.micrographs", "tile_size": 128,
                                    "max_resolution": 9.0, "batch_size": 2}),
    ("pick", "emtools.pick", {"micrographs": "ctffind.micrographs", "particle_diameter": 0.6 * BOX * PIXEL,
                              "min_distance": BOX * PIXEL, "batch_size": 2}),
    ("extract", "emtools.extract", {"coordinates": "pick.coordinates", "box_size": BOX, "batch_size": 2}),
    ("classify2d", "emtools.classify2d", {"particles": "extract.particles", "n_classes": 2, "iterations": 3,
                                          "angle_step": 30.0}),
    ("pick_templates", "emtools.pick", {"micrographs": "ctffind.micrographs", "method": "template",
                                        "templates": "classify2d.classes", "angle_step": 30.0,
                                        "particle_diameter": 0.6 * BOX * PIXEL, "min_distance": BOX * PIXEL,
                                        "max_picks": 60, "batch_size": 4}),
    ("refine3d", "emtools.refine3d", {"particles": "extract.particles", "initial_model": "simulate.volume",
                                      "max_iterations": 6}),
    ("fsc", "emtools.fsc", {"volume": "refine3d.volume", "reference": "simulate.volume"}),
    ("refine_gpu", "emtools.refine3d", {"particles": "extract.particles", "initial_model": "simulate.volume",
                                        "use_gpu": True}),
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, dict[str, Any]]]:
    base = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCH_HOME", str(base / "orch-home"))
        project = Project.create(base / "project")
        registry = discover()
        with project.open_store() as store:
            for name, protocol, params in RUNS:
                submit(project, protocol, params, name=name, store=store, registry=registry, start_daemon=False)
        assert daemon.serve(project, idle_exit_s=1.0, workers=2) == 0
        with project.open_store() as store:
            runs = {run.name: run for run in store.runs.list()}
            outputs = {name: {o.name: o for o in store.outputs.list(run.id)} for name, run in runs.items()}
            checks = compare(store, project.run_dir("simulate"), project.run_dir("motioncorr"),
                             outputs["motioncorr"]["micrographs"].set_id, outputs["ctffind"]["micrographs"].set_id,
                             outputs["pick"]["coordinates"].set_id)
            template_checks = compare(store, project.run_dir("simulate"), project.run_dir("motioncorr"),
                                      outputs["motioncorr"]["micrographs"].set_id,
                                      outputs["ctffind"]["micrographs"].set_id,
                                      outputs["pick_templates"]["coordinates"].set_id)
            particles = store.get_set(outputs["refine3d"]["particles"].set_id).to_numpy()
            classified = store.get_set(outputs["classify2d"]["particles"].set_id).to_numpy(["class_id"])
        yield project, {"runs": runs, "outputs": outputs, "checks": checks, "template_checks": template_checks,
                        "refined": particles, "classified": classified}


def test_every_run_finishes_and_the_gpu_one_wherever_a_gpu_is_given(pipeline) -> None:
    """The GPU refinement finishes where the local host gives its workers a GPU (on CuPy when
    CuPy sees a device, else on NumPy, saying so) and fails for that reason alone elsewhere."""
    project, result = pipeline
    runs = result["runs"]
    for name, _, _ in RUNS[:-1]:
        assert runs[name].run_state is RunState.FINISHED, (name, runs[name].error)
    gpu = runs["refine_gpu"]
    if gpu.run_state is RunState.FAILED:
        # the one accepted failure: the host had no GPU to give (the scheduler's check before the
        # run starts, or the worker's GPU pool), never a crash of the GPU code
        assert re.search(r"1 GPU\(s\); .*(offers 0\b|has 0\b|has no GPUs)", gpu.error or ""), gpu.error
        return
    assert gpu.run_state is RunState.FINISHED, (gpu.run_state, gpu.error)
    log = "".join(path.read_text() for path in (project.run_dir("refine_gpu") / "logs").glob("*.log"))
    on_gpu = "running the kernels on GPU" in log
    assert on_gpu == gpu_available(), log[-2000:]  # CuPy used exactly when it sees a device
    assert on_gpu or "running on the CPU" in log
    volume = result["outputs"]["refine_gpu"]["volume"].value
    assert volume["resolution_a"] < 15.0, volume  # the same refinement as refine3d, on either device
    for name in ("maps/map.mrc", "maps/half1.mrc", "maps/half2.mrc"):
        assert np.isfinite(mrc.read_volume(project.run_dir("refine_gpu") / name)).all(), name


def test_sets_flow_through_the_pipeline(pipeline) -> None:
    project, result = pipeline
    out = result["outputs"]
    assert out["simulate"]["movies"].value["size"] == 4 and out["simulate"]["movies"].set_id
    assert out["motioncorr"]["micrographs"].value["size"] == 4
    assert out["ctffind"]["micrographs"].set_id != out["motioncorr"]["micrographs"].set_id
    n_particles = out["extract"]["particles"].value["size"]
    assert 160 <= n_particles <= 230
    assert out["refine3d"]["particles"].value["size"] == n_particles
    refined = result["refined"]
    assert set(np.unique(refined["subset"])) == {1, 2}
    assert np.ptp(refined["tilt"]) > 90.0  # angles were assigned over the sphere
    assert set(np.unique(result["classified"]["class_id"])) <= {1, 2}
    sizes = out["classify2d"]["classes"].value["sizes"]
    assert sum(sizes) == n_particles and sizes[0] >= sizes[-1]
    run_dir = project.run_dir("refine3d")
    for name in ("maps/map.mrc", "maps/half1.mrc", "maps/half2.mrc"):
        volume = mrc.read_volume(run_dir / name)
        assert volume.shape == (BOX, BOX, BOX)
        assert np.isfinite(volume).all(), name  # a NaN voxel would make the stated resolution meaningless
    assert mrc.read_header(run_dir / "maps/map.mrc").voxel_size[0] == pytest.approx(PIXEL)
    assert (project.run_dir("simulate") / "ground_truth" / "particles.star").exists()


def test_motion_correction_recovers_the_drift(pipeline) -> None:
    checks = pipeline[1]["checks"]
    assert checks.max_drift_rms_px < 0.3, checks.drift_rms_px


def test_ctf_estimation_recovers_the_defocus(pipeline) -> None:
    checks = pipeline[1]["checks"]
    assert checks.max_defocus_error_a < 300.0, checks.defocus_error_a


def test_blob_and_template_picking_find_the_particles(pipeline) -> None:
    checks, templates = pipeline[1]["checks"], pipeline[1]["template_checks"]
    assert checks.pick_recall >= 0.85 and checks.pick_precision >= 0.85, checks
    assert templates.pick_recall >= 0.8 and templates.pick_precision >= 0.7, templates


def test_refinement_reaches_the_stated_resolution(pipeline) -> None:
    out = pipeline[1]["outputs"]
    gold = out["refine3d"]["volume"].value["resolution_a"]
    fsc = out["fsc"]["fsc"].value
    assert gold < 15.0, gold
    assert fsc["resolution_0143"] == pytest.approx(gold, rel=0.05)  # the same half maps, the same mask
    assert fsc["vs_reference_05"] < 16.0, fsc
    assert Path(out["fsc"]["fsc"].path).name == "fsc.json"
