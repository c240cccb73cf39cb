"""Workflows exported and imported, projects replayed, runs compared: on the real scheduler.

The demo pipeline runs once at a small size. Its replay into a new project must match it run
for run, file for file (every algorithm of the pipeline is seeded); an exported part of it,
imported into another project and run, must give the same files; and ``compare`` must name a
changed param and a changed raw input file, and measure how far the outputs moved.
"""

from __future__ import annotations

import getpass
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.app.replay import REPORT_FILE, compare, replay_project
from orchestrator.app.workflows import export_workflow, import_workflow
from orchestrator.cli import main
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState
from orchestrator.workflow import submit_workflow
from orchestrator.workflow.document import parse_workflow

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"simulate": {"n_micrographs": 2, "particles_per_micrograph": 30, "frames": 6},
         "classify2d": {"n_classes": 2, "iterations": 2},
         "refine3d": {"max_iterations": 2, "global_iterations": 1}}
SCHEMA = json.loads((ROOT / "orchestrator" / "workflow" / "schemas" / "workflow-v2.schema.json").read_text())


def pipeline() -> dict[str, Any]:
    document = json.loads((ROOT / "examples" / "pipeline.json").read_text())
    for run in document["runs"]:
        run["params"] = {**run["params"], **SMALL.get(run["name"], {})}
    return document


def finished(project: Project) -> None:
    with project.open_store() as store:
        for run in store.runs.list():
            assert run.run_state is RunState.FINISHED, f"{run.name}: {run.state} {run.error}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project.create(tmp_path_factory.mktemp("replay") / "demo")
    with project.open_store() as store:
        submit_workflow(parse_workflow(pipeline(), Path("pipeline.json")), discover(), store, project)
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    finished(project)
    return project


def test_replay_of_the_demo_project_matches_run_for_run(demo: Project, tmp_path: Path) -> None:
    report = replay_project(demo, tmp_path / "replayed", timeout_s=600)
    names = [run.name for run in report.runs]
    assert names == [run["name"] for run in pipeline()["runs"]]
    for run in report.runs:
        assert run.replay_state == "finished", run
        assert run.identical, json.dumps(run.comparison, indent=1)
        assert run.comparison is not None and run.comparison["files"]["identical"]
    assert report.identical
    kept = json.loads((tmp_path / "replayed" / REPORT_FILE).read_text())
    assert kept["identical"] is True and len(kept["runs"]) == len(names)
    # the replay read the very files the original wrote (no absolute path of the original leaks in)
    refine = compare(demo, "refine3d", "refine3d", tmp_path / "replayed")
    assert refine.identical and "maps/map.mrc" in refine.files.identical


def test_export_import_run_gives_the_same_outputs(demo: Project, tmp_path: Path) -> None:
    document = export_workflow(demo, ["simulate", "motioncorr", "ctffind"])
    jsonschema.validate(document, SCHEMA)
    text = json.dumps(document)
    for private in (str(demo.path), str(Path.home()), f'"{getpass.getuser()}"'):
        assert private not in text
    assert document["inputs"] == {}
    path = tmp_path / "wf.json"
    path.write_text(text)
    other = Project.create(tmp_path / "other")
    outcome = import_workflow(other, path, start_scheduler=False)
    assert [run.name for run in outcome.runs] == ["simulate", "motioncorr", "ctffind"]
    assert daemon.serve(other, idle_exit_s=0.5, workers=2) == 0
    finished(other)
    for name in ("simulate", "motioncorr", "ctffind"):
        result = compare(demo, name, name, other)
        assert result.identical, result.to_dict()
        assert result.files.identical


