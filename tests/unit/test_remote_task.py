"""run_remote_step in this process: paths rewritten both ways, failures returned (never raised)
with the log tail, the outcome picklable, and the RUNNING announcement only inside a worker."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from orchestrator.protocol import StepContext
from orchestrator.worker.outcome import StepOutcome, attempt_dir, read_outcome
from orchestrator.worker.remote import PathMap, remote_log_path, run_remote_step
from orchestrator.worker.runtime import RUNNING_TOPIC, StepPayload, announce_running


def copy_and_report(ctx: StepContext, source: str, destination: str, extra: dict[str, Any]) -> dict[str, Any]:
    """A step: reads a file given by absolute path, writes one in the run dir, returns paths."""
    subprocess.run(["echo", f"copying {source}"], check=True)  # a program's stdout: to the step's log
    data = Path(source).read_bytes()
    Path(destination).parent.mkdir(parents=True, exist_ok=True)
    Path(destination).write_bytes(data)
    ctx.log("copied")
    return {"written": destination, "run_dir": str(ctx.run_dir), "project": str(ctx.project_dir),
            "log": str(ctx.log_path), "extra": extra, "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "reads_sets": ctx.sets is not None}


def fails(ctx: StepContext) -> None:
    subprocess.run(["sh", "-c", "echo 'about to fail: CTF fit diverged on mic_007' >&2"], check=True)
    raise RuntimeError("CTF fit diverged")


def exits(ctx: StepContext) -> None:
    raise SystemExit(3)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    local, remote = tmp_path / "here" / "proj", tmp_path / "host" / "work" / "proj-1a2b3c4d"
    local.mkdir(parents=True)
    (remote / "runs" / "import").mkdir(parents=True)
    (remote / "runs" / "import" / "mic.mrc").write_bytes(b"MRC!")
    return local, remote


def _payload(local: Path, func: str, args: dict[str, Any], gpus: list[int] | None = None,
             attempt: int = 2) -> StepPayload:
    run_dir = local / "runs" / "ctf"
    return StepPayload(store_url="sqlite:////nowhere/store.sqlite", project_dir=str(local), run_id=4,
                       run_dir=str(run_dir), step_id=11, step_name="fit", func=func, args=args, attempt=attempt,
                       log_path=str(run_dir / "logs" / "fit.log"), host="gpubox", gpus=gpus or [],
                       params={"input": str(local / "runs" / "import")})


def test_path_map_rewrites_only_paths_inside_the_project() -> None:
    raw = ("/mnt/raw", "/scratch/orch/proj-1a2b/_abs/mnt/raw")
    paths = PathMap("/data/proj/", "/scratch/orch/proj-1a2b", extra=(raw,))
    value = {"a": "/data/proj", "b": ["/data/proj/runs/x.star", ("/data/proj2/x", "/data/projx")],
             "c": {"d": "/mnt/raw/movies/m1.tif", "e": 3, "f": None, "g": "relative/path", "h": "/data"}}
    remote = paths.to_remote(value)
    assert remote == {"a": "/scratch/orch/proj-1a2b",
                      "b": ["/scratch/orch/proj-1a2b/runs/x.star", ("/data/proj2/x", "/data/projx")],
                      "c": {"d": "/scratch/orch/proj-1a2b/_abs/mnt/raw/movies/m1.tif", "e": 3, "f": None,
                            "g": "relative/path", "h": "/data"}}
    assert paths.to_local(remote) == {**value, "a": "/data/proj"}
    assert paths.to_remote(PurePosixPath("/data/proj/a")) == PurePosixPath("/scratch/orch/proj-1a2b/a")
    with pytest.raises(ValueError, match="absolute"):
        PathMap("proj", "/x")


def test_step_runs_in_the_remote_copy_and_paths_come_back(dirs: tuple[Path, Path]) -> None:
    local, remote = dirs
    paths = PathMap(str(local), str(remote))
    payload = _payload(local, f"{__name__}:copy_and_report",
                       {"source": str(local / "runs" / "import" / "mic.mrc"),
                        "destination": str(local / "runs" / "ctf" / "out" / "mic.ctf"),
                        "extra": {"keep": "/elsewhere/file", "nested": [str(local / "runs")]}}, gpus=[1, 3])
    outcome = run_remote_step(payload, paths)

    assert outcome.ok and outcome.error is None
    assert (remote / "runs" / "ctf" / "out" / "mic.ctf").read_bytes() == b"MRC!"
    assert not (local / "runs").exists()  # nothing written on "this machine's" copy
    assert outcome.result == {
        "written": str(local / "runs" / "ctf" / "out" / "mic.ctf"), "run_dir": str(local / "runs" / "ctf"),
        "project": str(local), "log": str(local / "runs" / "ctf" / "logs" / "fit.log"),
        "extra": {"keep": "/elsewhere/file", "nested": [str(local / "runs")]}, "gpus": "1,3", "reads_sets": False}
    log = remote / "runs" / "ctf" / "logs" / "fit.log"
    assert outcome.log_path == str(log) == str(remote_log_path(paths, payload))
    # its outcome record stays in the attempt's folder on the host (crash recovery reads it)
    record = read_outcome(attempt_dir(remote / "runs" / "ctf", "fit", 2))
    assert record is not None and record.ok and record.attempt == 2
    assert "copying " + str(remote / "runs" / "import" / "mic.mrc") in log.read_text()
    assert "copied" in outcome.log_tail
    assert outcome.pid == os.getpid() and outcome.worker and outcome.duration_s >= 0
    assert outcome.peak_memory_mb > 0 and outcome.started_at.tzinfo is not None


def test_failure_is_an_outcome_with_the_traceback(dirs: tuple[Path, Path]) -> None:
    local, remote = dirs
    outcome = run_remote_step(_payload(local, f"{__name__}:fails", {}), PathMap(str(local), str(remote)))
    assert not outcome.ok and outcome.result is None
    assert outcome.error == "RuntimeError: CTF fit diverged"
    assert "about to fail: CTF fit diverged on mic_007" in outcome.log_tail
    assert "Traceback (most recent call last)" in outcome.log_tail and "in fails" in outcome.log_tail
    assert Path(outcome.log_path).read_text().endswith("RuntimeError: CTF fit diverged\n")

    copy = pickle.loads(pickle.dumps(outcome))
    assert isinstance(copy, StepOutcome) and copy == outcome


def test_exit_and_import_errors_are_outcomes_too(dirs: tuple[Path, Path]) -> None:
    local, remote = dirs
    paths = PathMap(str(local), str(remote))
    exited = run_remote_step(_payload(local, f"{__name__}:exits", {}), paths)
    assert not exited.ok and exited.error == "SystemExit: 3"
    missing = run_remote_step(_payload(local, "no_such_plugin.steps:fit", {}, attempt=3), paths)
    assert not missing.ok and "cannot import module of step function" in (missing.error or "")


def test_running_is_announced_only_inside_a_worker(dirs: tuple[Path, Path]) -> None:
    local, _ = dirs
    from datetime import UTC, datetime

    assert RUNNING_TOPIC == "orch-step-running"
    assert announce_running(_payload(local, f"{__name__}:fails", {}), {"started_at": datetime.now(UTC)}) is False
