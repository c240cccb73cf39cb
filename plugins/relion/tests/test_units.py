"""Pure logic of the RELION plugin: command lines, GPU syntax, forms, conversions, output checks.

None of these start RELION; they run everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from relion_plugin.command import (
    gpu_argument,
    mpi_prefix,
    program_command,
    visible_gpu_ids,
)
from relion_plugin.errors import RelionInputError, RelionOutputError
from relion_plugin.particle_sets import optics_from_properties, portable_paths, resolve_image_paths
from relion_plugin.protocols_maps import Postprocess, Reconstruct
from relion_plugin.protocols_refine import AutoRefine, Class2D
from relion_plugin.results import check_map, fsc_resolution, volume_value
from relion_plugin.star_exchange import merge_relion_particles

from orchestrator.em.mrc import write_volume
from orchestrator.em.star import write_star
from orchestrator.objects.params import ParamValidationError, Pointer
from orchestrator.plugins import discover
from orchestrator.protocol import OutputRef, StepContext


def test_plugin_is_discovered_with_its_protocols_and_programs() -> None:
    plugin = discover().plugin("relion")
    names = {p.name for p in plugin.protocols}
    assert names == {
        "relion.preprocess",
        "relion.import_particles",
        "relion.class2d",
        "relion.class3d",
        "relion.autorefine",
        "relion.reconstruct",
        "relion.postprocess",
    }
    programs = {p.name: p for p in plugin.programs}
    assert "relion_refine" in programs and "relion_refine_mpi" in programs and "mpirun" in programs
    assert "apt-get install relion" in programs["relion_refine"].how_to_get


def test_missing_programs_are_reported_with_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    missing = discover().plugin("relion").check()
    assert {m.name for m in missing} >= {"relion_refine", "relion_refine_mpi", "mpirun"}
    assert all(m.how_to_get for m in missing)


@pytest.mark.parametrize(
    ("devices", "ranks", "expected"),
    [
        ([], 2, None),
        ([0], 1, "0"),
        ([0, 1], 1, "0,1"),
        ([0, 1], 2, "0:1"),
        ([0, 1], 4, "0:1:0:1"),
        ([0, 1, 2, 3], 2, "0,2:1,3"),
        ([3], 2, "3:3"),
    ],
)
def test_gpu_argument_in_relion_syntax(devices: list[int], ranks: int, expected: str | None) -> None:
    assert gpu_argument(devices, ranks) == expected


def test_gpu_ids_are_renumbered_when_cuda_visible_devices_holds_them() -> None:
    assert visible_gpu_ids([2, 3], {"CUDA_VISIBLE_DEVICES": "2,3"}) == [0, 1]
    assert visible_gpu_ids([2, 3], {}) == [2, 3]


def test_mpi_prefix_and_program_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_MPI_COMMAND", raising=False)
    assert mpi_prefix(1) == []
    assert mpi_prefix(3, as_root=False) == ["mpirun", "-np", "3", "--oversubscribe"]  # the default
    # a host's own launcher, from its hosts file: {ranks} where the count goes, else -np N after the launcher
    assert mpi_prefix(3, ["srun", "--mpi=pmix", "-n", "{ranks}"], as_root=True) == ["srun", "--mpi=pmix", "-n", "3"]
    assert mpi_prefix(2, ["mpiexec", "--bind-to", "core"], as_root=False) == ["mpiexec", "-np", "2", "--bind-to",
                                                                             "core"]
    assert mpi_prefix(4, ["srun", "-n", "{ranks}"], as_root=True) == ["srun", "-n", "4"]  # not Open MPI: no flag
    with pytest.raises(RelionInputError, match="the host's mpirun program is empty"):
        mpi_prefix(3, [])
    monkeypatch.setenv("ORCH_MPI_COMMAND", "srun -n {ranks}")  # the old place: refused, not ignored
    with pytest.raises(RelionInputError, match=r"\$ORCH_MPI_COMMAND is no longer read: .*\[hosts.NAME.programs\]"):
        mpi_prefix(3)
    monkeypatch.delenv("ORCH_MPI_COMMAND")
    command = program_command("relion_refine", ["--i", "a.star"], mpi_ranks=1, extra_args="--maxsig 5")
    assert command == ["relion_refine", "--i", "a.star", "--maxsig", "5"]
    assert program_command("relion_refine", [], mpi_ranks=3, launcher=["srun", "-n", "{ranks}"]) == [
        "srun",
        "-n",
        "3",
        "relion_refine_mpi",
    ]
    with pytest.raises(RelionInputError, match="extra_args"):
        program_command("relion_refine", [], extra_args="--o 'unclosed")


def test_form_checks() -> None:
    with pytest.raises(ParamValidationError, match="mpi"):
        AutoRefine.validate({"particles": "extract.particles", "reference_file": __file__, "mpi": 2})
    with pytest.raises(ParamValidationError, match="exactly one"):
        AutoRefine.validate({"particles": "extract.particles"})
    with pytest.raises(ParamValidationError, match=r"param 'mpi_command': moved to the hosts file; .*"
                                                   r"\[hosts.NAME.programs\] mpirun = "):
        Class2D.validate({"particles": "extract.particles", "mpi_command": "mpirun -np 4"})
    with pytest.raises(ParamValidationError, match="param 'mpi_command': moved to the hosts file"):
        Reconstruct.validate({"particles": "extract.particles", "mpi_command": "/tmp/evil {ranks}"})
    assert "mpi_command" not in Class2D.validate({"particles": "extract.particles", "mpi_command": ""})  # old runs
    with pytest.raises(ParamValidationError, match="param 'mpi_command': no such param"):
        Postprocess.validate({"volume": "refine.volume", "mpi_command": "x"})  # it never had one
    params = Class2D.validate({"particles": "extract.particles", "classes": 5, "mpi": 2, "threads": 2})
    assert isinstance(params["particles"], Pointer)


def test_autorefine_steps_carry_the_reservation(tmp_path: Path) -> None:
    reference = tmp_path / "ref.mrc"
    reference.write_bytes(b"")
    params = AutoRefine.validate(
        {"particles": "extract.particles", "reference_file": str(reference), "mpi": 3, "threads": 2, "gpus": 1}
    )
    params = params.bind_inputs(
        {"particles": OutputRef(7, "particles", "SetOfParticles", tmp_path / "extract", value={"set_id": 12})}
    )
    graph = AutoRefine().build_steps(params)
    assert [step.name for step in graph.topological_order()] == ["export", "refine", "import"]
    refine = graph["refine"]
    assert (refine.resources.mpi_ranks, refine.resources.cpus, refine.resources.gpus) == (3, 2, 1)
    assert refine.args["mpi"] == 3 and refine.args["threads"] == 2
    assert "--auto_refine" in refine.args["args"] and "--split_random_halves" in refine.args["args"]
    assert graph["export"].args == {"set_id": 12, "producer_dir": str(tmp_path / "extract")}


def test_mpi_steps_start_with_the_hosts_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher comes from the step's context (the host's programs), never from the run's args."""
    import relion_plugin.steps_maps as steps_maps

    started: list[list[str]] = []

    class Started(Exception):
        pass

    def fake_run(argv: list[str], **kwargs: object) -> str:
        started.append(list(argv))
        raise Started

    monkeypatch.setattr(steps_maps, "run_program", fake_run)
    monkeypatch.delenv("ORCH_MPI_COMMAND", raising=False)
    ctx = StepContext(project_dir=tmp_path, run_id=1, run_dir=tmp_path, step_name="full", log_path=tmp_path / "log",
                      programs={"mpirun": ["srun", "--mpi=pmix", "-n", "{ranks}"]})
    args = {"star": "in.star", "out": "full/map.mrc", "subset": 0, "ctf": True, "symmetry": "C1", "mpi": 2}
    with pytest.raises(Started):
        steps_maps.reconstruct_step(ctx, **args)
    assert started[-1][:5] == ["srun", "--mpi=pmix", "-n", "2", "relion_reconstruct_mpi"]
    ctx.programs = {}  # a host that configures none: the default
    with pytest.raises(Started):
        steps_maps.reconstruct_step(ctx, **args)
    default = started[-1][: started[-1].index("relion_reconstruct_mpi")]
    assert default[0] == "mpirun" and default[default.index("-np") + 1] == "2" and "--oversubscribe" in default
    with pytest.raises(TypeError, match="mpi_command"):
        steps_maps.reconstruct_step(ctx, **args, mpi_command="/tmp/evil {ranks}")  # no such argument any more


