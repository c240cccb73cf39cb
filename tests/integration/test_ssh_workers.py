"""Dask workers started over SSH (the real sshd of tests/infra/sshd.sh), attached to a scheduler here.

The "remote" is this machine seen as the user ``orchtest``, who cannot read the project's venv
under /root; the tests give it a venv of the interpreter the project's venv was made from (so
the same Python version, whatever the machine's system Python is) that reads this project's
site-packages (what a real host gets by installing em-orchestrator there), and a bare venv of
the same interpreter, which has no dask (a host where em-orchestrator is not installed).

Tasks sent to the host are functions it can import (``os.getuid``...), never this module's:
dask pickles task functions by name, and a worker that cannot unpickle a task leaves the
scheduler (a host needs the modules of the steps it runs).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from distributed import Client, LocalCluster, Scheduler
from infra.services import require_service
from waiting import wait_until

from orchestrator.hosts.config.model import HostConfig, HostKind, SshConfig
from orchestrator.hosts.ssh.client import SSHTarget
from orchestrator.hosts.ssh.openssh import ssh_argv
from orchestrator.hosts.ssh.workers import (
    RemoteModuleMissingError,
    RemotePythonError,
    SSHWorkerConnectError,
    SSHWorkerError,
    start_ssh_workers,
)
from orchestrator.protocol import Step
from orchestrator.scheduler.staging import HostStaging, register, stage_in_task, stage_out_task, unregister
from orchestrator.store import ProjectStore
from orchestrator.worker.outcome import StepOutcome
from orchestrator.worker.remote import run_remote_step
from orchestrator.worker.runtime import RUNNING_TOPIC, StepPayload

pytestmark = pytest.mark.integration


def ssh_host(env: dict[str, str], work_dir: str, *, port: int | None = None) -> HostConfig:
    """An SSH host without the shared file system, as a hosts file would declare it."""
    ssh = SshConfig(env["ORCH_TEST_SSH_HOST"], port or int(env["ORCH_TEST_SSH_PORT"]), env["ORCH_TEST_SSH_USER"],
                    Path(env["ORCH_TEST_SSH_KEY"]), Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"]))
    return HostConfig(name="gpubox", kind=HostKind.SSH, ssh=ssh, work_dir=work_dir, shared_fs=False)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return require_service("sshd", start=os.geteuid() == 0)


def _project_interpreter() -> Path:
    """The interpreter behind the project's venv (``sys.base_prefix``), the same minor version."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Path(sys.base_prefix) / "bin" / version


