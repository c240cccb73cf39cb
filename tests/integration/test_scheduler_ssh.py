"""Runs on an SSH host without the project's file system, end to end, against the real sshd.

The scheduler runs in this process (``daemon.serve``), reads the host from a hosts file
(``ORCH_HOSTS``), starts dask workers on the host over SSH, stages each step's inputs to the
host's work dir and brings its outputs and log back. The host's work dir belongs to the SSH
user; the test looks at it directly (same disk) only to check what arrived.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from test_ssh_workers import env, remote_python, ssh_table  # noqa: F401 - fixtures shared with the worker tests

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState, StepState
from orchestrator.store.transfer_tables import TransferDirection, TransferRecord, TransferState

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HOST = "sshbox"


@pytest.fixture
def work_dir(env: dict[str, str]) -> Iterator[Path]:  # noqa: F811
    path = Path(tempfile.mkdtemp(prefix="orch-sched-ssh-", dir="/tmp"))
    shutil.chown(path, env["ORCH_TEST_SSH_USER"])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def project(tmp_path: Path, env: dict[str, str], remote_python: str, work_dir: Path,  # noqa: F811
            monkeypatch: pytest.MonkeyPatch) -> Project:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(f"""
[hosts.{HOST}]
kind = "ssh"
work_dir = "{work_dir}"
shared_fs = false
cores = 2
workers = 2
python = "{remote_python}"
""" + ssh_table(HOST, env))
    monkeypatch.setenv("ORCH_HOSTS", str(hosts))
    return Project.create(tmp_path / "proj")


def submit(project: Project, protocol: str, host: str = HOST, **params: object) -> int:
    with project.open_store() as store:
        return planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()},
                                  host=host).id


def serve(project: Project) -> None:
    assert daemon.serve(project, idle_exit_s=1.0, workers=1) == 0


def sent_bytes(project: Project, run_id: int) -> tuple[int, int]:
    """(files, bytes) sent to the host for a run, from the store's transfer records."""
    query = select(TransferRecord.bytes_done).where(
        TransferRecord.run_id == run_id, TransferRecord.direction == TransferDirection.IN.value,
        TransferRecord.state == TransferState.DONE.value)
    with project.open_store() as store, store.engine.connect() as conn:
        sizes = list(conn.execute(query).scalars())
    return len(sizes), sum(sizes)


def test_steps_run_on_the_host_and_outputs_come_back(project: Project, work_dir: Path) -> None:
    produce = submit(project, "testkit.produce", host="local", count=4, size=50_000)
    chain = submit(project, "testkit.chain", source=f"{produce}.files")
    serve(project)
    with project.open_store() as store:
        run = store.runs.get(chain)
        assert run.run_state is RunState.FINISHED, run.error
        (step,) = store.steps.list(chain)
        assert step.host == HOST and step.state == "finished" and step.worker
        events = [e.state for e in store.events.list(run_id=chain) if e.kind == "step"]
        assert events == ["queued", "running", "finished"]
        produce_dir = project.run_dir(store.runs.get(produce).name)
        chain_dir = project.run_dir(run.name)
    derived = (chain_dir / "derived.txt").read_text().splitlines()  # brought back from the host
    assert len(derived) == 4 and derived[0].startswith("file_0000.bin 50000 ")
    assert (chain_dir / "logs" / "derive.log").is_file()  # the step's log came back from the host
    remote_copies = list(work_dir.rglob("file_0000.bin"))
    assert remote_copies and remote_copies[0].read_bytes() == (produce_dir / "out" / "file_0000.bin").read_bytes()
    assert sent_bytes(project, chain) == (4, 200_000)

    # A second run reading the same inputs sends nothing; a changed file is sent again.
    again = submit(project, "testkit.chain", source=f"{produce}.files", out="again.txt")
    serve(project)
    with project.open_store() as store:
        assert store.runs.get(again).run_state is RunState.FINISHED
    assert sent_bytes(project, again) == (0, 0)
    (produce_dir / "out" / "file_0002.bin").write_bytes(b"x" * 1234)
    changed = submit(project, "testkit.chain", source=f"{produce}.files", out="changed.txt")
    serve(project)
    with project.open_store() as store:
        run = store.runs.get(changed)
        assert run.run_state is RunState.FINISHED, run.error
    assert sent_bytes(project, changed) == (1, 1234)
    lines = (project.run_dir(run.name) / "changed.txt").read_text().splitlines()
    assert lines[2].startswith("file_0002.bin 1234 ")


def test_failing_step_reports_its_remote_log(project: Project) -> None:
    run_id = submit(project, "testkit.fail", fail_always="true", retries=0)
    serve(project)
    with project.open_store() as store:
        run = store.runs.get(run_id)
        assert run.run_state is RunState.FAILED
        (step,) = store.steps.list(run_id)
        assert step.step_state is StepState.FAILED and step.host == HOST
        assert "DeliberateFailure" in step.error and "last lines of" in step.error and HOST in step.error
        assert "Traceback" in step.error  # the remote log's tail, traceback included
        local_log = project.run_dir(run.name) / "logs" / "flaky.log"
    assert "DeliberateFailure" in local_log.read_text()  # the whole log came back
