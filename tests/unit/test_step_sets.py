"""The step-facing set API: PendingSet checks, placeholders, StepContext.open_set/register_set/program,
StoreSetSource, and execute_step's handling of registered sets (on SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.errors import NotFoundError
from orchestrator.protocol import (
    PendingSet,
    SetDataError,
    SetReader,
    StepContext,
    StepContextError,
    StepResultError,
    execute_step,
    substitute_set_ids,
)
from orchestrator.protocol.sets import referenced_set_ids, set_placeholders
from orchestrator.store import ProjectStore
from orchestrator.store.set_files import ExportedSet, export_set
from orchestrator.worker.set_sources import ExportedSetSource, StoreSetSource


def make_ctx(tmp_path: Path, **fields: Any) -> StepContext:
    return StepContext(project_dir=tmp_path, run_id=fields.pop("run_id", 1), run_dir=tmp_path / "run",
                       step_name="step", log_path=tmp_path / "step.log", **fields)


# --------------------------------------------------------------------------- PendingSet


def test_pending_set_types_its_columns_and_gives_its_placeholder() -> None:
    pending = PendingSet("particles", "Particle",
                         {"micrograph_id": [1, 1, 2], "image_path": ["a.mrcs", "a.mrcs", "b.mrcs"],
                          "defocus_u": np.array([1.5e4, 2e4, 2.5e4])}, {"box_size": 64})
    assert pending.size == 3 and pending.placeholder() == {"$set": "particles"}
    assert pending.columns["micrograph_id"].dtype == np.int32
    assert pending.columns["defocus_u"].dtype == np.float32
    assert pending.columns["image_path"].dtype == object and pending.columns["image_path"][2] == "b.mrcs"
    assert PendingSet("empty", "Movie", {}).size == 0


@pytest.mark.parametrize(("args", "message"), [
    (("p", "Particule", {}), "set 'p': unknown item type 'Particule'; known: ClassAverage, Coordinate"),
    (("p", "Particle", {"rot": [1.0], "defocus": [2.0]}), "set 'p' (Particle): unknown column(s) defocus;"),
    (("p", "Particle", {"rot": [1.0, 2.0], "tilt": [1.0]}),
     "set 'p' (Particle): column 'tilt' has 1 values but column 'rot' has 2"),
    (("p", "Particle", {"rot": ["north"]}), "set 'p' (Particle): column 'rot' (float32)"),
    (("p", "Particle", {"class_id": [1.5]}), "column 'class_id' (int32) holds values with a fraction"),
    (("p", "Particle", {"class_id": [np.nan]}), "column 'class_id' (int32) holds NaN or infinite values"),
    (("p", "Particle", {"micrograph_id": np.array([2**40])}), "column 'micrograph_id' (int32) holds values outside"),
    (("p", "Particle", {"image_path": [1, 2]}), "column 'image_path' holds text: give strings"),
    (("p", "Particle", {"rot": np.zeros((2, 2))}), "column 'rot' must be one-dimensional"),
    (("p", "Particle", {"id": [0, 5]}), "column 'id' mixes ids with 0 or negative values"),
    (("p", "Particle", {"id": [3, 3]}), "column 'id' holds duplicate ids"),
    (("p", "Movie", {}, {"when": object()}), "set 'p' (Movie): properties are not JSON"),
    (("../p", "Movie", {}), "set name '../p': use 1-128 letters"),
])
def test_pending_set_refuses_bad_data_naming_the_set_and_column(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(SetDataError) as caught:
        PendingSet(*args)
    assert message in str(caught.value)


# --------------------------------------------------------------------------- placeholders


def test_substitute_set_ids_replaces_every_placeholder_in_a_copy() -> None:
    result = {"outputs": {"particles": {"path": None, "value": {"set_id": {"$set": "particles"}, "size": 3,
                                                                "classes": [{"$set": "classes"}]}}},
              "note": "$set"}
    replaced = substitute_set_ids(result, {"particles": 12, "classes": 13})
    assert replaced["outputs"]["particles"]["value"] == {"set_id": 12, "size": 3, "classes": [13]}
    assert replaced["note"] == "$set"
    assert result["outputs"]["particles"]["value"]["set_id"] == {"$set": "particles"}  # the input is unchanged
    assert set_placeholders(result) == ["particles", "classes"]
    with pytest.raises(SetDataError, match=r"names no set the step registered \(registered: particles\)"):
        substitute_set_ids({"x": {"$set": "classes"}}, {"particles": 1})
    with pytest.raises(SetDataError, match="malformed set placeholder"):
        substitute_set_ids({"x": {"$set": "a", "extra": 1}}, {"a": 1})


def test_referenced_set_ids_follow_the_set_output_convention() -> None:
    value = {"set_id": 12, "size": 900, "micrographs_set_id": 9, "box_size": 64,
             "history": [{"classes_set_id": 15}, {"set_id": True}], "files": ["a"], "other": {"set_id": 12}}
    assert referenced_set_ids(value) == [9, 12, 15]
    assert referenced_set_ids({"set_id": {"$set": "x"}, "n_set_id": 0}) == []  # placeholders and 0 are not ids


# --------------------------------------------------------------------------- StepContext


def test_register_set_appends_pending_sets_and_refuses_a_second_of_the_same_name(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    classes = ctx.register_set("classes", "ClassAverage", {"id": [1, 2], "size": [5, 3]})
    particles = ctx.register_set("particles", "Particle", {"class_id": [1, 1, 2]}, {"classes_set_id": classes})
    assert classes == {"$set": "classes"} and particles == {"$set": "particles"}
    assert [p.name for p in ctx.pending_sets] == ["classes", "particles"]
    with pytest.raises(SetDataError, match="set 'classes' is registered twice"):
        ctx.register_set("classes", "ClassAverage", {})
    with pytest.raises(SetDataError, match="name set\\(s\\) 'later' that the step has not registered before it"):
        ctx.register_set("more", "Particle", {}, {"from": {"$set": "later"}})


def test_open_set_needs_a_source_and_a_real_id(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    with pytest.raises(StepContextError, match="cannot read set 4: the step has no set source"):
        ctx.open_set(4)
    with pytest.raises(StepContextError, match="is a set placeholder, not a set id; the set 'particles'"):
        ctx.open_set({"$set": "particles"})  # type: ignore[arg-type]
    with pytest.raises(StepContextError, match="a set id is a positive integer, got 0"):
        ctx.open_set(0)


def test_program_is_the_hosts_command_else_the_default(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    assert ctx.program("mpirun", ["mpirun", "--oversubscribe"]) == ["mpirun", "--oversubscribe"]
    ctx.programs = {"mpirun": ["srun", "--mpi=pmix"]}
    command = ctx.program("mpirun", ["mpirun"])
    assert command == ["srun", "--mpi=pmix"]
    command.append("-n")  # the caller's copy: the context keeps the host's command
    assert ctx.programs["mpirun"] == ["srun", "--mpi=pmix"]
    ctx.programs = {"mpirun": ["", "x"]}
    with pytest.raises(StepContextError, match="the host's programs.mpirun must be a non-empty list of strings"):
        ctx.program("mpirun", ["mpirun"])


# --------------------------------------------------------------------------- StoreSetSource


@pytest.fixture
def store(store_url: str) -> ProjectStore:
    created = ProjectStore.create(store_url, "proj")
    yield created
    created.close()


def particles_set(store: ProjectStore, run_id: int, n: int = 50) -> int:
    item_set = store.create_set("particles", "Particle", run_id=run_id,
                                properties={"acquisition": {"voltage_kv": 200.0, "pixel_size_a": 1.5}})
    item_set.append_columns({"micrograph_id": np.arange(n) // 10 + 1, "class_id": np.arange(n) % 3 + 1,
                             "defocus_u": np.linspace(10000, 20000, n),
                             "image_path": np.array([f"stack_{i // 10}.mrcs" for i in range(n)], dtype=object)})
    item_set.close()
    return item_set.id


def test_store_set_source_reads_sets_of_its_project_only(store: ProjectStore) -> None:
    run = store.runs.create("testkit.noop", name="a")
    set_id = particles_set(store, run.id)
    other = ProjectStore.create(store.url, "other") if not store.url.startswith("sqlite") else None
    with StoreSetSource(store.url, run.id) as source:
        reader: SetReader = source.open(set_id)  # the store's ItemSet is a SetReader
        assert (reader.name, reader.item_type, reader.size) == ("particles", "Particle", 50)
        assert reader.acquisition is not None and reader.acquisition.pixel_size_a == 1.5
        assert reader.count(class_id=2) == 17 and list(reader.unique("micrograph_id")) == [1, 2, 3, 4, 5]
        with pytest.raises(NotFoundError, match="set 999 does not exist in the store"):
            source.open(999)
        if other is not None:  # PostgreSQL: one database, two projects
            foreign_run = other.runs.create("testkit.noop", name="b")
            foreign = particles_set(other, foreign_run.id)
            with pytest.raises(NotFoundError, match=f"set {foreign} belongs to another project"):
                source.open(foreign)
            other.close()
    with pytest.raises(NotFoundError, match="run 4242 is not in the store"):
        StoreSetSource(store.url, 4242).open(set_id)


def test_exported_set_source_reads_exported_files_and_names_a_missing_one(store: ProjectStore,
                                                                          tmp_path: Path) -> None:
    run = store.runs.create("testkit.noop", name="a")
    set_id = particles_set(store, run.id)
    export_set(store.get_set(set_id), tmp_path / "inputs" / f"set_{set_id}.npz")
    source = ExportedSetSource(tmp_path / "inputs")
    reader = source.open(set_id)
    assert isinstance(reader, ExportedSet) and reader.size == 50
    with pytest.raises(Exception, match=f"set 77 was not exported for this step: no set_77.npz in {tmp_path}/inputs"):
        source.open(77)


# --------------------------------------------------------------------------- execute_step


@pytest.fixture
def step_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A module of step functions that use only the StepContext (as a plugin's would)."""
    module = types.ModuleType("fake_plugin_steps")

    def select_step(ctx: StepContext, source: int, class_id: int) -> dict[str, Any]:
        given = ctx.open_set(source)
        columns = given.to_numpy(["id", "micrograph_id", "class_id"], class_id=class_id)
        classes = ctx.register_set("classes", "ClassAverage", {"id": [class_id], "size": [len(columns["id"])]})
        kept = ctx.register_set("kept", "Particle", columns, {**given.properties, "classes": classes})
        return {"outputs": {"kept": {"path": None, "value": {"set_id": kept, "size": len(columns["id"])}}}}

    def stray_step(ctx: StepContext) -> dict[str, Any]:
        return {"set_id": {"$set": "never_registered"}}

    def failing_step(ctx: StepContext) -> None:
        ctx.register_set("half", "Particle", {"class_id": [1]})
        raise RuntimeError("the step fails after registering")

    for func in (select_step, stray_step, failing_step):
        func.__module__ = module.__name__
        setattr(module, func.__name__, func)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_execute_step_reads_through_the_set_source_and_leaves_registered_sets_pending(
        store: ProjectStore, tmp_path: Path, step_module: types.ModuleType) -> None:
    """The step never touches the store: what it registered waits in ctx.pending_sets, with the
    placeholders in its result, for the worker to record with the step's end."""
    run = store.runs.create("testkit.noop", name="a")
    source = particles_set(store, run.id)
    with StoreSetSource(store.url, run.id) as sets:
        ctx = make_ctx(tmp_path, run_id=run.id, sets=sets)
        result = execute_step("fake_plugin_steps:select_step", ctx, {"source": source, "class_id": 2})
    assert result == {"outputs": {"kept": {"path": None, "value": {"set_id": {"$set": "kept"}, "size": 17}}}}
    assert [(p.name, p.item_type, p.size) for p in ctx.pending_sets] == [("classes", "ClassAverage", 1),
                                                                          ("kept", "Particle", 17)]
    kept = ctx.pending_sets[1]
    np.testing.assert_array_equal(kept.columns["id"], np.arange(2, 51, 3))  # ids kept
    assert kept.properties["classes"] == {"$set": "classes"}
    assert kept.properties["acquisition"]["pixel_size_a"] == 1.5
    assert [row["id"] for row in store.list_sets()] == [source]  # nothing was created by the step


def test_execute_step_refuses_a_placeholder_of_a_set_the_step_did_not_register(
        tmp_path: Path, step_module: types.ModuleType) -> None:
    ctx = make_ctx(tmp_path)
    with pytest.raises(StepResultError, match="its result names set\\(s\\) 'never_registered' that it did not"):
        execute_step("fake_plugin_steps:stray_step", ctx, {})
    with pytest.raises(RuntimeError, match="fails after registering"):
        execute_step("fake_plugin_steps:failing_step", ctx, {})