def _venv_for_the_ssh_user(root: Path, name: str, *, with_project: bool) -> Path:
    """A venv of the project's interpreter under ``root`` that the SSH user can run; with this
    project's site-packages (a ``.pth``) or bare (no dask: the interpreter's own packages are left out)."""
    venv = root / name
    subprocess.run([str(_project_interpreter()), "-m", "venv", "--without-pip", str(venv)], check=True)
    if with_project:
        site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        ours = sysconfig.get_paths()["purelib"]
        (site / "orch-dev.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return venv / "bin" / "python"


def _ssh_run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the SSH user, through the test sshd (what the host's workers will do)."""
    target = SSHTarget(env["ORCH_TEST_SSH_HOST"], int(env["ORCH_TEST_SSH_PORT"]), env["ORCH_TEST_SSH_USER"],
                       Path(env["ORCH_TEST_SSH_KEY"]), Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"]))
    return subprocess.run(ssh_argv(target, argv), capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def remote_python(env: dict[str, str]) -> Iterator[str]:
    """A Python the SSH user can run that imports distributed and orchestrator (this project's),
    and beside it (``bare_python``) one that imports neither. Both are venvs of the project's own
    interpreter, so no system Python of the same version is needed (the machine's may differ)."""
    interpreter = _project_interpreter()
    assert interpreter.exists(), f"{interpreter}: the project venv's base interpreter is not where sys.base_prefix says"
    root = Path(tempfile.mkdtemp(prefix="orch-remote-python-", dir="/tmp"))
    pythons = {"full": str(_venv_for_the_ssh_user(root, "venv", with_project=True)),
               "bare": str(_venv_for_the_ssh_user(root, "bare", with_project=False))}
    ours = sysconfig.get_paths()["purelib"]
    for needed in (Path(ours), Path(__file__).resolve().parents[2], Path(sys.base_prefix)):
        _let_others_traverse(needed)  # site-packages, the editable checkout, the interpreter's prefix
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o055)
    root.chmod(0o755)
    probe = _ssh_run(env, pythons["full"], "-c", "import distributed, orchestrator")
    assert probe.returncode == 0, f"the SSH user cannot run {pythons['full']} (is {sys.base_prefix} readable " \
                                  f"by others?): {probe.stderr[-2000:]}"
    yield pythons["full"]
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def bare_python(remote_python: str) -> str:
    """The SSH user's Python without distributed (a host where em-orchestrator is not installed)."""
    return str(Path(remote_python).parents[2] / "bare" / "bin" / "python")


def ssh_table(host: str, env: dict[str, str]) -> str:
    """The ``[hosts.<host>.ssh]`` table of a hosts file that reaches the test sshd."""
    return f"""
[hosts.{host}.ssh]
host = "{env['ORCH_TEST_SSH_HOST']}"
port = {env['ORCH_TEST_SSH_PORT']}
user = "{env['ORCH_TEST_SSH_USER']}"
key = "{env['ORCH_TEST_SSH_KEY']}"
known_hosts = "{env['ORCH_TEST_SSH_KNOWN_HOSTS']}"
"""


def _let_others_traverse(path: Path) -> None:
    """The SSH test user must reach this checkout's packages: add o+x to any folder above them
    that lacks it (a clone under /root, mode 700, would otherwise hide them); nothing else."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)


@pytest.fixture
def work_dir(env: dict[str, str]) -> Iterator[str]:
    path = Path(tempfile.mkdtemp(prefix="orch-ssh-workers-", dir="/tmp"))
    shutil.chown(path, env["ORCH_TEST_SSH_USER"])
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    """A scheduler here with one in-process worker of this machine (no resources)."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as local:
        yield local


def _task_state(key: str, dask_scheduler: Scheduler) -> str:
    """The scheduler's state of a task (run on the scheduler: ``client.run_on_scheduler``)."""
    task = dask_scheduler.tasks.get(key)
    return "not there yet" if task is None else str(task.state)


def _gone(pids: list[int], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pids):
            return True
        time.sleep(0.2)
    return False


def test_workers_join_run_tasks_and_honour_resources(env: dict[str, str], remote_python: str, work_dir: str,
                                                     cluster: LocalCluster) -> None:
    host = ssh_host(env, work_dir)
    with Client(cluster) as client, start_ssh_workers(host, cluster.scheduler_address, workers=2,
                                                      resources={"GPU": 1}, python=remote_python,
                                                      local_directory=work_dir) as group:
        group.wait_for_workers(client, timeout=60)
        assert len(group.worker_addresses) == 2
        assert all(a.startswith("tcp://127.0.0.1:") for a in group.worker_addresses)
        info = client.scheduler_info(n_workers=-1)["workers"]
        for address in group.worker_addresses:
            assert info[address]["resources"] == {"GPU": 1}
            assert info[address]["nthreads"] == 1
            assert info[address]["name"].startswith("gpubox-ssh-")

        # tasks asking for a GPU run on the SSH workers, as the SSH user
        remote_uid = pwd.getpwnam(env["ORCH_TEST_SSH_USER"]).pw_uid
        uids = [client.submit(os.getuid, key=f"uid-{i}", resources={"GPU": 1}, pure=False) for i in range(4)]
        pids = [client.submit(os.getpid, key=f"pid-{i}", resources={"GPU": 1}, pure=False) for i in range(4)]
        assert set(client.gather(uids)) == {remote_uid}
        assert set(client.gather(pids)) <= set(group.remote_pids())
        assert {client.who_has(f)[f.key][0] for f in uids + pids} <= set(group.worker_addresses)

        # more than one worker holds is never scheduled
        too_big = client.submit(os.getpid, resources={"GPU": 2}, pure=False)
        # the scheduler found no worker for it (not merely "not yet"): it waits for one that never comes
        wait_until(lambda: client.run_on_scheduler(_task_state, too_big.key) == "no-worker",
                   "the 2-GPU task to be left without a worker")
        assert too_big.status == "pending"
        too_big.cancel()

        # data flows from an SSH worker to a worker of this machine (the reverse is not supported)
        local_worker = next(a for a in info if a not in group.worker_addresses)
        remote = client.submit(os.getuid, resources={"GPU": 1}, pure=False)
        here = client.submit(lambda uid: (uid, os.getpid()), remote, workers=[local_worker])
        assert here.result(timeout=30) == (remote_uid, os.getpid())
    assert group.worker_addresses  # still listed after close, for diagnostics


def test_closing_the_group_ends_workers_and_what_steps_started(env: dict[str, str], remote_python: str,
                                                               work_dir: str, cluster: LocalCluster) -> None:
    host = ssh_host(env, work_dir)
    with Client(cluster) as client:
        group = start_ssh_workers(host, cluster.scheduler_address, workers=1, resources={"GPU": 1},
                                  python=remote_python)
        try:
            group.wait_for_workers(client, timeout=60)
            pids = group.remote_pids()
            assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
            assert psutil.Process(pids[1]).username() == env["ORCH_TEST_SSH_USER"]
            assert "distributed.cli.dask_worker" in " ".join(psutil.Process(pids[1]).cmdline())
            # a program a step starts (RELION would be one) must go with the worker
            sleeper = client.submit(os.spawnvp, os.P_NOWAIT, "sleep", ["sleep", "300"],
                                    resources={"GPU": 1}).result(timeout=30)
            assert psutil.pid_exists(sleeper)
        finally:
            group.close()
        assert _gone([*pids, sleeper]), "remote processes outlived the group"
        assert not group.alive
        deadline = time.monotonic() + 10
        while group.worker_addresses[0] in client.scheduler_info(n_workers=-1)["workers"]:
            assert time.monotonic() < deadline, "the worker did not leave the scheduler"
            time.sleep(0.2)


def test_a_lost_connection_ends_the_remote_workers(env: dict[str, str], remote_python: str, work_dir: str,
                                                   cluster: LocalCluster) -> None:
    host = ssh_host(env, work_dir)
    with Client(cluster) as client:
        group = start_ssh_workers(host, cluster.scheduler_address, workers=2, python=remote_python)
        try:
            group.wait_for_workers(client, timeout=60)
            pids = group.remote_pids()
            assert len(pids) == 4 and group.alive
            group.conn.transport.sock.shutdown(socket.SHUT_RDWR)  # the network goes, no goodbye
            assert _gone(pids), "remote workers outlived their SSH connection"
            with pytest.raises(SSHWorkerError, match="gpubox"):
                group.check()
        finally:
            group.close()


def test_unreachable_host_is_a_clear_error(env: dict[str, str], work_dir: str, cluster: LocalCluster) -> None:
    host = ssh_host(env, work_dir, port=9)
    with pytest.raises(SSHWorkerConnectError) as caught:
        start_ssh_workers(host, cluster.scheduler_address)
    assert "gpubox" in str(caught.value) and "cannot reach the SSH server" in str(caught.value)


def test_missing_python_is_a_clear_error(env: dict[str, str], work_dir: str, cluster: LocalCluster) -> None:
    host = ssh_host(env, work_dir)
    with pytest.raises(RemotePythonError) as caught:
        start_ssh_workers(host, cluster.scheduler_address, python="/opt/nowhere/bin/python3")
    message = str(caught.value)
    assert "gpubox" in message and "/opt/nowhere/bin/python3" in message and "exit status 127" in message
    assert "No such file" in message  # the remote stderr tail


def test_python_without_distributed_is_a_clear_error(env: dict[str, str], work_dir: str, cluster: LocalCluster,
                                                     bare_python: str) -> None:
    bare = bare_python
    assert _ssh_run(env, bare, "-c", "import distributed").returncode == 1  # truly without it, on the host
    host = ssh_host(env, work_dir)
    with pytest.raises(RemoteModuleMissingError) as caught:
        start_ssh_workers(host, cluster.scheduler_address, python=bare)
    message = str(caught.value)
    assert "gpubox" in message and "distributed" in message and "Install em-orchestrator" in message


def test_scheduler_must_listen_on_tcp(env: dict[str, str], work_dir: str) -> None:
    with pytest.raises(SSHWorkerError, match="protocol='tcp'"):
        start_ssh_workers(ssh_host(env, work_dir), "inproc://10.0.0.1/123/1")


def test_a_step_runs_on_an_ssh_worker_between_stage_in_and_stage_out(
        env: dict[str, str], remote_python: str, work_dir: str, cluster: LocalCluster, tmp_path: Path) -> None:
    """The three pieces together, as the scheduler chains them: stage-in here, the step on the
    host's worker (announcing RUNNING through a dask event), stage-out here."""
    host = ssh_host(env, work_dir)
    project = tmp_path / "proj"
    movies = project / "runs" / "import" / "movies"
    movies.mkdir(parents=True)
    for index in range(3):
        (movies / f"mic_{index}.tif").write_bytes(os.urandom(1000 + index))
    run_dir = project / "runs" / "derive"
    sources = [str(p) for p in sorted(movies.iterdir())]
    step = Step(name="derive", func="orch_testkit.steps:derive_step",
                args={"sources": sources, "out": "derived/list.txt"}, inputs=tuple(sources), outputs=("derived",))
    events: list[dict[str, object]] = []
    with ProjectStore.create(tmp_path / "store.sqlite", "p") as store, HostStaging(host, store, project) as staging, \
            Client(cluster) as client, start_ssh_workers(host, cluster.scheduler_address, resources={"gpubox": 1},
                                                         python=remote_python) as group:
        run = store.runs.create("testkit.derive", {}, name="derive")
        client.subscribe_topic(RUNNING_TOPIC, lambda event: events.append(event[1]))
        group.wait_for_workers(client, timeout=60)
        here = [a for a in client.scheduler_info(n_workers=-1)["workers"] if a not in group.worker_addresses]
        key = register(staging)
        try:
            # (1) stage-in on the worker of this process; the client waits for it (the host's worker
            # cannot fetch a result held here), then (2) submits the step with plain arguments
            staged = client.submit(stage_in_task, key, run.id, step, run_dir, workers=here, pure=False)
            assert len(staged.result(timeout=60).sent) == 3
            payload = StepPayload(store_url=store.url, project_dir=str(project), run_id=run.id,
                                  run_dir=str(run_dir), step_id=5, step_name=step.name, func=step.func,
                                  args=step.args, attempt=1, log_path=str(run_dir / "logs" / "derive.log"),
                                  host=host.name, gpus=[0])
            remote = client.submit(run_remote_step, payload, staging.path_map_for(step, run_dir),
                                   resources={"gpubox": 1}, pure=False)
            # (3) stage-out here takes the step's future: the outcome travels from the host to here
            back = client.submit(stage_out_task, key, run.id, step, run_dir, remote, workers=here,
                                 pure=False).result(timeout=60)
            outcome: StepOutcome = remote.result()
            # a step that outlasts the running marker's delay is announced while it runs
            waited = Step(name="wait", func="orch_testkit.steps:sleep_step", args={"seconds": 0.5})
            long_payload = StepPayload(store_url="", project_dir=str(project), run_id=run.id, run_dir=str(run_dir),
                                       step_id=6, step_name=waited.name, func=waited.func, args=waited.args,
                                       attempt=1, log_path=str(run_dir / "logs" / "wait.log"), host=host.name,
                                       gpus=[0])
            waited_outcome: StepOutcome = client.submit(
                run_remote_step, long_payload, staging.path_map_for(waited, run_dir), resources={"gpubox": 1},
                pure=False).result(timeout=60)
        finally:
            unregister(key)
        assert outcome.ok, outcome.log_tail
        assert outcome.worker == group.worker_addresses[0] and outcome.pid in group.remote_pids()
        assert outcome.result == {"outputs": {"derived": {"path": "derived/list.txt", "value": {
            "files": ["derived/list.txt"], "sources": 3, "bytes": 3003}}}}
        lines = (run_dir / "derived" / "list.txt").read_text().splitlines()
        assert [line.split()[:2] for line in lines] == [[f"mic_{i}.tif", str(1000 + i)] for i in range(3)]
        assert back.log_path.exists()
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            time.sleep(0.1)
        assert waited_outcome.ok, waited_outcome.log_tail
        assert [e["step_id"] for e in events] == [6]  # the short step 5 is not announced: its end carries its start
        assert events[0]["run_id"] == run.id
        assert events[0]["worker"] == group.worker_addresses[0] and events[0]["pid"] == waited_outcome.pid
        assert list(events[0]["gpus"]) == [0] and events[0]["attempt"] == 1  # lists arrive as tuples
        assert events[0]["started_at"] == waited_outcome.started_at.isoformat()
