"""Steps and step graphs: validation of names, functions, args, deps; orders; downstream_of."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.protocol import (
    Resources,
    Step,
    StepContext,
    StepDefinitionError,
    StepFunctionError,
    StepGraph,
    StepGraphError,
    function_path,
    load_function,
)


def work(ctx: StepContext, n: int = 0, label: str = "") -> dict[str, Any]:
    return {"n": n, "label": label}


def strict(ctx: StepContext, x: int) -> None:
    return None


FUNC = f"{__name__}:work"


def chain(*pairs: tuple[str, list[str]]) -> StepGraph:
    graph = StepGraph()
    for name, deps in pairs:
        graph.add(name, work, deps=deps)
    return graph


def test_add_stores_import_path_and_round_trips() -> None:
    graph = StepGraph()
    first = graph.add("first", work, {"n": 1, "label": "a"}, resources=Resources(cpus=4, gpus=1))
    second = graph.add(
        "second", work, {"n": 2}, deps=[first], inputs=["/data/in.mrc"], outputs=["out/x.mrc"], retries=2
    )
    assert first.func == FUNC and load_function(first.func) is work
    assert second.deps == ("first",) and second.retries == 2
    data = json.loads(json.dumps(graph.to_dicts()))
    again = StepGraph.from_dicts(data)
    assert [s for s in again] == [first, second]
    assert again["first"].resources == Resources(cpus=4, gpus=1)


def test_args_are_json_round_tripped() -> None:
    step = StepGraph().add("s", work, {"n": 1, "label": "x"})
    tupled = Step("t", FUNC, {"n": (1, 2)})
    assert step.args == {"n": 1, "label": "x"} and tupled.args == {"n": [1, 2]}


@pytest.mark.parametrize(
    ("value", "detail"),
    [(Path("/x"), "Object of type PosixPath is not JSON serializable"), ({1, 2}, "set"), (float("nan"), "")],
)
def test_non_json_arg_names_step_and_arg(value: object, detail: str) -> None:
    with pytest.raises(StepDefinitionError) as err:
        StepGraph().add("convert", work, {"label": value})
    message = str(err.value)
    assert message.startswith("step 'convert': arg 'label' is not JSON-serialisable (")
    assert detail in message


def test_reserved_and_bad_arg_names() -> None:
    with pytest.raises(StepDefinitionError, match="arg name 'ctx' is reserved"):
        Step("s", FUNC, {"ctx": 1})
    with pytest.raises(StepDefinitionError, match="arg name 'a-b' is not a Python identifier"):
        Step("s", FUNC, {"a-b": 1})


def test_signature_mismatch_is_reported_at_add_time() -> None:
    with pytest.raises(StepDefinitionError, match=r"step 'p': .*:strict cannot be called .* \['y'\]"):
        StepGraph().add("p", strict, {"y": 1})
    StepGraph().add("ok", strict, {"x": 1})


def test_only_module_level_functions_are_steps() -> None:
    def nested(ctx: StepContext) -> None:
        return None

    with pytest.raises(StepFunctionError, match="lambda or nested function"):
        function_path(nested)
    with pytest.raises(StepFunctionError, match="lambda or nested function"):
        StepGraph().add("l", lambda ctx: None)
    with pytest.raises(StepFunctionError, match="not a module-level function"):
        function_path(Path("/").exists)  # a bound method
    with pytest.raises(StepFunctionError, match="cannot import module"):
        load_function("no_such_module_xyz:f")
    with pytest.raises(StepFunctionError, match="no attribute 'missing'"):
        load_function(f"{__name__}:missing")
    with pytest.raises(StepFunctionError, match="bad step function path"):
        load_function("not a path")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "bad step name 'has space'"),
        ({"name": "s", "func": "nocolon"}, "func must be 'package.module:function'"),
        ({"name": "s", "retries": -1}, "retries must be None or >= 0"),
        ({"name": "s", "outputs": ("../escape.txt",)}, "must be relative to the run directory"),
        ({"name": "s", "outputs": ("/abs.txt",)}, "must be relative to the run directory"),
        ({"name": "s", "inputs": "single.txt"}, "must be a list of paths"),
    ],
)
def test_step_validation_messages(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("func", FUNC)
    with pytest.raises(StepDefinitionError, match=message):
        Step(**kwargs)


def test_resources_validation() -> None:
    assert Resources().to_dict() == {
        "cpus": 1,
        "gpus": 0,
        "memory_mb": None,
        "walltime_s": None,
        "mpi_ranks": 1,
    }
    with pytest.raises(StepDefinitionError, match="cpus must be an integer >= 1, got 0; gpus must be"):
        Resources(cpus=0, gpus=-1)
    with pytest.raises(StepDefinitionError, match="memory_mb must be a positive integer"):
        Resources(memory_mb=0)
    with pytest.raises(StepDefinitionError, match="unknown resource"):
        Resources.from_dict({"ram": 3})


def test_duplicate_step_name() -> None:
    graph = StepGraph()
    graph.add("a", work)
    with pytest.raises(StepGraphError, match="duplicate step name 'a'"):
        graph.add("a", work)


def test_missing_dep_is_named_with_suggestion() -> None:
    graph = chain(("gather", ["part_1"]), ("part_0", []))
    with pytest.raises(
        StepGraphError,
        match=r"step 'gather' depends on 'part_1', which is not a step \(did you mean 'part_0'",
    ):
        graph.validate()


def test_cycle_is_named() -> None:
    graph = chain(("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", []))
    with pytest.raises(StepGraphError) as err:
        graph.topological_order()
    assert "steps form a cycle: a -> c -> b -> a" in str(err.value)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(StepGraphError, match="cycle: x -> x"):
        chain(("x", ["x"])).validate()


def test_forward_references_are_allowed() -> None:
    graph = chain(("late", ["early"]), ("early", []))
    assert [s.name for s in graph.topological_order()] == ["early", "late"]


def test_topological_order_keeps_insertion_order_among_ready_steps() -> None:
    graph = chain(("p2", []), ("p0", []), ("gather", ["p0", "p2", "p1"]), ("p1", []), ("report", ["gather"]))
    assert [s.name for s in graph.topological_order()] == ["p2", "p0", "p1", "gather", "report"]


def test_downstream_and_upstream() -> None:
    # a -> b -> d, a -> c -> d, d -> e ; f alone
    graph = chain(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", ["d"]), ("f", []))
    assert graph.downstream_of("a") == ["b", "c", "d", "e"]
    assert graph.downstream_of("c") == ["d", "e"]
    assert graph.downstream_of("e") == [] and graph.downstream_of("f") == []
    assert graph.upstream_of("d") == ["a", "b", "c"]
    assert graph.dependents("a") == ["b", "c"]
    with pytest.raises(StepGraphError, match=r"no step 'g' in this run"):
        graph.downstream_of("g")


def test_large_fanout_is_fast() -> None:
    graph = StepGraph()
    parts = [graph.add(f"p{i}", work, {"n": i}) for i in range(3000)]
    graph.add("gather", work, deps=parts)
    order = graph.topological_order()
    assert order[-1].name == "gather" and len(order) == 3001
    assert graph.downstream_of("p7") == ["gather"]
