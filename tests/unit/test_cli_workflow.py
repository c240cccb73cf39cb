"""Workflow files: shape and param errors name the file and the run; runs are created in order, all or none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import planner
from orchestrator.workflow import check_workflow, load_workflow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workflow-testkit.json"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "wf.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def submit(project: Project, path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["run", str(project.path), "--workflow", str(path), "--no-daemon", "--json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def produce(name: str = "produce", **params: Any) -> dict[str, Any]:
    return {"name": name, "protocol": "testkit.produce", "params": params}


def chain(name: str, source: str) -> dict[str, Any]:
    return {"name": name, "protocol": "testkit.chain", "params": {"source": source}}


def test_runs_are_created_in_order_with_pointers_between_them(project: Project, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"runs": [produce(count=2), chain("derive", "produce.files"),
                                     {"name": "fan", "protocol": "testkit.fanout"}]})
    code, out, err = submit(project, path, capsys)
    assert code == 0, err
    runs = json.loads(out)["runs"]
    assert [(r["name"], r["state"]) for r in runs] == [("produce", "queued"), ("derive", "queued"),
                                                       ("fan", "queued")]
    with project.open_store() as store:
        (link,) = store.runs.inputs(store.runs.get("derive").id)
        assert (link.param, link.producer_run_id, link.output_name) == ("source", runs[0]["id"], "files")
        assert store.runs.get("fan").params == {"count": 4}  # defaults applied
        assert [e.message for e in store.events.list(run_id=runs[1]["id"])][-1] == "queued from workflow wf.json"


def test_pointer_to_a_run_already_in_the_project(project: Project, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with project.open_store() as store:
        earlier = planner.create_run(store, project, discover(), "testkit.produce", {}, name="earlier")
    code, _, err = submit(project, write(tmp_path, {"runs": [chain("d", f"{earlier.id}.files")]}), capsys)
    assert code == 0, err


@pytest.mark.parametrize(("document", "code", "message"), [
    ("{not json", 2, "wf.json: not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
    ([], 2, 'wf.json: expected an object with a list "runs"'),
    ({"runs": []}, 2, "wf.json: the workflow has no runs"),
    ({"runs": ["x"]}, 2, "wf.json: run 1: expected an object with name, protocol and params, got str"),
    ({"runs": [{"protocol": "testkit.noop"}]}, 2, 'wf.json: run 1: "name" is missing'),
    ({"runs": [{"name": "12", "protocol": "testkit.noop"}]}, 2,
     "run 1 ('12'): \"name\" is only digits, which reads as a run id"),
    ({"runs": [{"name": "a"}]}, 2, "wf.json: run 1 ('a'): \"protocol\" is missing"),
    ({"runs": [{"name": "a", "protocol": "testkit.noop", "parmas": {}}]}, 2,
     "run 1 ('a'): unknown key(s) parmas; a run has: comment, host, name, params, protocol"),
    ({"runs": [{"name": "a", "protocol": "testkit.noop", "params": [1]}]}, 2, "run 1 ('a'): \"params\" must be"),
    ({"runs": [produce("a"), produce("a")]}, 2, "run 2 ('a'): the name 'a' is used by an earlier run"),
    ({"runs": [produce(), {"name": "b", "protocol": "testkit.nop"}]}, 3,
     "wf.json: run 2 ('b'): no protocol 'testkit.nop' (did you mean 'testkit.noop'?)"),
    ({"runs": [produce(count="many")]}, 2,
     "wf.json: run 1 ('produce'): invalid params for protocol 'testkit.produce' (1 problem):\n"
     "  - param 'count': expected an integer, got 'many'"),
    ({"runs": [chain("derive", "produce.files"), produce()]}, 2,
     "run 1 ('derive'): param 'source' points to run 'produce', which comes at or after this run in the file"),
    ({"runs": [chain("derive", "derive.files")]}, 2, "points to run 'derive', which comes at or after"),
    ({"runs": [produce(), chain("derive", "produce.particles")]}, 2,
     "run 2 ('derive'): param 'source': run 'produce' of this file has no output 'particles'; it declares: files"),
    ({"runs": [chain("derive", "elsewhere.files")]}, 3, "run 1 ('derive'): param 'source': no run 'elsewhere'"),
])  # fmt: skip
def test_errors_name_the_file_and_the_run(project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          document: Any, code: int, message: str) -> None:
    path = write(tmp_path, document)
    got, out, err = submit(project, path, capsys)
    assert got == code
    assert err.startswith(f"orch: error: {path}") and message in err, err
    assert out == ""
    with project.open_store() as store:
        assert store.runs.list() == []  # nothing created


def test_missing_file(project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    got, _, err = submit(project, tmp_path / "none.json", capsys)
    assert got == 2 and f"{tmp_path / 'none.json'}: no such workflow file" in err


def test_names_taken_in_the_project(project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"runs": [produce(), chain("derive", "produce.files")]})
    assert submit(project, path, capsys)[0] == 0
    code, _, err = submit(project, path, capsys)
    assert code == 2 and "run 1 ('produce'): a run with this name already exists in the project proj" in err
    with project.open_store() as store:
        assert len(store.runs.list()) == 2


def test_all_or_none_when_creation_fails(project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = planner.create_run
    calls = []

    def failing_third(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["name"])
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(planner, "create_run", failing_third)
    path = write(tmp_path, {"runs": [produce(), chain("derive", "produce.files"), produce("again")]})
    with pytest.raises(OSError, match="disk full"):
        submit(project, path, capsys)
    with project.open_store() as store:
        assert store.runs.list() == []
    assert not (project.runs_dir / "produce").exists()


def test_example_workflow_is_valid(project: Project) -> None:
    workflow = load_workflow(EXAMPLE)
    assert [run.name for run in workflow.runs] == ["produce", "derive", "fanout"]
    with project.open_store() as store:
        check_workflow(workflow, discover(), store, project)
