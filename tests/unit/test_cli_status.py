"""`orch status`, `orch logs`, `orch cancel`, `orch daemon --status` on hand-made runs (no scheduler)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lifecycle_helpers import put_run, put_step

from orchestrator.cli import main
from orchestrator.cli.output import format_duration
from orchestrator.project import Project
from orchestrator.scheduler.daemon import SchedulerLock
from orchestrator.store import ProjectStore, RunState, StepState
from orchestrator.worker.processes import is_alive, process_start

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so a row is one line (captured output is no terminal: never cut)."""
    monkeypatch.setenv("COLUMNS", "200")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def add_run(store: ProjectStore, name: str, state: RunState, steps: dict[str, StepState], *,
            pid: int | None = None, proc_start: float | None = None) -> int:
    """A run with steps in the given states, as a scheduler and its workers would have left it."""
    run = store.runs.create("testkit.fanout", {"count": len(steps)}, name=name)
    put_run(store, run.id, RunState.QUEUED if state is RunState.QUEUED else RunState.RUNNING)
    ids = store.steps.add(run.id, [{"name": n, "func": "orch_testkit.steps:part_step", "max_retries": 2}
                                   for n in steps])
    for index, (step_name, step_state) in enumerate(steps.items()):
        started = T0 + timedelta(seconds=index)
        running = {"worker": "tcp://127.0.0.1:4000", "pid": pid or 4242 + index, "proc_start": proc_start,
                   "started_at": started}
        if step_state is StepState.FINISHED:
            put_step(store, ids[step_name], step_state, **running, duration_s=1.5, peak_memory_mb=120.0,
                     finished_at=started + timedelta(seconds=1.5))
        elif step_state is StepState.FAILED:
            put_step(store, ids[step_name], step_state, **running, duration_s=0.5, peak_memory_mb=80.0,
                     error="ValueError: bad [input]\n--- last lines ---\nTraceback")
        elif step_state is StepState.RUNNING:
            put_step(store, ids[step_name], step_state, **running)
        else:
            put_step(store, ids[step_name], step_state)
    if state.is_final:
        error = "step 'b' failed: ValueError: bad [input]\nmore" if state is RunState.FAILED else None
        put_run(store, run.id, state, error=error)
    return run.id


@pytest.fixture
def filled(project: Project) -> Project:
    with project.open_store() as store:
        add_run(store, "done", RunState.FINISHED, {"a": StepState.FINISHED, "b": StepState.FINISHED})
        add_run(store, "broken", RunState.FAILED, {"a": StepState.FINISHED, "b": StepState.FAILED,
                                                   "c": StepState.PENDING})
        add_run(store, "busy", RunState.RUNNING, {"a": StepState.RUNNING, "b": StepState.QUEUED,
                                                  "c": StepState.PENDING})
        add_run(store, "waiting", RunState.QUEUED, {})
    return project


