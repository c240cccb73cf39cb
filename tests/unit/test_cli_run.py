"""`orch run` without a scheduler (--no-daemon): argument errors, params, --describe, --restart, waiting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from lifecycle_helpers import put_run

from orchestrator.app.runs import wait_for_runs
from orchestrator.cli import main
from orchestrator.cli.run_cmd import outcome_code, parse_params
from orchestrator.errors import UsageError
from orchestrator.project import Project
from orchestrator.store import RunState


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_queues_a_run_without_starting_the_scheduler(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["run", str(project.path), "testkit.fanout", "count=3", "--name", "fan", "--no-daemon",
                        "--json"], capsys)
    assert code == 0
    (queued,) = json.loads(out)["runs"]
    assert queued["name"] == "fan" and queued["state"] == "queued" and queued["params"] == {"count": 3}
    assert not (project.path / "scheduler.lock").exists()  # --no-daemon: no scheduler was started
    with project.open_store() as store:
        assert store.runs.get("fan").run_state is RunState.QUEUED
    code, out, _ = run(["run", project.name, "testkit.noop", "--no-daemon"], capsys)  # by registered name
    assert code == 0 and "queued run noop-2 (id 2, testkit.noop)" in out


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["testkit.noop", "count"], 2, "param 'count': expected KEY=VALUE"),
    (["testkit.noop", "count=1", "count=2"], 2, "param 'count' is given twice"),
    (["testkit.noop", "count=x"], 2, "param 'count': expected an integer, got 'x'"),
    (["testkit.noop", "cuont=1"], 2, "did you mean 'count'"),
    (["testkit.nop"], 3, "no protocol 'testkit.nop' (did you mean 'testkit.noop'?)"),
    ([], 2, "name a protocol"),
    (["testkit.noop", "--workflow", "wf.json"], 2, "--workflow takes no protocol"),
    (["--restart", "x", "--name", "y"], 2, "--restart takes no --name"),
    (["--restart", "nope"], 3, "no run 'nope' in this project"),
    (["testkit.noop", "--timeout", "-1"], 2, "--timeout -1: must be 0 or more"),
    (["testkit.chain", "source=nope.files"], 3, "no run 'nope'"),
])  # fmt: skip
def test_argument_errors(project: Project, capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
                         message: str) -> None:
    got, out, err = run(["run", str(project.path), *argv, "--no-daemon"], capsys)
    assert got == code, err
    assert message in err and err.startswith("orch: error: ")
    with project.open_store() as store:
        assert store.runs.list() == []  # nothing half-made


def test_unknown_project_and_exclusive_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["run", str(tmp_path / "none"), "testkit.noop"], capsys)
    assert code == 3 and "no project there or by that name" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "p", "--workflow", "f.json", "--restart", "r"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_parse_params() -> None:
    assert parse_params(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_params(["=1"])


def test_describe(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["run", str(project.path), "testkit.fail", "--describe"], capsys)
    assert code == 0
    assert "testkit.fail - Failing step" in out
    assert "fail_always" in out and "bool" in out and "false" in out and "Fail on every attempt." in out
    assert "[only if not fail_always]" in re.sub(r"[\s│]+", " ", out)  # the cell may wrap
    code, out, _ = run(["run", "testkit.chain", "--describe", "--json"], capsys)  # no project needed
    info = json.loads(out)
    assert code == 0 and info["inputs"] == ["source"] and info["outputs"] == {"derived": "Files"}
    assert {p["name"]: p["kind"] for p in info["params"]} == {"source": "pointer", "out": "str"}
    code, _, err = run(["run", "testkit.nope", "--describe"], capsys)
    assert code == 3 and "did you mean" in err


def test_restart_requeues_a_final_run(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    with project.open_store() as store:
        failed = store.runs.create("testkit.noop", {"count": 1}, name="old")
        put_run(store, failed.id, RunState.FAILED, error="boom")
    code, out, _ = run(["run", str(project.path), "--restart", "old", "--no-daemon", "--json"], capsys)
    assert code == 0 and json.loads(out)["runs"][0]["state"] == "queued"
    with project.open_store() as store:
        events = [e.message for e in store.events.list(run_id=failed.id)]
    assert events[-1] == "restarted (was failed)"
    code, _, err = run(["run", str(project.path), "--restart", "old", "--no-daemon"], capsys)
    assert code == 2 and "run old is queued: it is already queued or running" in err


def test_wait_times_out_with_124(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["run", str(project.path), "testkit.noop", "--no-daemon", "--wait", "--timeout", "0.3"],
                         capsys)
    assert code == 124
    assert "is still queued: timed out waiting" in err


@pytest.mark.parametrize(("states", "code"), [
    ([RunState.FINISHED], 0),
    ([RunState.FAILED], 1),
    ([RunState.CANCELLED], 4),
    ([RunState.FINISHED, RunState.CANCELLED, RunState.FAILED], 1),
    ([RunState.FINISHED, RunState.CANCELLED], 4),
    ([RunState.FAILED, RunState.RUNNING], 124),
])  # fmt: skip
def test_outcome_codes(project: Project, states: list[RunState], code: int) -> None:
    with project.open_store() as store:
        ids = []
        for state in states:
            record = store.runs.create("testkit.noop", {})
            put_run(store, record.id, state)
            ids.append(record.id)
        runs = wait_for_runs(project, ids, timeout_s=0, restart_scheduler=False)
        assert [r.run_state for r in runs] == states
        assert outcome_code(runs) == code
