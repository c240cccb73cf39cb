"""HostStaging against the real sshd (tests/infra/sshd.sh): a step's inputs to the host's copy of
the project, its outputs and log back, with run_remote_step (in this process) in between.

The host's work dir is owned by the SSH user and reached only over SSH by the staging code;
the test itself looks at it directly (same disk) to check what arrived.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from infra.services import require_service

from orchestrator.hosts.config.model import HostConfig, HostKind, SshConfig
from orchestrator.protocol import Step, StepContext
from orchestrator.scheduler.staging import HostStaging, StagingSetupError, remote_project_name
from orchestrator.store import ProjectStore
from orchestrator.transfer.errors import TransferError
from orchestrator.worker.outcome import StepOutcome
from orchestrator.worker.remote import run_remote_step
from orchestrator.worker.runtime import StepPayload

pytestmark = pytest.mark.integration


def estimate(ctx: StepContext, movies: str, gain: str) -> dict[str, Any]:
    """A step: reads its staged inputs, writes outputs in the run dir, says where they are."""
    names = sorted(os.listdir(movies))
    ctx.log(f"{len(names)} movies, gain {Path(gain).stat().st_size} bytes")
    out = ctx.path("out")
    out.mkdir(exist_ok=True)
    for name in names:
        (out / f"{name}.ctf").write_text(f"defocus of {name}\n")
    ctx.path("summary.star").write_text("data_\nloop_\n")
    return {"summary": str(ctx.path("summary.star")), "count": len(names)}


def breaks(ctx: StepContext, movies: str, gain: str) -> None:
    ctx.log("fitting")
    raise RuntimeError("CTF fit diverged on mic_002")


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return require_service("sshd", start=os.geteuid() == 0)


@pytest.fixture
def host(env: dict[str, str]) -> Iterator[HostConfig]:
    work = Path(tempfile.mkdtemp(prefix="orch-step-staging-", dir="/tmp"))
    shutil.chown(work, env["ORCH_TEST_SSH_USER"])
    ssh = SshConfig(env["ORCH_TEST_SSH_HOST"], int(env["ORCH_TEST_SSH_PORT"]), env["ORCH_TEST_SSH_USER"],
                    Path(env["ORCH_TEST_SSH_KEY"]), Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"]))
    yield HostConfig(name="gpubox", kind=HostKind.SSH, ssh=ssh, work_dir=str(work), shared_fs=False)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my proj"
    movies = root / "runs" / "import" / "movies"
    movies.mkdir(parents=True)
    for index in range(5):
        (movies / f"mic_{index:03d}.tif").write_bytes(os.urandom(10_000 + index))
    return root


@pytest.fixture
def gain(tmp_path: Path) -> Path:
    """An input outside the project (a gain reference on the acquisition disk)."""
    path = tmp_path / "acquisition" / "gain.mrc"
    path.parent.mkdir()
    path.write_bytes(os.urandom(4096))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProjectStore]:
    with ProjectStore.create(tmp_path / "store.sqlite", "p") as opened:
        yield opened


def _step(func: str, gain: Path) -> Step:
    return Step(name="ctf", func=f"{__name__}:{func}", args={}, inputs=("../import/movies", str(gain)),
                outputs=("out", "summary.star"))


def _payload(project: Path, run_dir: Path, step: Step, args: dict[str, Any]) -> StepPayload:
    return StepPayload(store_url="", project_dir=str(project), run_id=1, run_dir=str(run_dir), step_id=1,
                       step_name=step.name, func=step.func, args=args, attempt=1,
                       log_path=str(run_dir / "logs" / f"{step.name}.log"), host="gpubox")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_sends_inputs_once_and_brings_outputs_and_log_back(
        host: HostConfig, store: ProjectStore, project: Path, gain: Path) -> None:
    run = store.runs.create("emtools.ctf", {}, name="ctf")
    run_dir = project / "runs" / "ctf"
    step = _step("estimate", gain)
    with HostStaging(host, store, project) as staging:
        remote_root = Path(staging.remote_project_dir)
        assert remote_root == Path(host.work_dir) / remote_project_name(project)
        assert remote_root.name.startswith("my_proj-")

        staged = staging.stage_in(run.id, step, run_dir, step_id=1)
        assert len(staged) == len(staged.sent) == 6
        for local, remote in staged.items():
            assert _digest(Path(str(remote))) == _digest(local)
        assert (remote_root / "runs" / "import" / "movies" / "mic_000.tif").exists()
        assert (remote_root / "_abs" / str(gain).lstrip("/")).exists()
        assert (remote_root / "runs" / "ctf" / "logs").is_dir()

        again = staging.stage_in(run.id, step, run_dir, step_id=1)
        assert again.sent == () and again.skipped == 6 and again.bytes_sent == 0

        # the step "on the host": arguments name local paths; the path map of the step rewrites them
        args = {"movies": str(project / "runs" / "import" / "movies"), "gain": str(gain)}
        outcome = run_remote_step(_payload(project, run_dir, step, args), staging.path_map_for(step, run_dir))
        assert outcome.ok, outcome.log_tail
        assert outcome.result == {"summary": str(run_dir / "summary.star"), "count": 5}
        assert not run_dir.joinpath("summary.star").exists()

        back = staging.stage_out(run.id, step, run_dir, outcome, step_id=1)
        assert back.log_error is None and back.log_path == run_dir / "logs" / "ctf.log"
        assert "5 movies, gain 4096 bytes" in back.log_path.read_text()
        assert back.outputs is not None and len(back.outputs.sent) == 6
        assert (run_dir / "summary.star").read_text() == "data_\nloop_\n"
        assert sorted(p.name for p in (run_dir / "out").iterdir()) == [f"mic_{i:03d}.tif.ctf" for i in range(5)]
    kinds = [e.kind for e in store.events.list(run.id)]
    assert kinds.count("transfer") == 3  # inputs in; log out; outputs out (nothing for the second stage-in)


def test_failed_step_still_brings_its_log_back(host: HostConfig, store: ProjectStore, project: Path,
                                               gain: Path) -> None:
    run_dir = project / "runs" / "ctf"
    step = _step("breaks", gain)
    run = store.runs.create("emtools.ctf", {}, name="ctf")
    with HostStaging(host, store, project) as staging:
        staging.stage_in(run.id, step, run_dir)
        args = {"movies": str(project / "runs" / "import" / "movies"), "gain": str(gain)}
        outcome = run_remote_step(_payload(project, run_dir, step, args), staging.path_map_for(step, run_dir))
        assert not outcome.ok and outcome.error == "RuntimeError: CTF fit diverged on mic_002"
        back = staging.stage_out(run.id, step, run_dir, outcome)
        assert back.outputs is None and back.log_error is None
        text = back.log_path.read_text()
        assert "fitting" in text and "Traceback" in text and "CTF fit diverged on mic_002" in text
        assert not (run_dir / "summary.star").exists()


def _outcome(ok: bool, remote_log: str) -> StepOutcome:
    from datetime import UTC, datetime

    return StepOutcome(step_id=1, run_id=1, attempt=1, ok=ok, result=None, error=None if ok else "RuntimeError: lost",
                       log_path=remote_log, log_tail="last words", started_at=datetime.now(UTC), duration_s=1.0,
                       peak_memory_mb=1.0, worker="w", pid=1, proc_start=None, host="gpubox")


def test_missing_log_or_outputs(host: HostConfig, store: ProjectStore, project: Path, gain: Path) -> None:
    run_dir = project / "runs" / "ctf"
    step = _step("estimate", gain)
    run = store.runs.create("emtools.ctf", {}, name="ctf")
    with HostStaging(host, store, project) as staging:
        staging.stage_in(run.id, step, run_dir)
        remote_log = f"{staging.remote_run_dir(run_dir)}/logs/ctf.log"
        # a failure whose log never got written: the reason goes into the local log, nothing is raised
        back = staging.stage_out(run.id, step, run_dir, _outcome(False, remote_log))
        assert back.log_error is not None and "gpubox" in back.log_error and "ctf.log" in back.log_error
        assert "last words" in back.log_path.read_text() and "could not be brought back" in back.log_path.read_text()
        # a "success" whose outputs are not there is a transfer error naming them
        Path(remote_log).write_text("done\n")
        with pytest.raises(TransferError, match="summary.star"):
            staging.stage_out(run.id, step, run_dir, _outcome(True, remote_log))


def test_bad_work_dir_or_run_folder_is_refused(host: HostConfig, store: ProjectStore, project: Path) -> None:
    from dataclasses import replace

    with pytest.raises(StagingSetupError, match="work_dir"):
        HostStaging(replace(host, work_dir="~/orch"), store, project)
    with HostStaging(host, store, project) as staging, pytest.raises(StagingSetupError, match="not inside"):
        staging.remote_run_dir(project.parent / "elsewhere")