def test_export_leaves_pointers_outside_and_asked_params_open(demo: Project, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "part.json"
    assert main(["workflow", "export", str(demo.path), "refine3d", "fsc", "--open", "refine3d.seed",
                 "-o", str(out)]) == 0
    document = json.loads(out.read_text())
    jsonschema.validate(document, SCHEMA)
    assert set(document["inputs"]) == {"refine3d.particles", "refine3d.initial_model", "fsc.reference",
                                       "refine3d.seed"}
    assert document["inputs"]["refine3d.particles"]["type"] == "pointer"
    assert document["inputs"]["refine3d.particles"]["default"] == "extract.particles"
    assert document["inputs"]["refine3d.seed"] == {"label": "Seed (refine3d)", "type": "int",
                                                   "help": "Seed of the random split into half sets.", "default": 0}
    fsc = document["runs"][1]
    assert fsc["params"]["volume"] == "refine3d.volume"  # a link inside the export stays a link
    assert main(["workflow", "export", str(demo.path), "-o", str(out)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err


@pytest.fixture(scope="module")
def variants(demo: Project) -> Project:
    """The demo's micrographs imported from raw files twice, the second time after one file
    changed; and ctffind again with another resolution limit."""
    raw = demo.path / "raw"
    raw.mkdir()
    movies = sorted((demo.run_dir("simulate") / "movies").glob("*.mrcs"))
    for movie in movies:
        shutil.copy(movie, raw / movie.name)
    registry = discover()

    def submit(protocol: str, name: str, **params: Any) -> None:
        with demo.open_store() as store:
            planner.create_run(store, demo, registry, protocol, params, name=name)

    submit("emtools.import_movies", "imp", files="raw/*.mrcs", pixel_size=3.0, dose_per_frame=4.0)
    submit("emtools.ctffind", "ctffind-coarse", micrographs="motioncorr.micrographs", max_resolution=9.0,
           batch_size=3)
    assert daemon.serve(demo, idle_exit_s=0.5, workers=2) == 0
    shutil.copy(movies[0], raw / movies[1].name)  # the second raw movie is now a copy of the first
    submit("emtools.import_movies", "imp-again", files="raw/*.mrcs", pixel_size=3.0, dose_per_frame=4.0)
    assert daemon.serve(demo, idle_exit_s=0.5, workers=2) == 0
    finished(demo)
    return demo


def test_compare_names_a_changed_param_and_measures_the_outputs(variants: Project) -> None:
    result = compare(variants, "ctffind", "ctffind-coarse")
    assert not result.identical
    changed = {(d.section, d.key): (d.a, d.b) for d in result.differences}
    assert changed[("params", "max_resolution")] == (7.0, 9.0)
    assert [key for section, key in changed if section == "params"] == ["max_resolution"]
    metrics = {(m.output, m.name): m for m in result.metrics}
    assert metrics[("micrographs", "items (Micrograph)")].difference == 0
    defocus = metrics[("micrographs", "defocus RMS difference (Å)")]
    assert defocus.difference is not None and defocus.difference > 0


def test_compare_names_a_changed_input_file(variants: Project, capsys: pytest.CaptureFixture[str]) -> None:
    result = compare(variants, "imp", "imp-again")
    changed = [d for d in result.differences if d.section == "inputs"]
    assert [d.key for d in changed] == ["raw file raw/movie_0002.mrcs"]
    assert changed[0].a != changed[0].b
    assert not [d for d in result.differences if d.section == "params"]
    assert main(["compare", str(variants.path), "imp", "imp-again"]) == 1
    out = capsys.readouterr().out
    assert "raw file raw/movie_0002.mrcs" in out and "differ" in out
    assert main(["compare", str(variants.path), "ctffind", "ctffind", "--against", str(variants.path)]) == 0


def test_a_replay_on_another_host_gives_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs made on the local host, replayed on the SLURM cluster (pilots): seeded, so identical."""
    from infra.services import require_service

    for key, value in require_service("slurm").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCH_HOSTS", str(ROOT / "hosts" / "ci-test.toml"))
    project = Project.create(tmp_path / "local")
    with project.open_store() as store:
        registry = discover()
        planner.create_run(store, project, registry, "testkit.produce", {"count": 3, "size": 2048, "seed": 5},
                           name="produce")
        planner.create_run(store, project, registry, "testkit.chain", {"source": "produce.files"}, name="derive")
    assert daemon.serve(project, idle_exit_s=0.5, workers=1) == 0
    finished(project)
    report = replay_project(project, tmp_path / "on-slurm", host="ci-slurm", timeout_s=300)
    assert [run.replay_state for run in report.runs] == ["finished", "finished"], report.to_dict()
    with Project.load(tmp_path / "on-slurm").open_store() as store:
        assert {step.host for step in store.steps.list(store.runs.get("produce").id)} == {"ci-slurm"}
    assert report.identical, json.dumps(report.to_dict(), indent=1)
