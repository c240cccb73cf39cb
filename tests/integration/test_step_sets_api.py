"""A plugin step that uses only StepContext to read a set and register one, run by the real
scheduler on the local host (a LocalCluster of worker processes and a real store)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLUGIN_PACKAGES = [REPO / "plugins/emtools/emtools", REPO / "plugins/relion/relion_plugin",
                   REPO / "tests/plugin_testkit/orch_testkit"]
#: what a plugin may import of the orchestrator (README, "Writing a protocol in a plugin")
PUBLIC = ("orchestrator.protocol", "orchestrator.em", "orchestrator.objects", "orchestrator.plugins",
          "orchestrator.errors")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def submit(project: Project, protocol: str, name: str, **params: object) -> int:
    with project.open_store() as store:
        run = planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()},
                                 name=name)
        return run.id


def test_a_step_reads_a_set_and_registers_sets_through_its_context_only(project: Project) -> None:
    source_run = submit(project, "testkit.particles", "particles", count=1000, classes=4, seed=7)
    select_run = submit(project, "testkit.select", "select", particles="particles.particles", class_id=3)
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    with project.open_store() as store:
        for run_id in (source_run, select_run):
            record = store.runs.get(run_id)
            assert record.run_state is RunState.FINISHED, record.error
        source_id = store.outputs.get(source_run, "particles").set_id
        selected_out = store.outputs.get(select_run, "selected")
        classes_out = store.outputs.get(select_run, "classes")
        # the placeholders became the ids of sets that exist, belong to the run and are complete
        assert isinstance(selected_out.value["set_id"], int) and selected_out.set_id == selected_out.value["set_id"]
        assert {row["name"]: row["stream_state"] for row in store.list_sets(select_run)} == {
            "classes": "closed", "selected": "closed"}
        source = store.get_set(source_id).to_numpy(["id", "class_id", "micrograph_name", "defocus_u"])
        selected = store.get_set(selected_out.set_id)
        assert selected.size == selected_out.value["size"] == 250
        got = selected.to_numpy(["id", "class_id", "micrograph_name", "defocus_u"])
        keep = source["class_id"] == 3
        for name, values in got.items():
            np.testing.assert_array_equal(values, source[name][keep])  # the same particles, ids kept
        assert selected.properties["classes_set_id"] == classes_out.set_id  # a placeholder in properties too
        assert selected.properties["selected_from"] == source_id and selected.acquisition.pixel_size_a == 1.2
        classes = store.get_set(classes_out.set_id).to_numpy(["id", "size"])
        assert (classes["id"].tolist(), classes["size"].tolist()) == ([3], [250])
        step = store.steps.list(select_run)[0]
        assert step.result["outputs"]["selected"]["value"]["set_id"] == selected_out.set_id
        assert step.pid and step.worker  # it ran in a worker process


def test_a_step_whose_input_set_is_gone_fails_naming_it_and_leaves_no_set(project: Project) -> None:
    source_run = submit(project, "testkit.particles", "particles", count=30, classes=3)
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    with project.open_store() as store, store.engine.begin() as conn:  # the set is gone (deleted by hand)
        set_id = store.outputs.get(source_run, "particles").value["set_id"]
        conn.execute(text("DELETE FROM sets WHERE id = :id"), {"id": set_id})
    broken = submit(project, "testkit.select", "broken", particles="particles.particles", class_id=2)
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    with project.open_store() as store:
        record = store.runs.get(broken)
        assert record.run_state is RunState.FAILED
        assert f"set {set_id} does not exist in the store" in (store.steps.list(broken)[0].error or "")
        assert store.list_sets(broken) == []


def test_plugins_import_only_the_public_modules() -> None:
    """No plugin module opens the store or imports the orchestrator's internals."""
    offending = []
    for package in PLUGIN_PACKAGES:
        for path in sorted(package.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                for name in names:
                    internal = name.startswith("orchestrator") and not name.startswith(PUBLIC)
                    if internal or name.split(".")[0] in ("sqlalchemy", "psycopg"):
                        offending.append(f"{path.relative_to(REPO)}: {name}")
    assert offending == []