def test_image_paths_resolve_and_become_portable(tmp_path: Path) -> None:
    project = tmp_path / "project"
    producer = project / "runs" / "extract"
    (producer / "Particles").mkdir(parents=True)
    (producer / "Particles/old.mrcs").write_bytes(b"")
    stored = np.array(["runs/extract/a.mrcs", "/data/b.mrcs", "Particles/old.mrcs", "runs/extract/a.mrcs"])
    absolute = resolve_image_paths(stored, project, producer)
    assert absolute.tolist() == [
        str(project / "runs/extract/a.mrcs"),
        "/data/b.mrcs",
        str(producer / "Particles/old.mrcs"),
        str(project / "runs/extract/a.mrcs"),
    ]
    portable = portable_paths(absolute, project)
    assert portable.tolist() == [
        "runs/extract/a.mrcs",
        "/data/b.mrcs",
        "runs/extract/Particles/old.mrcs",
        "runs/extract/a.mrcs",
    ]


def test_optics_from_set_properties() -> None:
    optics = optics_from_properties({"acquisition": {"voltage_kv": 200.0, "pixel_size_a": 1.5}}, "set 1")
    assert optics is not None and optics[0].voltage_kv == 200.0 and optics[0].pixel_size_a == 1.5
    assert optics_from_properties({}, "set 1") is None
    with pytest.raises(RelionInputError, match="set 1"):
        optics_from_properties({"optics": [{"group": 1}]}, "set 1")


