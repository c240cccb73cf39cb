"""The emtools protocols as declarations: plugin discovery, forms, validation, step graphs.

No scheduler here: params are validated and inputs bound to hand-made OutputRefs, which is
what the scheduler does before it asks a protocol for its steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from emtools.plugin import plugin
from emtools.protocols import PROTOCOLS

from orchestrator.objects.params import ParamValidationError
from orchestrator.plugins import discover
from orchestrator.protocol import OutputRef, Protocol, StepGraph

METHOD_PROTOCOLS = {"emtools.simulate", "emtools.motioncorr", "emtools.ctffind", "emtools.pick", "emtools.extract",
                    "emtools.classify2d", "emtools.reconstruct", "emtools.refine3d", "emtools.fsc"}


def ref(output: str, type_name: str, value: dict | None = None, path: str | None = None, run_id: int = 1) -> OutputRef:
    return OutputRef(run_id, output, type_name, Path("/project/runs/producer"), path, value)


def build(protocol: type[Protocol], raw: dict, refs: dict[str, OutputRef]) -> StepGraph:
    params = protocol.validate(raw).bind_inputs(refs)
    return protocol().build_steps(params)


def test_the_entry_point_gives_the_plugin_with_every_protocol() -> None:
    registry = discover()
    assert "emtools" in registry.plugins, registry.failures
    assert {p.name for p in registry.plugin("emtools").protocols} == {p.name for p in PROTOCOLS}
    assert len(plugin.protocols) == 13  # with select_classes


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
def test_every_protocol_describes_itself(protocol: type[Protocol]) -> None:
    info = protocol.describe()
    assert info["help"] and info["outputs"]
    assert all(param["help"] for param in info["params"]), "every param has a help text"
    if protocol.name in METHOD_PROTOCOLS:
        assert info["citations"] and all(c.lstrip().startswith("@article{") and "doi" in c for c in info["citations"])
    set_outputs = [t for t in info["outputs"].values() if t.startswith("SetOf")]
    assert all(t in {"SetOfMovies", "SetOfMicrographs", "SetOfCoordinates", "SetOfParticles", "SetOfClasses2D"}
               for t in set_outputs)


def test_bad_params_are_reported_together_by_name() -> None:
    ctffind = next(p for p in PROTOCOLS if p.name == "emtools.ctffind")
    with pytest.raises(ParamValidationError) as err:
        ctffind.validate({"micrographs": "motioncorr.micrographs", "max_resolution": 40.0, "defocus_max": 100.0})
    assert "max_resolution" in str(err.value) and "defocus_max" in str(err.value)
    extract = next(p for p in PROTOCOLS if p.name == "emtools.extract")
    with pytest.raises(ParamValidationError, match="bin_factor"):
        extract.validate({"coordinates": "pick.coordinates", "box_size": 63, "bin_factor": 2})
    simulate = next(p for p in PROTOCOLS if p.name == "emtools.simulate")
    with pytest.raises(ParamValidationError, match="n_micrographs"):
        simulate.validate({"n_micrographs": 0})


def test_micrograph_protocols_fan_out_per_batch() -> None:
    protocols = {p.name: p for p in PROTOCOLS}
    movies = ref("movies", "SetOfMovies", {"set_id": 3, "size": 5})
    graph = build(protocols["emtools.motioncorr"], {"movies": "simulate.movies", "batch_size": 2}, {"movies": movies})
    assert graph.names() == ["motioncorr_0000", "motioncorr_0001", "motioncorr_0002", "register"]
    assert [graph[n].args["start"] for n in graph.names()[:3]] == [0, 2, 4]
    assert set(graph["register"].deps) == set(graph.names()[:3])
    mics = ref("micrographs", "SetOfMicrographs", {"set_id": 4, "size": 7})
    for name, param in (("emtools.ctffind", "micrographs"), ("emtools.pick", "micrographs")):
        graph = build(protocols[name], {param: "x.micrographs", "batch_size": 3}, {param: mics})
        assert len(graph) == 3 + 1
    coords = ref("coordinates", "SetOfCoordinates", {"set_id": 5, "size": 900, "micrographs_set_id": 4,
                                                     "n_micrographs": 7})
    graph = build(protocols["emtools.extract"], {"coordinates": "pick.coordinates", "batch_size": 4},
                  {"coordinates": coords})
    assert len(graph) == 2 + 1 and graph["extract_0000"].args["micrographs_set"] == 4


def test_simulate_steps_are_seeded_batches_after_the_phantom() -> None:
    simulate = next(p for p in PROTOCOLS if p.name == "emtools.simulate")
    graph = simulate().build_steps(simulate.validate({"n_micrographs": 5, "batch_size": 2}))
    assert graph.names() == ["phantom", "movies_0000", "movies_0001", "movies_0002", "register"]
    assert graph["movies_0002"].args["first"] == 4 and graph["movies_0002"].args["stop"] == 5
    assert all(graph[f"movies_{i:04d}"].deps == ("phantom",) for i in range(3))


def test_refine3d_asks_for_a_gpu_only_when_told() -> None:
    refine = next(p for p in PROTOCOLS if p.name == "emtools.refine3d")
    refs = {"particles": ref("particles", "SetOfParticles", {"set_id": 9, "size": 1000, "box_size": 48}),
            "initial_model": ref("volume", "Volume", {"box": 48}, path="ground_truth/volume.mrc", run_id=2)}
    raw = {"particles": "extract.particles", "initial_model": "simulate.volume"}
    cpu = build(refine, raw, refs)["refine"].resources
    gpu = build(refine, {**raw, "use_gpu": True}, refs)["refine"].resources
    assert (cpu.gpus, gpu.gpus) == (0, 1)
    assert cpu.memory_mb and cpu.memory_mb > 512
    step = build(refine, raw, refs)["refine"]
    assert step.args["initial_model"] == "/project/runs/producer/ground_truth/volume.mrc"
    assert step.inputs == ("/project/runs/producer/ground_truth/volume.mrc",)


def test_reconstruct_inserts_per_batch_and_combines() -> None:
    reconstruct = next(p for p in PROTOCOLS if p.name == "emtools.reconstruct")
    particles = ref("particles", "SetOfParticles", {"set_id": 9, "size": 1200, "box_size": 32, "pixel_size_a": 4.0})
    graph = build(reconstruct, {"particles": "r.particles", "batch_size": 500}, {"particles": particles})
    assert graph.names() == ["insert_0000", "insert_0001", "insert_0002", "combine"]
    assert graph["combine"].args["box"] == 32 and graph["combine"].args["pixel_size_a"] == 4.0


def test_template_picking_needs_templates_and_blob_picking_ignores_them() -> None:
    pick = next(p for p in PROTOCOLS if p.name == "emtools.pick")
    with pytest.raises(ParamValidationError, match="templates"):
        pick.validate({"micrographs": "ctffind.micrographs", "method": "template"})
    params = pick.validate({"micrographs": "ctffind.micrographs"})
    assert params.pointers().keys() == {"micrographs"}


def test_a_gpu_step_without_a_usable_gpu_runs_on_numpy_and_says_so(tmp_path: Path) -> None:
    import numpy as np
    from emtools.kernels.xp import gpu_available
    from emtools.steps.particle_io import gpu_module

    from orchestrator.protocol import StepContext

    ctx = StepContext(project_dir=tmp_path, run_id=1, run_dir=tmp_path, step_name="refine",
                      log_path=tmp_path / "refine.log", gpus=[])
    assert gpu_module(ctx, use_gpu=False) is np
    assert not (tmp_path / "refine.log").exists()
    xp = gpu_module(ctx, use_gpu=True)  # asked for a GPU but the scheduler gave none
    assert xp is np and "running on the CPU" in (tmp_path / "refine.log").read_text()
    if not gpu_available():
        ctx.gpus = [0]
        assert gpu_module(ctx, use_gpu=True) is np