def test_status_json_lists_runs_with_step_counts(filled: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", str(filled.path), "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["project"] == "proj" and data["scheduler"] == {"running": False, "pid": None}
    runs = {r["name"]: r for r in data["runs"]}
    assert [r["name"] for r in data["runs"]] == ["done", "broken", "busy", "waiting"]
    assert set(runs["done"]) == {"id", "name", "protocol", "state", "host", "created_at", "started_at",
                                 "finished_at", "duration_s", "step_counts", "error"}
    assert runs["broken"]["step_counts"] == {"total": 3, "pending": 1, "queued": 0, "running": 0, "finished": 1,
                                             "failed": 1, "cancelled": 0}
    assert runs["broken"]["state"] == "failed" and runs["broken"]["error"].startswith("step 'b' failed")
    assert runs["busy"]["finished_at"] is None and runs["busy"]["duration_s"] >= 0
    assert runs["waiting"]["started_at"] is None and runs["waiting"]["duration_s"] is None
    assert runs["done"]["created_at"].endswith("+00:00")  # times are UTC, SQLite or not


def test_status_json_of_one_run_lists_its_steps(filled: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", str(filled.path), "broken", "--json"], capsys)
    assert code == 0
    data = json.loads(out)["run"]
    assert data["params"] == {"count": 3} and data["outputs"] == []
    steps = {s["name"]: s for s in data["steps"]}
    assert [s["name"] for s in data["steps"]] == ["a", "b", "c"]
    assert steps["a"]["state"] == "finished" and steps["a"]["duration_s"] == 1.5
    assert steps["a"]["worker"] == "tcp://127.0.0.1:4000" and steps["a"]["pid"] == 4242
    assert steps["a"]["peak_memory_mb"] == 120.0 and steps["a"]["attempt"] == 1 and steps["a"]["max_retries"] == 2
    assert steps["b"]["error"].startswith("ValueError: bad [input]")
    assert steps["c"]["state"] == "pending" and steps["c"]["started_at"] is None
    code, out, _ = run(["status", str(filled.path), "busy", "--json", "--state", "running"], capsys)
    assert [s["name"] for s in json.loads(out)["run"]["steps"]] == ["a"]


def test_status_tables(filled: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", str(filled.path)], capsys)
    assert code == 0
    broken = next(line for line in out.splitlines() if "│ broken" in line)
    assert "failed" in broken and "1/3 (1 pending, 1 failed)" in broken and "local" in broken
    assert "broken: step 'b' failed: ValueError: bad [input]" in out  # first line, markup kept literal
    assert "scheduler: not running" in out
    code, out, _ = run(["status", str(filled.path), "broken"], capsys)
    assert code == 0
    assert "run broken (id 2, testkit.fanout) failed on local; steps 1/3" in out
    step_b = next(line for line in out.splitlines() if line.startswith("│ b "))
    assert "failed" in step_b and "4243" in step_b and "ValueError: bad" in step_b


def test_status_errors_and_scheduler_shown(filled: Project, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["status", str(filled.path), "brokn"], capsys)
    assert code == 3 and "no run 'brokn' in this project; did you mean broken?" in err
    code, _, err = run(["status", str(tmp_path / "nowhere")], capsys)
    assert code == 3
    code, _, err = run(["status", str(filled.path), "--state", "failed"], capsys)
    assert code == 2 and "name the run too" in err
    code, _, err = run(["status", str(filled.path), "busy", "--state", "done"], capsys)
    assert code == 2 and "--state done: not a step state" in err
    lock = SchedulerLock(filled)
    assert lock.acquire()  # a scheduler (this process) holds the project
    try:
        code, out, _ = run(["status", str(filled.path), "--json"], capsys)
        assert json.loads(out)["scheduler"]["running"] is True
        code, out, _ = run(["daemon", str(filled.path), "--status"], capsys)
        assert code == 0 and out.strip().startswith("running (pid ")
        code, _, err = run(["daemon", str(filled.path), "--idle-exit", "1"], capsys)
        assert code == 1 and "a scheduler already runs for project proj" in err
    finally:
        lock.release()


def test_status_of_empty_project(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", str(project.path)], capsys)
    assert code == 0 and "has no runs yet" in out
    assert json.loads(run(["status", str(project.path), "--json"], capsys)[1])["runs"] == []


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 0.123, 12.34, 125, 3725)] == ["", "0.12s", "12.3s", "2m05s", "1h02m"]


# ---------------------------------------------------------------------- logs
def test_logs_of_all_steps_one_step_and_events(filled: Project, capsys: pytest.CaptureFixture[str]) -> None:
    logs = filled.run_dir("broken") / "logs"
    logs.mkdir(parents=True)
    (logs / "a.log").write_text("reading input\nwrote 3 files\n")
    (logs / "b.log").write_text("Traceback (most recent call last):\nValueError: bad [input]")
    code, out, err = run(["logs", str(filled.path), "broken"], capsys)
    assert code == 0
    assert out == ("==> a <==\nreading input\nwrote 3 files\n\n==> b <==\n"
                   "Traceback (most recent call last):\nValueError: bad [input]\n")
    assert "no log yet for: c (pending)" in err
    code, out, _ = run(["logs", str(filled.path), "broken", "a"], capsys)
    assert code == 0 and out == "reading input\nwrote 3 files\n"
    code, _, err = run(["logs", str(filled.path), "broken", "d"], capsys)
    assert code == 3 and "run broken has no step 'd'; its steps: a, b, c" in err
    code, out, _ = run(["logs", str(filled.path), "broken", "--events"], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith("run created on local - created from testkit.fanout")
    assert any(line.endswith("step b failed - ValueError: bad [input]") for line in lines)
    assert lines[-2].split(" ", 2)[2] == "run failed - step 'b' failed: ValueError: bad [input]"
    assert lines[-1] == "    more"  # a message's later lines follow it, indented
    code, out, _ = run(["logs", str(filled.path), "broken", "b", "--events", "--json"], capsys)
    events = json.loads(out)
    assert code == 0 and [e["state"] for e in events] == ["queued", "running", "failed"]
    assert set(events[0]) == {"id", "time", "kind", "step", "state", "host", "job_id", "message"}
    assert {e["step"] for e in events} == {"b"}
    code, _, err = run(["logs", str(filled.path), "broken", "--json"], capsys)
    assert code == 2 and "--json goes with --events" in err


def test_logs_follow_returns_when_the_run_is_final(filled: Project, capsys: pytest.CaptureFixture[str]) -> None:
    logs = filled.run_dir("done") / "logs"
    logs.mkdir(parents=True)
    (logs / "a.log").write_text("no newline at the end")
    code, out, err = run(["logs", str(filled.path), "done", "-f"], capsys)
    assert code == 0 and out == "==> a <==\nno newline at the end\n" and "run done finished" in err
    code, out, _ = run(["logs", str(filled.path), "done", "-f", "--events"], capsys)
    assert code == 0 and out.splitlines()[-1].split(" ", 2)[2] == "run finished"


# ---------------------------------------------------------------------- cancel
def test_cancel_kills_running_steps_and_marks_the_rest(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with project.open_store() as store:
            run_id = add_run(store, "busy", RunState.RUNNING,
                             {"a": StepState.FINISHED, "b": StepState.RUNNING, "c": StepState.PENDING},
                             pid=sleeper.pid, proc_start=process_start(sleeper.pid))
        code, out, _ = run(["cancel", str(project.path), "busy", "--json"], capsys)
        assert code == 0
        assert json.loads(out) == {"run": {"id": run_id, "name": "busy"}, "state": "cancelled",
                                   "steps_cancelled": ["b", "c"], "killed_pids": [sleeper.pid]}
        sleeper.wait(timeout=10)  # (psutil may have reaped it already: then the code reads 0)
        assert not is_alive(sleeper.pid)
        with project.open_store() as store:
            assert store.runs.get(run_id).run_state is RunState.CANCELLED
            assert [s.state for s in store.steps.list(run_id)] == ["finished", "cancelled", "cancelled"]
        code, _, err = run(["cancel", str(project.path), "busy"], capsys)
        assert code == 2 and "run busy is already cancelled" in err
        code, _, err = run(["cancel", str(project.path), "nope"], capsys)
        assert code == 3 and "no run 'nope'" in err
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cancel_a_queued_run(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    with project.open_store() as store:
        add_run(store, "waiting", RunState.QUEUED, {})
    code, out, _ = run(["cancel", str(project.path), "waiting"], capsys)
    assert code == 0 and "cancelled run waiting (id 1): 0 step(s) stopped" in out


# ---------------------------------------------------------------------- daemon
def test_daemon_status_stop_and_argument_errors(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["daemon", str(project.path), "--status"], capsys)
    assert code == 3 and out.strip() == "not running"
    code, out, _ = run(["daemon", str(project.path), "--status", "--json"], capsys)
    assert code == 3 and json.loads(out) == {"project": "proj", "running": False, "pid": None}
    code, out, _ = run(["daemon", str(project.path), "--stop"], capsys)
    assert code == 0 and out.strip() == "not running"
    code, _, err = run(["daemon", str(project.path), "--detach", "--workers", "2"], capsys)
    assert code == 2 and "--workers and --retries work in the foreground only" in err
    code, _, err = run(["daemon", str(project.path), "--stop", "--idle-exit", "3"], capsys)
    assert code == 2
    code, _, err = run(["daemon", str(project.path), "--idle-exit", "-1"], capsys)
    assert code == 2 and "--idle-exit -1" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["daemon", str(project.path), "--status", "--stop"])
    assert exit_info.value.code == 2


def test_every_command_has_examples_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "status", "logs", "cancel", "daemon"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0
        assert "examples:" in out and f"orch {command} myproj" in out and "exit codes" in out
