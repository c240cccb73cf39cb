"""A step that finished on an SSH host (its own copy of the project) while no scheduler ran.

Its outcome record, log, outputs and registered set are on the host only. The next scheduler's
crash recovery fetches them over the real sshd and records the step as it would have, with
its set created in the same transaction: the step is not run again.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from lifecycle_helpers import put_run
from test_ssh_workers import env, ssh_table  # noqa: F401 - the sshd fixture shared with the worker tests

from orchestrator.hosts.config.loader import load_hosts
from orchestrator.project import Project
from orchestrator.protocol import Step
from orchestrator.scheduler.reconcile import reconcile_after_crash
from orchestrator.scheduler.staging import HostStaging
from orchestrator.store import QueuedAttempt, RunState
from orchestrator.worker.outcome import OUTCOME_FILE, attempt_dir
from orchestrator.worker.processes import step_token
from orchestrator.worker.remote import run_remote_step
from orchestrator.worker.runtime import StepPayload

pytestmark = pytest.mark.integration
HOST = "gpubox"


@pytest.fixture
def project(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:  # noqa: F811
    work = Path(tempfile.mkdtemp(prefix="orch-ssh-recovery-", dir="/tmp"))
    shutil.chown(work, env["ORCH_TEST_SSH_USER"])
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(f'[hosts.{HOST}]\nkind = "ssh"\nwork_dir = "{work}"\nshared_fs = false\n' + ssh_table(HOST, env))
    monkeypatch.setenv("ORCH_HOSTS", str(hosts))
    yield Project.create(tmp_path / "proj")
    shutil.rmtree(work, ignore_errors=True)


def _owned_by(root: Path, user: str) -> None:
    """The step ran in this process (as the test's user): hand what it wrote to the SSH user."""
    for path in [root, *root.rglob("*")]:
        shutil.chown(path, user)


def test_recovery_records_a_step_from_its_record_on_the_host(project: Project,
                                                              env: dict[str, str]) -> None:  # noqa: F811
    host = load_hosts(project.path).get(HOST)
    step = Step(name="particles", func="orch_testkit.steps:particles_step",
                args={"count": 30, "classes": 3, "seed": 4})
    with project.open_store() as store:
        run = store.runs.create("testkit.particles", {"count": 30}, name="made", host=HOST)
        put_run(store, run.id, RunState.RUNNING)
        step_id = store.steps.add(run.id, [{"name": step.name, "func": step.func, "args": step.args}])[step.name]
        store.lifecycle.queue_steps([QueuedAttempt(step_id, 1, HOST)])
        store.lifecycle.start_step(step_id, 1, worker="tcp://gpubox:1", pid=1, host=HOST)
        run_dir = project.run_dir("made")
        with HostStaging(host, store, project.path) as staging:  # what the dead scheduler had done
            staging.stage_in(run.id, step, run_dir, step_id=step_id)
            payload = StepPayload(store_url="", project_dir=str(project.path), run_id=run.id, run_dir=str(run_dir),
                                  step_id=step_id, step_name=step.name, func=step.func, args=step.args, attempt=1,
                                  log_path=str(run_dir / "logs" / "particles.log"), host=HOST,
                                  token=step_token(store.url, step_id, 1))
            finished_there = run_remote_step(payload, staging.path_map)  # ... and the step ended on the host
            remote_folder = attempt_dir(staging.remote_run_dir(run_dir), step.name, 1)
            _owned_by(Path(staging.remote_project_dir), env["ORCH_TEST_SSH_USER"])  # as if its worker wrote it
        assert finished_there.ok and finished_there.sets == ["pending_set_particles.npz"]
        assert (remote_folder / OUTCOME_FILE).exists()
        local_folder = attempt_dir(run_dir, step.name, 1)
        assert not (local_folder / OUTCOME_FILE).exists()  # nothing of it here yet

        assert reconcile_after_crash(store, project.path) == []  # settled from the record: nothing re-queued

        recorded = store.steps.get(step_id)
        assert (recorded.state, recorded.attempt, recorded.worker) == ("finished", 1, finished_there.worker)
        set_id = recorded.result["outputs"]["particles"]["value"]["set_id"]
        assert isinstance(set_id, int) and store.get_set(set_id).size == 30
        assert store.get_set(set_id).properties["seed"] == 4
        assert (local_folder / OUTCOME_FILE).exists() and (run_dir / "logs" / "particles.log").exists()
        events = [e.state for e in store.events.list(run_id=run.id) if e.kind == "step"]
        assert events == ["queued", "running", "finished"]
