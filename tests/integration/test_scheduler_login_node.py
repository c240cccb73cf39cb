"""A SLURM cluster reached through its login node over SSH: sbatch, squeue and sacct run there.

Real sshd (tests/infra/sshd.sh, user ``orchtest``) in front of the real test SLURM: the
scheduler here submits each step as a batch job through ``ssh orchtest@localhost``; the jobs
run as that user, on the file system both sides share (the project is made writable for it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.services import require_service
from test_ssh_workers import env, remote_python, ssh_table  # noqa: F401 - fixtures shared with the worker tests

from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HOST = "login-slurm"


@pytest.fixture
def shared_project(env: dict[str, str], remote_python: str,  # noqa: F811
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    slurm = require_service("slurm")
    root = Path(tempfile.mkdtemp(prefix="orch-login-node-", dir="/tmp"))
    root.chmod(0o777)
    hosts = root / "hosts.toml"
    hosts.write_text(f"""
[hosts.{HOST}]
kind = "slurm"
work_dir = "{root}/work"
shared_fs = true
env_setup = ["export SLURM_CONF={slurm['SLURM_CONF']}"]
default_queue = "debug"

[hosts.{HOST}.queues.debug]
cores = 8
memory = "8000M"
gpus = 2
gpu_request = "--gres=gpu:{{n}}"
walltime = "01:00:00"

[hosts.{HOST}.pilot]
python = "{remote_python}"
""" + ssh_table(HOST, env))
    monkeypatch.setenv("ORCH_HOSTS", str(hosts))
    # The jobs run as the SSH user and write into the project: everything made here is shared.
    old_umask = os.umask(0)
    try:
        project = Project.create(root / "proj")
        for path in project.path.glob("store.sqlite*"):  # SQLite makes its -wal/-shm files alike
            path.chmod(0o666)
        yield project
    finally:
        os.umask(old_umask)
        shutil.rmtree(root, ignore_errors=True)


def test_steps_run_as_batch_jobs_submitted_through_the_login_node(shared_project: Project) -> None:
    with shared_project.open_store() as store:
        run_id = planner.create_run(store, shared_project, discover(), "testkit.sleep",
                                    {"count": "2", "seconds": "0.5"}, host=HOST).id
    assert daemon.serve(shared_project, idle_exit_s=1.0, workers=1) == 0
    with shared_project.open_store() as store:
        run = store.runs.get(run_id)
        steps = store.steps.list(run_id)
        assert run.run_state is RunState.FINISHED, [s.error for s in steps]
    assert len(steps) == 2
    for step in steps:
        assert step.host == HOST and step.job_id and step.result["job"] == step.job_id
        assert step.accounting["job_id"] == step.job_id and step.accounting["exit_code"] == 0
    job_dir = shared_project.run_dir(run.name) / "jobs" / f"{steps[0].name}.a1"
    assert job_dir.owner() == require_service("sshd")["ORCH_TEST_SSH_USER"]  # made over SSH, by the job's user
