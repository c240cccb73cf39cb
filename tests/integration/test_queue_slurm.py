"""Batch jobs, batched status, cancel, reconciliation and pilots against the REAL test SLURM.

SLURM comes from ``tests/infra/slurm.sh`` (one node, 8 CPUs, 2 fake gres GPUs, partition
``debug``; with ``SLURM_ACCOUNTING=1`` also slurmdbd, so that sacct answers). The host is
``ci-slurm`` from ``hosts/ci-test.toml``. Nothing here imitates sbatch or squeue.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from infra.services import require_service
from lifecycle_helpers import put_step

from orchestrator.cli import main
from orchestrator.hosts.check import check_host
from orchestrator.hosts.config.loader import load_hosts_file
from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.errors import JobSubmitError, ResourceLimitError
from orchestrator.hosts.queues.base import JobRequest, JobState
from orchestrator.hosts.queues.jobs import BatchQueue, accounting_fields
from orchestrator.hosts.queues.pilots import start_pilot_cluster
from orchestrator.hosts.queues.poller import PollSettings
from orchestrator.hosts.runner import LocalRunner
from orchestrator.project import Project
from orchestrator.protocol.steps import Resources
from orchestrator.store import StepState

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FAST = PollSettings(fast_s=0.2, max_s=2, command_timeout_s=10, accounting_grace_s=5,
                    lost_after_s=30)


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    return require_service("slurm")


@pytest.fixture
def host(slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> HostConfig:
    for key, value in slurm_env.items():
        monkeypatch.setenv(key, value)
    return load_hosts_file(REPO / "hosts" / "ci-test.toml")["ci-slurm"]


@pytest.fixture
def queue(host: HostConfig):  # type: ignore[no-untyped-def]
    with BatchQueue(host, settings=FAST) as batch:
        yield batch


def accounting_on(slurm_env: dict[str, str]) -> bool:
    return slurm_env.get("ORCH_TEST_SLURM_ACCOUNTING") == "1"


def squeue(job_ids: list[str]) -> dict[str, list[str]]:
    out = subprocess.run(["squeue", "--noheader", f"--jobs={','.join(job_ids)}", "--states=all",
                          "--format=%i|%T|%P|%N|%b|%r"], capture_output=True, text=True, check=True).stdout
    return {line.split("|")[0]: line.split("|") for line in out.splitlines() if line}


def bash(script: str) -> list[str]:
    return ["bash", "-c", script]


def test_two_gpu_job_sees_exactly_its_two_gpus(queue: BatchQueue, tmp_path: Path) -> None:
    t0 = time.monotonic()
    job = queue.submit(JobRequest("refine-2gpu", bash('echo "CVD=$CUDA_VISIBLE_DEVICES JOB=$SLURM_JOB_GPUS"; nproc'),
                                  str(tmp_path / "job"), Resources(cpus=2, gpus=2, memory_mb=1000,
                                                                   walltime_s=600)))
    status = queue.wait(job.job_id, timeout_s=60)
    elapsed = time.monotonic() - t0
    assert status.state is JobState.DONE and status.exit_code == 0, status
    output = (tmp_path / "job" / "job.out").read_text()
    assert "CVD=0,1 JOB=0,1" in output
    assert (tmp_path / "job" / "exit_code").read_text() == "0\n"
    assert "#SBATCH --gres=gpu:2" in (tmp_path / "job" / "job.sh").read_text()
    record = accounting_fields(status, "ci-slurm")
    assert record["job_id"] == job.job_id and record["nodes"] == "localhost" and record["state"] == "done"
    print(f"2-GPU batch job: submit -> settled in {elapsed:.2f} s, {queue.poller.stats}")


def test_batched_status_matches_squeue(queue: BatchQueue, tmp_path: Path) -> None:
    jobs = [queue.submit(JobRequest(f"hold-{i}", ["sleep", "30"], str(tmp_path / f"j{i}"),
                                    Resources(cpus=1, gpus=1))) for i in range(3)]  # 2 GPUs: one waits
    ids = [j.job_id for j in jobs]
    try:
        deadline = time.monotonic() + 20
        while True:
            before = queue.poller.stats.status_queries
            queue.poller.poll_once()
            assert queue.poller.stats.status_queries == before + 1  # one squeue for all jobs
            mine = {i: queue.poller.status(i) for i in ids}
            states = sorted(s.state.value for s in mine.values())
            if states == ["pending", "running", "running"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        theirs = squeue(ids)
        assert states == ["pending", "running", "running"], theirs
        for job_id, status in mine.items():
            native, partition, node, gres, reason = theirs[job_id][1:]
            assert (status.native_state, status.queue, status.nodes or "", status.gpus) == (
                native, partition, node, gres.removeprefix("gres:"))
            if status.state is JobState.PENDING:  # waiting for a GPU, or behind another waiting job
                assert status.reason == reason and reason in ("Resources", "Priority")
    finally:
        queue.cancel(ids)
    for job_id in ids:
        assert queue.wait(job_id, timeout_s=30).state is JobState.CANCELLED


def test_cancel_reaches_the_queue(queue: BatchQueue, tmp_path: Path) -> None:
    job = queue.submit(JobRequest("long", bash("echo started; exec sleep 120"), str(tmp_path / "j"), Resources()))
    deadline = time.monotonic() + 20
    while "started" not in _read(tmp_path / "j" / "job.out"):
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.1)
    queue.cancel([job.job_id])
    status = queue.wait(job.job_id, timeout_s=30)
    assert status.state is JobState.CANCELLED
    assert squeue([job.job_id])[job.job_id][1] == "CANCELLED"
    # the job script passed TERM on to the step and recorded it
    assert (tmp_path / "j" / "exit_code").read_text() == "143\n"


def test_failed_job_is_reconciled_with_exit_code(queue: BatchQueue, tmp_path: Path,
                                                 slurm_env: dict[str, str]) -> None:
    job = queue.submit(JobRequest("fails", bash("echo bad >&2; exit 3"), str(tmp_path / "j"), Resources()))
    status = queue.wait(job.job_id, timeout_s=60)
    assert status.state is JobState.FAILED and status.exit_code == 3
    if accounting_on(slurm_env):
        assert status.source == "accounting" and status.accounting is not None
        assert status.accounting.exit_code == 3 and status.accounting.nodes == "localhost"
        assert status.accounting.elapsed_s is not None and status.accounting.cpu_time_s is not None
    else:
        assert status.source == "queue" and queue.poller.stats.accounting_queries >= 1


def test_job_gone_from_squeue_is_settled_from_its_sentinel_not_assumed(queue: BatchQueue, tmp_path: Path) -> None:
    # Job ids squeue no longer knows (aged out after MinJobAge): squeue exits 1 with
    # "Invalid job id specified", which is an answer, and the poller reconciles.
    done_dir, bad_dir, unknown_dir = tmp_path / "done", tmp_path / "bad", tmp_path / "unknown"
    for folder, code in ((done_dir, "0"), (bad_dir, "7")):
        folder.mkdir()
        (folder / "exit_code").write_text(code + "\n")
    unknown_dir.mkdir()
    poller = queue.poller
    poller.settings = replace(poller.settings, accounting_grace_s=1.0)  # sacct will never know these ids
    for job_id, folder in (("9999001", done_dir), ("9999002", bad_dir), ("9999003", unknown_dir)):
        poller.watch(job_id, job_dir=str(folder))
    deadline = time.monotonic() + 15
    while not (poller.status("9999001").is_final and poller.status("9999002").is_final):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (poller.status("9999001").state, poller.status("9999002").exit_code) == (JobState.DONE, 7)
    lingering = poller.status("9999003")
    assert not lingering.is_final and "left the queue" in lingering.reason  # never assumed finished
    for job_id in ("9999001", "9999002", "9999003"):
        poller.forget(job_id)


def test_squeue_failing_marks_nothing_failed(queue: BatchQueue, tmp_path: Path, slurm_env: dict[str, str]) -> None:
    dead = tmp_path / "dead"
    dead.mkdir()
    conf = Path(slurm_env["SLURM_CONF"]).read_text()
    # Same cluster, but the controller port nothing listens on: squeue cannot reach it.
    (dead / "slurm.conf").write_text("\n".join("SlurmctldPort=1" if line.startswith("SlurmctldPort=") else line
                                               for line in conf.splitlines()) + "\n")
    job = queue.submit(JobRequest("through-outage", ["sleep", "3"], str(tmp_path / "j"), Resources()))
    real_runner = queue.poller.runner
    settings = queue.poller.settings
    queue.poller.settings = replace(settings, command_timeout_s=1.0)
    queue.poller.runner = LocalRunner(env={"SLURM_CONF": str(dead / "slurm.conf")})
    try:
        # The job ends during the outage, and the poller fails to ask at least once after that:
        # nothing is settled meanwhile (waits for those events, not for a fixed window).
        ended, failures_after_end, deadline = tmp_path / "j" / "exit_code", None, time.monotonic() + 120
        while failures_after_end is None or queue.poller.stats.status_failures < max(failures_after_end, 2):
            assert not queue.poller.status(job.job_id).is_final
            if failures_after_end is None and ended.exists():
                failures_after_end = queue.poller.stats.status_failures + 1
            assert time.monotonic() < deadline, f"job ended: {ended.exists()}, {queue.poller.stats}"
            time.sleep(0.2)
        assert not queue.poller.status(job.job_id).is_final
        assert "Unable to contact" in (queue.poller.stats.last_error or "") or "did not answer" in (
            queue.poller.stats.last_error or "")
    finally:
        queue.poller.runner = real_runner
        queue.poller.settings = settings
    status = queue.wait(job.job_id, timeout_s=60)
    assert status.state is JobState.DONE and status.exit_code == 0


def test_limits_and_refusals_are_clear(queue: BatchQueue, tmp_path: Path) -> None:
    with pytest.raises(ResourceLimitError, match="2 nodes, the queue allows 1 per job"):
        queue.submit(JobRequest("too-many-gpus", ["true"], str(tmp_path / "a"), Resources(gpus=3)))
    bad = JobRequest("bad-partition", ["true"], str(tmp_path / "b"), Resources(), queue="debug")
    host = queue.host
    queue.host = replace(host, extra_directives=("--partition=nosuch",))
    queue.backend.host = queue.host
    try:
        with pytest.raises(JobSubmitError, match="refused job 'bad-partition'.*(nosuch|partition)"):
            queue.submit(bad)
    finally:
        queue.host = queue.backend.host = host


@pytest.mark.parametrize("folder", ["my proj #1 'x'", "back\\slash 100%j \"q\""])
def test_project_path_that_sbatch_must_read_back(queue: BatchQueue, tmp_path: Path, folder: str) -> None:
    # A project whose path has a space, a #, quotes, a backslash or a %: sbatch reads the
    # --chdir and --output values back exactly, and the output lands in the step's own job.out.
    project = tmp_path / folder
    job_dir = project / "runs" / "r1" / "jobs" / "step.a1"
    job_dir.mkdir(parents=True)
    script = 'pwd; echo "job=$ORCH_JOB_ID"; echo to-stderr >&2'
    job = queue.submit(JobRequest("odd path", bash(script), str(job_dir), Resources(), workdir=str(project)))
    text = (job_dir / "job.sh").read_text()
    assert "#SBATCH --chdir=" in text and "#SBATCH --output=" in text  # told to sbatch, not worked around
    status = queue.wait(job.job_id, timeout_s=60)
    assert status.state is JobState.DONE and status.exit_code == 0, status
    assert (job_dir / "job.out").read_text() == f"{project}\njob={job.job_id}\nto-stderr\n"
    shown = subprocess.run(["scontrol", "show", "job", job.job_id], capture_output=True, text=True).stdout
    assert f"WorkDir={project}" in shown or not shown  # (scontrol forgets the job after MinJobAge)
    strays = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()
                    and p.parent != job_dir)
    assert strays == [], strays  # no output file anywhere else (a misread path would leave one)


def test_hosts_check_against_the_real_queue(host: HostConfig) -> None:
    checks = {c.name: c for c in check_host(host)}
    assert all(c.ok for c in checks.values()), checks
    assert "queues debug exist" in checks["queue answers"].detail
    assert "debug: 2" in checks["GPUs seen"].detail  # the two gres GPUs of the test node
    wrong = replace(host, queues={"nosuch": replace(host.queue(), name="nosuch")}, default_queue="nosuch")
    assert not {c.name: c for c in check_host(wrong)}["queue answers"].ok


def test_orch_queue_matches_squeue(queue: BatchQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORCH_HOSTS", str(REPO / "hosts" / "ci-test.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    project = Project.create(tmp_path / "proj")
    jobs = [queue.submit(JobRequest(f"q{i}", ["sleep", "30"], str(tmp_path / f"j{i}"), Resources(gpus=1)))
            for i in range(3)]
    try:
        with project.open_store() as store:
            run_id = store.runs.create("testkit.fanout", {}, name="fan").id
            ids = store.steps.add(run_id, [{"name": f"step{i}", "func": "f"} for i in range(3)])
            for i, job in enumerate(jobs):
                put_step(store, ids[f"step{i}"], StepState.QUEUED, host="ci-slurm", job_id=job.job_id)
        def placed() -> bool:  # by SLURM, each job: running, or waiting with a reason (not yet looked at: "None")
            rows = squeue([j.job_id for j in jobs]).values()
            return len(rows) == 3 and all(r[1] == "RUNNING" or (r[1] == "PENDING" and r[5] != "None") for r in rows)

        deadline = time.monotonic() + 60
        while not placed():
            assert time.monotonic() < deadline, squeue([j.job_id for j in jobs])
            time.sleep(0.2)
        assert main(["queue", "ci-slurm", "--project", str(project.path), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)["jobs"]
        theirs = squeue([j.job_id for j in jobs])
        assert len(shown) == 3
        for row in shown:
            native, partition, node, gres, reason = theirs[row["job_id"]][1:]
            assert row["run"] == "fan" and row["step"].startswith("step")
            assert (row["partition"], row["node"] or "", row["gpus"]) == (partition, node, gres.removeprefix("gres:"))
            assert row["state"] == {"RUNNING": "running", "PENDING": "pending"}[native]
            assert row["reason"] == (None if reason == "None" else reason)
        assert main(["queue", "--project", str(project.path)]) == 0
        table = capsys.readouterr().out
        assert all(j.job_id in table for j in jobs)
    finally:
        queue.cancel([j.job_id for j in jobs])


def test_pilots_run_dask_tasks(host: HostConfig, tmp_path: Path) -> None:
    from distributed import Client

    t0 = time.monotonic()
    logs = tmp_path / "my proj #1 'x'" / "pilots"  # dask-jobqueue would write it unquoted: the prologue does
    cluster = start_pilot_cluster(host, adapt=False, log_directory=logs,
                                  extra_kwargs={"local_directory": str(tmp_path / "dask")})
    try:
        assert "--gres" not in cluster.job_script() and "#SBATCH -p debug" in cluster.job_script()
        cluster.scale(jobs=2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            first_worker = time.monotonic() - t0
            futures = client.map(lambda i: (i * i, os.environ.get("SLURM_JOB_ID"), os.environ.get("ORCH_JOB_ID")),
                                 range(40), resources={"cpus": 1})
            results = client.gather(futures)
            assert [r[0] for r in results] == [i * i for i in range(40)]
            job_ids = {r[1] for r in results}
            assert job_ids and None not in job_ids  # ran inside SLURM jobs
            assert all(r[2] == r[1] for r in results)  # under the generic name too
            workers = client.scheduler_info()["workers"].values()
            assert all(w["resources"] == {"cpus": 1.0} for w in workers)
        print(f"SLURM pilots: 2 workers {first_worker:.2f} s after start")
        names = {p.name for p in logs.iterdir()}  # each pilot's log, named by its job id
        assert {f"orch-pilot-ci-slurm-{j}.log" for j in job_ids} <= names
        assert all(name.startswith("orch-pilot-ci-slurm-") for name in names)
    finally:
        cluster.close()
    deadline = time.monotonic() + 20
    while any(state[1] in ("RUNNING", "PENDING") for state in squeue(sorted(job_ids)).values()):
        assert time.monotonic() < deadline, "pilot jobs outlived cluster.close()"
        time.sleep(0.2)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
