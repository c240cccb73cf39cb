"""`orch workflow import` of Scipion's own files: converted, reported, and created as runs.

The files are real Scipion 3.11 exports and a template (see tests/data/scipion/README.md);
the conversion itself is tested in test_scipion_workflow.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.app.workflows import import_workflow, read_workflow
from orchestrator.cli import main
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.workflow import WorkflowError

SCIPION = Path(__file__).resolve().parents[1] / "data" / "scipion"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project.create(tmp_path / "proj")
    (project.path / "raw").mkdir()
    (project.path / "raw" / "movie_0001.mrcs").write_bytes(b"")
    return project


def test_an_unmappable_protocol_is_left_out_and_said(project: Project) -> None:
    _parsed, plan = read_workflow(SCIPION / "unmappable_cryolo.json")
    assert plan.source_format == "scipion"
    assert [run["name"] for run in plan.runs] == ["import_movies", "movie_alignment", "ctf_estimation",
                                                  "particles_extraction", "preprocess_particles", "2D_classification"]
    (left,) = plan.omitted
    assert left.kind == "SphireProtCRYOLOPicking" and "crYOLO" in left.reason
    assert plan.inputs["particles_extraction.coordinates"]["type"] == "pointer"  # what it fed is asked for
    with pytest.raises(WorkflowError, match="particles_extraction.coordinates"):
        import_workflow(project, SCIPION / "unmappable_cryolo.json", values={"import_movies.files": "raw/*.mrcs"},
                        start_scheduler=False)
    with project.open_store() as store:
        assert store.runs.list() == []  # nothing half-made
        registry = discover()  # a picking run of the user's own, for the input crYOLO fed
        planner.create_run(store, project, registry, "emtools.import_micrographs",
                           {"files": "raw/*.mrcs", "pixel_size": 1.0}, name="mics")
        planner.create_run(store, project, registry, "emtools.pick", {"micrographs": "mics.micrographs"},
                           name="my_picks")
    outcome = import_workflow(project, SCIPION / "unmappable_cryolo.json", start_scheduler=False,
                              values={"import_movies.files": "raw/*.mrcs",
                                      "particles_extraction.coordinates": "my_picks.coordinates"})
    assert [run.name for run in outcome.runs] == [run["name"] for run in plan.runs]  # the rest is imported
    assert [item.kind for item in outcome.omitted] == ["SphireProtCRYOLOPicking"]  # and the gap is said
    with project.open_store() as store:
        links = {link.param: link for link in store.runs.inputs(store.runs.get("particles_extraction").id)}
        coordinates = links["coordinates"]
        assert (store.runs.get(coordinates.producer_run_id).name, coordinates.output_name) == ("my_picks",
                                                                                              "coordinates")


def test_a_template_is_imported_with_its_fields_as_inputs(project: Project,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["workflow", "import", str(SCIPION / "spa_template.json.template"), str(project.path),
                 "--no-daemon", "--no-input", "--set", "import_movies.files=raw/*.mrcs", "--set", "pixel_size=0.83",
                 "--set", "Number_of_2D_classes=20", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    outcome = json.loads(captured.out)
    assert outcome["source_format"] == "scipion"
    assert [run["state"] for run in outcome["runs"]] == ["queued"] * 6
    with project.open_store() as store:
        imported = store.runs.get("import_movies").params
        assert imported["pixel_size"] == 0.83 and imported["files"] == "raw/*.mrcs"
        assert store.runs.get("2D_classification").params["classes"] == 20
        (link,) = store.runs.inputs(store.runs.get("movie_alignment").id)
        assert (store.runs.get(link.producer_run_id).name, link.output_name) == ("import_movies", "movies")


def test_the_same_file_imported_twice_names_the_run_in_the_way(project: Project, tmp_path: Path) -> None:
    copy = tmp_path / "spa.json.template"
    shutil.copy(SCIPION / "spa_template.json.template", copy)
    values = {"import_movies.files": "raw/*.mrcs"}
    import_workflow(project, copy, values=values, start_scheduler=False)
    with pytest.raises(WorkflowError, match="run 1 \\('import_movies'\\): a run with this name already exists"):
        import_workflow(project, copy, values=values, start_scheduler=False)
