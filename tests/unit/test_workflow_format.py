"""The workflow format: every earlier version still loads, the schemas describe what the code
reads, and open inputs are declared, named, asked for and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.cli import main
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.workflow import (
    FORMAT_VERSION,
    READABLE_VERSIONS,
    OpenInput,
    WorkflowError,
    check_workflow,
    load_workflow,
    parse_workflow,
)
from orchestrator.workflow.inputs import parse_assignments

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "data" / "workflows"
SCHEMAS = ROOT / "orchestrator" / "workflow" / "schemas"
EVERY_FILE = sorted(FIXTURES.glob("v*/*.json"))


def schema(version: int) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"workflow-v{version}.schema.json").read_text())


def test_there_is_a_file_and_a_schema_for_every_readable_version() -> None:
    versions = {int(path.parent.name[1:]) for path in EVERY_FILE}
    assert versions == set(READABLE_VERSIONS)
    assert FORMAT_VERSION == max(READABLE_VERSIONS)
    for version in READABLE_VERSIONS:
        jsonschema.Draft202012Validator.check_schema(schema(version))


@pytest.mark.parametrize("path", EVERY_FILE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_file_of_every_version_loads_and_checks(path: Path, tmp_path: Path) -> None:
    version = int(path.parent.name[1:])
    jsonschema.validate(json.loads(path.read_text()), schema(version))
    workflow = load_workflow(path)
    assert workflow.version == version
    given = {name: "raw/*.mrcs" if item.type == "str" else 7 for name, item in workflow.open_inputs.items()
             if not item.has_default}
    filled = workflow.filled(given)
    assert not filled.open_inputs
    project = Project.create(tmp_path / "proj")
    if version >= 2 and any(run.protocol == "emtools.import_movies" for run in filled.runs):
        (project.path / "raw").mkdir()
        (project.path / "raw" / "a.mrcs").write_bytes(b"")
    with project.open_store() as store:
        check_workflow(filled, discover(), store, project)


def test_open_inputs_take_given_values_then_defaults(tmp_path: Path) -> None:
    workflow = load_workflow(FIXTURES / "v2" / "testkit-open-inputs.json")
    assert set(workflow.open_inputs) == {"seed", "count", "out"}
    filled = workflow.filled({"seed": "11"})
    produce = filled.runs[0]
    assert produce.params == {"count": 3, "size": 4096, "seed": 11}
    assert filled.runs[1].params["out"] == "summary.txt"


def test_an_input_without_value_is_named_with_how_to_give_it() -> None:
    workflow = load_workflow(FIXTURES / "v2" / "testkit-open-inputs.json")
    with pytest.raises(WorkflowError, match=r"seed \(Seed of the files, int\).*--set seed=") as caught:
        workflow.filled({})
    assert "testkit-open-inputs.json" in str(caught.value)


@pytest.mark.parametrize(("given", "message"), [
    ({"sed": "1", "seed": "1"}, r"no input named 'sed'; its inputs: seed, count, out"),
    ({"seed": "one"}, r"input 'seed' \(Seed of the files\): expected a whole number, got 'one'"),
    ({"seed": "1", "count": "2.5"}, r"input 'count' .*expected a whole number"),
])
def test_bad_values_name_the_input(given: dict[str, str], message: str) -> None:
    workflow = load_workflow(FIXTURES / "v2" / "testkit-open-inputs.json")
    with pytest.raises(WorkflowError, match=message):
        workflow.filled(given)


def test_asking_is_used_for_every_input_not_given() -> None:
    workflow = load_workflow(FIXTURES / "v2" / "testkit-open-inputs.json")
    asked: list[str] = []

    def ask(item: OpenInput) -> Any:
        asked.append(item.name)
        return "5" if item.type == "int" else "x.txt"

    filled = workflow.filled({"out": "given.txt"}, ask)
    assert asked == ["seed", "count"]
    assert filled.runs[0].params["seed"] == 5 and filled.runs[1].params["out"] == "given.txt"


def document(**top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"format": {"name": "em-orchestrator/workflow", "version": 2},
                            "runs": [{"name": "p", "protocol": "testkit.produce", "params": {}}]}
    base.update(top)
    return base


@pytest.mark.parametrize(("doc", "message"), [
    (document(format={"name": "em-orchestrator/workflow", "version": 9}),
     r"format version 9 cannot be read \(written by a newer em-orchestrator: upgrade it\); this version reads 1, 2"),
    (document(format={"name": "scipion", "version": 2}), r'"format" must be'),
    (document(extra=1), r"unknown key\(s\) extra; a workflow has: description, format, inputs, runs, source"),
    (document(inputs={"1bad": {"type": "int"}}), r"input '1bad': an input name is a letter"),
    (document(inputs={"x": {"type": "complex"}}), r"input 'x': type 'complex' is not one of"),
    (document(inputs={"x": {"type": "int", "default": "many"}}), r"input 'x'.*expected a whole number"),
    (document(runs=[{"name": "p", "protocol": "testkit.produce", "params": {"count": {"$input": "n"}}}]),
     r"run 1 \('p'\): param 'count' names input 'n', which the workflow's \"inputs\" do not declare"),
    (document(runs=[{"name": "p", "protocol": "testkit.produce", "params": {"count": {"$input": 3}}}]),
     r'run 1 \(\'p\'\): a param naming an input is written \{"\$input": "NAME"\}'),
    (document(runs=[{"name": "p", "protocol": "testkit.produce", "comment": 3}]), r'"comment" must be a text'),
])
def test_malformed_version_2_documents_are_refused_with_the_reason(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        parse_workflow(doc, Path("wf.json"))


def test_version_1_files_keep_their_leniency_for_extra_top_level_keys() -> None:
    workflow = parse_workflow({"runs": [{"name": "p", "protocol": "testkit.produce"}], "notes": "kept as before"},
                              Path("old.json"))
    assert workflow.version == 1 and workflow.inputs == {}


def test_set_assignments_are_parsed_and_checked() -> None:
    assert parse_assignments(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(WorkflowError.__mro__[1], match=r"--set 'nothing': expected NAME=VALUE"):
        parse_assignments(["nothing"])


def test_cli_show_lists_runs_and_open_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflow", "show", str(FIXTURES / "v2" / "testkit-open-inputs.json")]) == 0
    out = capsys.readouterr().out
    assert "run produce (testkit.produce)" in out
    assert "seed: Seed of the files (int, no default)" in out
    assert "count: How many files (int, default 3)" in out


def test_cli_import_without_a_value_for_an_open_input_fails_and_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = Project.create(tmp_path / "proj")
    code = main(["workflow", "import", str(FIXTURES / "v2" / "testkit-open-inputs.json"), str(project.path),
                 "--no-daemon", "--no-input"])
    assert code == 2
    assert "leaves these inputs open: seed" in capsys.readouterr().err
    with project.open_store() as store:
        assert store.runs.list() == []


def test_cli_import_with_set_creates_and_queues_the_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = Project.create(tmp_path / "proj")
    code = main(["workflow", "import", str(FIXTURES / "v2" / "testkit-open-inputs.json"), str(project.path),
                 "--no-daemon", "--set", "seed=4", "--set", "out=o.txt", "--json"])
    assert code == 0, capsys.readouterr().err
    outcome = json.loads(capsys.readouterr().out)
    assert [(run["name"], run["state"]) for run in outcome["runs"]] == [
        ("produce", "queued"), ("derive", "queued"), ("fanout", "queued")]
    with project.open_store() as store:
        assert store.runs.get("produce").params["seed"] == 4
        assert store.runs.get("derive").params["out"] == "o.txt"


def test_the_readme_shows_the_schema_file_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text()
    assert (SCHEMAS / "workflow-v2.schema.json").read_text().rstrip() in readme
