"""Fuzzing workflow files: JSON shaped like a workflow with hostile values, and anything else.

Loading a file (and checking it against the installed protocols and a real project) either
gives runs or raises :class:`WorkflowError` naming the file (and the run, for a run at fault):
never a raw ``ValueError`` from a 5,000-digit number, a ``RecursionError`` from deep nesting
or a ``UnicodeDecodeError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import FUZZ, our_error_or_value
from hypothesis import event, given
from hypothesis import strategies as st

from orchestrator.errors import OrchestratorError
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.project import Project
from orchestrator.workflow import Workflow, WorkflowError, check_workflow, load_workflow

HUGE = "9" * 5000
names = st.one_of(st.sampled_from(["produce", "derive", "fan", "12", "", " ", "../x", "/tmp/x", ".hidden", "a" * 300,
                                   "é", "a\x00b", "produce"]), st.text(max_size=10))
protocols = st.one_of(st.sampled_from(["testkit.produce", "testkit.chain", "testkit.fanout", "testkit.noop", "nope",
                                       "", "testkit."]), st.text(max_size=10))
param_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["3", "-1", "1e999", "true", "produce.files", "derive.files", "12.files", ".files", "x.",
                     "nope.files", "a" * 5000 + ".files"]),
    st.text(max_size=10), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                               max_size=2),
)
params = st.dictionaries(st.sampled_from(["count", "source", "delay", "fail", "x", "", "count "]), param_values,
                         max_size=3)
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=5)


@st.composite
def runs(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not an object at all
    run: dict[str, Any] = {}
    for key, strategy in (("name", names), ("protocol", protocols), ("params", params),
                          ("host", st.one_of(st.sampled_from(["local", ""]), json_values))):
        if draw(st.integers(0, 5)):
            run[key] = draw(strategy) if key != "params" or draw(st.integers(0, 7)) else draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        run[draw(st.text(max_size=6))] = draw(json_values)
    return run


@st.composite
def shaped_runs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Runs a file could really hold (distinct plain names, real protocols) with hostile params."""
    chosen = draw(st.lists(st.sampled_from(["produce", "derive", "fan", "later"]), min_size=1, max_size=3, unique=True))
    return [{"name": name, "protocol": draw(protocols.filter(lambda p: p.startswith("testkit"))),
             "params": draw(params)} for name in chosen]


documents = st.one_of(
    st.builds(lambda rs: {"runs": rs}, st.lists(runs(), max_size=4)),
    json_values,
    st.builds(lambda rs, extra: {"runs": rs, **extra}, st.lists(runs(), max_size=2),
              st.dictionaries(st.text(max_size=4), json_values, max_size=2)),
)


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    return discover()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project.create(tmp_path_factory.mktemp("wf") / "proj")


def _load(path: Path) -> Workflow | WorkflowError:
    outcome = our_error_or_value(lambda: load_workflow(path), WorkflowError, [str(path)])
    if isinstance(outcome, WorkflowError):
        event("refused when loaded")
    return outcome


@FUZZ
@given(document=documents)
def test_workflow_documents_load_and_check_or_name_the_file_and_run(
    tmp_path: Path, registry: PluginRegistry, project: Project, document: Any
) -> None:
    _load_and_check(tmp_path, registry, project, document)


@FUZZ
@given(shaped=shaped_runs())
def test_real_runs_with_hostile_params_are_checked_against_the_protocols(
    tmp_path: Path, registry: PluginRegistry, project: Project, shaped: list[dict[str, Any]]
) -> None:
    _load_and_check(tmp_path, registry, project, {"runs": shaped})


def _load_and_check(tmp_path: Path, registry: PluginRegistry, project: Project, document: Any) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    workflow = _load(path)
    if isinstance(workflow, WorkflowError):
        return
    assert workflow.runs and all(run.name and run.protocol for run in workflow.runs)
    with project.open_store() as store:
        checked = our_error_or_value(lambda: check_workflow(workflow, registry, store, project),
                                     OrchestratorError, [str(path), "run "])
    event("refused when checked" if isinstance(checked, OrchestratorError) else "accepted")


@FUZZ
@given(text=st.one_of(st.text(max_size=200),
                      st.sampled_from(['{"runs": [' + HUGE + "]}", '{"runs": [{"name": "a", "protocol": "p", '
                                       '"params": {"count": ' + HUGE + "}}]}", "[" * 5000 + "]" * 5000,
                                       '{"runs": ' + '{"a": ' * 3000 + "1" + "}" * 3001, "NaN", '{"runs": [1e999]}',
                                       '{"runs": [{"name": "a", "name": "b", "protocol": "p"}]}'])))
def test_any_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "wf.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _load(path)


@FUZZ
@given(data=st.binary(max_size=100))
def test_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "wf.json"
    path.write_bytes(b'{"runs": [{"name": "a", "protocol": "' + data + b'"}]}')
    _load(path)


@pytest.mark.parametrize("text, named", [
    ('{"runs": [{"name": "a", "protocol": "p", "params": {"count": ' + HUGE + "}}]}", "line 1"),
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ('{"runs": [{"name": "a", "protocol": "p", "params": {"count": NaN}}]}', "NaN"),
    ('{"runs": [{"name": "a", "protocol": "p",\n "params": {"count": -1e999}}]}', "line 2"),
])
def test_numbers_and_nesting_json_cannot_hold_are_workflow_errors(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "wf.json"
    path.write_text(text)
    error = our_error_or_value(lambda: load_workflow(path), WorkflowError, [str(path), named])
    assert isinstance(error, WorkflowError)


def test_a_file_name_with_a_nul_is_a_workflow_error() -> None:
    error = our_error_or_value(lambda: load_workflow("wf\x00.json"), WorkflowError, ["wf"])
    assert isinstance(error, WorkflowError)
