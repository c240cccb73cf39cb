"""The application layer's outputs and sets: list, describe, query with conditions, page; SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lifecycle_helpers import put_run

from orchestrator.app import outputs, sets
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.project import Project
from orchestrator.store import Between, RunOutput, RunState


@pytest.fixture
def project(tmp_path: Path, store_url: str) -> Project:
    return picked_project(tmp_path / "proj", store_url)


def picked_project(folder: Path, store_url: str) -> Project:
    """A finished run ``picked`` with a set of 50 particles (micrographs 1-5, classes 1-2) as its output."""
    project = Project.create(folder, store_url=store_url)
    with project.open_store() as store:
        run = store.runs.create("testkit.particles", {}, name="picked")
        item_set = store.create_set("particles", "Particle", run.id)
        n = np.arange(50)
        item_set.append_columns({"micrograph_id": n // 10 + 1, "class_id": n % 2 + 1,
                                 "defocus_u": 10000.0 + 100.0 * n})
        item_set.close()
        put_run(store, run.id, RunState.RUNNING)
        store.lifecycle.finish_run(run.id, [RunOutput("particles", "SetOfParticles", set_id=item_set.id,
                                                      value={"size": 50}),
                                            RunOutput("summary", "Files", path="summary.txt")])
    return project


def test_outputs_list_and_get(project: Project) -> None:
    listed = outputs.list_outputs(project.path, "picked")
    assert [(o.name, o.type_name, o.path) for o in listed] == [("particles", "SetOfParticles", None),
                                                               ("summary", "Files", "summary.txt")]
    particles = outputs.get_output(project.path, "picked", "particles")
    assert particles.set_id is not None and particles.value == {"size": 50}
    assert json.loads(json.dumps(particles.to_dict()))["created_at"].endswith("+00:00")
    with pytest.raises(NotFoundError, match="has no output 'maps'; it has: particles, summary"):
        outputs.get_output(project.path, "picked", "maps")
    with pytest.raises(NotFoundError, match="no run 'pick'"):
        outputs.list_outputs(project.path, "pick")


def test_sets_list_describe_and_count(project: Project) -> None:
    (listed,) = sets.list_sets(project.path)
    assert (listed.name, listed.item_type, listed.size, listed.stream_state) == ("particles", "Particle", 50, "closed")
    assert sets.list_sets(project.path, "picked") == [listed]
    detail = sets.describe_set(project.path, listed.id)
    assert "defocus_u" in detail.columns and detail.size == 50
    assert sets.count_items(project.path, listed.id) == 50
    assert sets.count_items(project.path, listed.id, ["micrograph_id=2", Between("defocus_u", None, 11500)]) == 6
    with pytest.raises(NotFoundError, match=f"set {listed.id + 1} does not exist"):
        sets.describe_set(project.path, listed.id + 1)


def test_query_pages_through_the_matching_items(project: Project) -> None:
    set_id = sets.list_sets(project.path)[0].id
    first = sets.query_set(project.path, set_id, ["class_id=2"], ["id", "micrograph_id", "class_id"], limit=10)
    assert first.columns == ["id", "micrograph_id", "class_id"] and len(first.items) == 10
    assert all(item["class_id"] == 2 for item in first.items) and first.next_offset == 10
    assert isinstance(first.items[0]["id"], int)  # plain Python values, JSON-ready
    rest = sets.query_set(project.path, set_id, ["class_id=2"], ["id"], offset=first.next_offset, limit=100)
    assert len(rest.items) == 15 and rest.next_offset is None
    seen = [item["id"] for item in first.items] + [item["id"] for item in rest.items]
    assert seen == sorted(set(seen)) and len(seen) == 25
    whole = sets.query_set(project.path, set_id, limit=3)
    assert whole.columns == sets.describe_set(project.path, set_id).columns and len(whole.items) == 3
    assert sets.query_set(project.path, set_id, ["micrograph_id=9"]).items == []


def test_query_errors_name_the_column_or_condition(project: Project) -> None:
    set_id = sets.list_sets(project.path)[0].id
    with pytest.raises(UsageError, match="has no column\\(s\\) colour"):
        sets.query_set(project.path, set_id, ["colour=1"])
    with pytest.raises(UsageError, match="where-clause 'class_id~2'"):
        sets.query_set(project.path, set_id, ["class_id~2"])
    with pytest.raises(UsageError, match="offset -1, limit 5: both must be 0 or more"):
        sets.query_set(project.path, set_id, offset=-1, limit=5)


def test_a_set_of_another_project_in_the_same_database_is_not_found(tmp_path: Path, pg_url: str) -> None:
    project = picked_project(tmp_path / "proj", pg_url)
    other = Project.create(tmp_path / "other", store_url=pg_url)
    set_id = sets.list_sets(project.path)[0].id
    assert sets.list_sets(other.path) == []
    with pytest.raises(NotFoundError, match=f"set {set_id} does not exist in this project"):
        sets.query_set(other.path, set_id)


def test_run_inputs_name_the_runs_and_outputs_read(project: Project) -> None:
    from orchestrator.plugins import discover
    from orchestrator.scheduler import planner

    with project.open_store() as store:
        registry = discover()
        produce = planner.create_run(store, project, registry, "testkit.produce", {"count": 1}, name="produce")
        planner.create_run(store, project, registry, "testkit.chain", {"source": "produce.files"}, name="derive")
    (link,) = outputs.run_inputs(project.path, "derive")
    assert link.to_dict() == {"param": "source", "run_id": produce.id, "run": "produce", "output": "files",
                              "state": "queued"}
    assert outputs.run_inputs(project.path, "produce") == []