def test_merge_takes_relion_fields_by_image_name() -> None:
    ours = {
        "id": np.array([10, 11, 12]),
        "image_index": np.array([1, 2, 3], dtype=np.int32),
        "image_path": np.array(["/s.mrcs"] * 3, dtype=object),
        "psi": np.zeros(3, dtype=np.float32),
        "defocus_u": np.array([1.0, 2.0, 3.0], dtype=np.float32),
    }
    relion = {"image_index": np.array([3, 1]), "image_path": np.array(["/s.mrcs"] * 2), "psi": np.array([30.0, 10.0])}
    merged = merge_relion_particles(ours, relion, ["psi"], where="x.star")
    assert merged["id"].tolist() == [12, 10] and merged["psi"].tolist() == [30.0, 10.0]
    assert merged["defocus_u"].tolist() == [3.0, 1.0] and merged["psi"].dtype == np.float32
    relion["image_index"] = np.array([4, 1])
    with pytest.raises(RelionOutputError, match="000004@/s.mrcs"):
        merge_relion_particles(ours, relion, ["psi"], where="x.star")


def test_broken_maps_are_refused(tmp_path: Path) -> None:
    good = np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32)
    write_volume(tmp_path / "good.mrc", good, 2.0)
    assert check_map(tmp_path / "good.mrc", 8).shape == (8, 8, 8)
    with pytest.raises(RelionOutputError, match="expected 16"):
        check_map(tmp_path / "good.mrc", 16)
    write_volume(tmp_path / "nan.mrc", good, 2.0)
    np.memmap(tmp_path / "nan.mrc", dtype=np.float32, mode="r+", offset=1024, shape=(512,))[100] = np.nan
    with pytest.raises(RelionOutputError, match="NaN"):
        check_map(tmp_path / "nan.mrc")
    write_volume(tmp_path / "zero.mrc", np.zeros((8, 8, 8), dtype=np.float32), 2.0)
    with pytest.raises(RelionOutputError, match="empty"):
        check_map(tmp_path / "zero.mrc")
    data = (tmp_path / "good.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(data[: len(data) - 100])
    with pytest.raises(RelionOutputError, match="cut.mrc"):
        check_map(tmp_path / "cut.mrc")
    with pytest.raises(RelionOutputError, match="did not write"):
        check_map(tmp_path / "absent.mrc")


def test_fsc_resolution_interpolates_the_crossing(tmp_path: Path) -> None:
    freq = np.array([0.001, 0.025, 0.05, 0.075, 0.1])
    write_star(
        tmp_path / "fsc.star",
        {
            "fsc": {
                "rlnSpectralIndex": np.arange(5),
                "rlnResolution": freq,
                "rlnFourierShellCorrelation": np.array([1, 0.9, 0.5, 0.1, 0.0]),
            }
        },
    )
    # 0.143 is crossed between 0.05 (0.5) and 0.075 (0.1): at 0.05 + 0.357/0.4 * 0.025
    assert fsc_resolution(tmp_path / "fsc.star") == pytest.approx(1 / (0.05 + 0.357 / 0.4 * 0.025))


def test_volume_value_paths_are_relative_to_the_run(tmp_path: Path) -> None:
    value = volume_value(
        tmp_path,
        tmp_path / "R/run_class001.mrc",
        2.0,
        64,
        resolution=7.12345,
        half_maps=(tmp_path / "R/h1.mrc", tmp_path / "R/h2.mrc"),
    )
    assert value["files"] == ["R/run_class001.mrc"] and value["half_maps"] == ["R/h1.mrc", "R/h2.mrc"]
    assert value["resolution_a"] == 7.123 and value["box"] == 64
