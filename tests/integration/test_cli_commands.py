"""The `orch` commands against a real scheduler: exit codes, workflows, cancel, logs.

Most tests share one project whose scheduler `orch run` starts detached (as a user's would);
the module's teardown stops it with `orch daemon --stop` and checks that no process of it
is left. The workflow test runs `orch daemon PROJECT --idle-exit 1` in the foreground, in
its own process, which exits by itself once the runs are done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator.cli import main
from orchestrator.project import Project
from orchestrator.scheduler.daemon import running_pid
from orchestrator.worker.processes import is_alive

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workflow-testkit.json"
WAIT = ["--wait", "--timeout", "120"]


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A project whose detached scheduler is stopped, with all its processes, at the end."""
    home = tmp_path_factory.mktemp("orch-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCH_HOME", str(home))
        project = Project.create(tmp_path_factory.mktemp("cli") / "proj")
    yield project
    pid = running_pid(project)
    family = []
    if pid is not None and pid > 0:
        family = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
    assert main(["daemon", str(project.path), "--stop", "--timeout", "60"]) == 0
    assert running_pid(project) is None
    wait_until(lambda: not any(is_alive(p) for p in family), 30, "the scheduler's processes to exit")


def orch(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def status(project: Project, run: str, capsys: pytest.CaptureFixture[str]) -> dict:
    code, out, _ = orch(["status", str(project.path), run, "--json"], capsys)
    assert code == 0
    return json.loads(out)["run"]


def test_run_wait_exit_codes_logs_and_restart(shared: Project, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(shared.path)
    code, out, err = orch(["run", path, "testkit.fanout", "count=3", "--name", "fan", *WAIT], capsys)
    assert code == 0, err
    assert "queued run fan" in out and "run fan finished" in out
    run = status(shared, "fan", capsys)
    assert run["state"] == "finished" and run["step_counts"]["finished"] == 4
    assert all(s["worker"] and s["pid"] and s["duration_s"] is not None for s in run["steps"])

    code, _, err = orch(["run", path, "testkit.fail", "fail_always=true", "retries=0", "--name", "bad", *WAIT],
                        capsys)
    assert code == 1
    assert "run bad failed: step 'flaky' failed after 1 attempt(s): DeliberateFailure" in err
    code, out, _ = orch(["logs", path, "bad", "flaky"], capsys)  # what the step wrote, traceback included
    assert code == 0 and "DeliberateFailure: step 'flaky' fails on purpose: attempt 1" in out
    code, out, _ = orch(["logs", path, "bad", "--events"], capsys)
    assert code == 0 and "step flaky failed on local - DeliberateFailure" in out and "run failed" in out

    last_event = max(e["id"] for e in json.loads(orch(["logs", path, "fan", "--events", "--json"], capsys)[1]))
    code, _, err = orch(["run", path, "--restart", "fan", *WAIT], capsys)
    assert code == 0, err
    events = json.loads(orch(["logs", path, "fan", "--events", "--json"], capsys)[1])
    new = [(e["kind"], e["state"], e["message"]) for e in events if e["id"] > last_event]
    assert ("run", "running", "0 step(s) to run, 4 unchanged") in new
    assert not [e for e in new if e[0] == "step"]  # no step ran again


def test_cancel_kills_the_running_step(shared: Project, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(shared.path)
    code, _, err = orch(["run", path, "testkit.hold", "seconds=120", "--name", "hold", "--wait", "--timeout", "1"],
                        capsys)
    assert code == 124 and "timed out waiting" in err
    pid_file = shared.run_dir("hold") / "hold.pid"
    wait_until(pid_file.exists, 60, "the hold step to start")
    pid = int(pid_file.read_text())
    assert is_alive(pid)
    code, out, _ = orch(["cancel", path, "hold", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["steps_cancelled"] == ["hold"] and pid in result["killed_pids"]
    wait_until(lambda: not is_alive(pid), 30, "the step's process to die")
    run = status(shared, "hold", capsys)
    assert run["state"] == "cancelled" and [s["state"] for s in run["steps"]] == ["cancelled"]
    code, _, err = orch(["cancel", path, "hold"], capsys)
    assert code == 2 and "already cancelled" in err


def test_logs_follow_until_the_run_ends(shared: Project, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(shared.path)
    assert orch(["run", path, "testkit.sleep", "seconds=1", "--name", "nap"], capsys)[0] == 0
    code, out, _ = orch(["logs", path, "nap", "-f", "--events"], capsys)
    lines = out.splitlines()
    assert code == 0
    assert any(line.endswith("step sleep_0 running on local") for line in lines)
    assert lines[-1].split(" ", 2)[2].startswith("run finished")
    assert status(shared, "nap", capsys)["state"] == "finished"


def test_workflow_with_a_pointer_and_a_foreground_daemon(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    project = Project.create(tmp_path / "wf")
    code, out, err = orch(["run", str(project.path), "--workflow", str(EXAMPLE), "--no-daemon", "--json"], capsys)
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)["runs"]] == ["produce", "derive", "fanout"]
    daemon = subprocess.run([sys.executable, "-m", "orchestrator.cli", "daemon", str(project.path),
                             "--idle-exit", "1", "--workers", "2"], capture_output=True, text=True, timeout=180)
    assert daemon.returncode == 0, daemon.stderr
    assert orch(["daemon", str(project.path), "--status"], capsys)[0] == 3  # it exited by itself
    code, out, _ = orch(["status", str(project.path), "--json"], capsys)
    assert {r["name"]: r["state"] for r in json.loads(out)["runs"]} == {
        "produce": "finished", "derive": "finished", "fanout": "finished"}
    derive = status(project, "derive", capsys)
    assert derive["outputs"] == [{"name": "derived", "type": "Files", "path": "summary.txt"}]
    summary = (project.run_dir("derive") / "summary.txt").read_text().splitlines()
    assert [line.split()[:2] for line in summary] == [[f"file_{i:04d}.bin", "4096"] for i in range(3)]
