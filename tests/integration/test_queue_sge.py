"""Batch jobs, status, cancel, qacct reconciliation and pilots against the REAL test Grid Engine.

Grid Engine comes from ``tests/infra/sge.sh`` (one host, all.q with 8 slots, parallel
environment smp). Finished jobs leave ``qstat`` at once, so every job here goes through the
"vanished from the queue" path: settled from qacct, with the exit code from the sentinel.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from infra.services import require_service

from orchestrator.hosts.check import check_host
from orchestrator.hosts.config.loader import load_hosts_file
from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.queues.base import JobRequest, JobState
from orchestrator.hosts.queues.jobs import BatchQueue, accounting_fields
from orchestrator.hosts.queues.pilots import start_pilot_cluster
from orchestrator.hosts.queues.poller import PollSettings
from orchestrator.protocol.steps import Resources

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FAST = PollSettings(fast_s=0.2, max_s=2, command_timeout_s=10, accounting_grace_s=60,
                    lost_after_s=30)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> HostConfig:
    for key, value in require_service("sge").items():
        monkeypatch.setenv(key, value)
    return load_hosts_file(REPO / "hosts" / "ci-test.toml")["ci-sge"]


@pytest.fixture
def queue(host: HostConfig):  # type: ignore[no-untyped-def]
    with BatchQueue(host, settings=FAST) as batch:
        yield batch


def bash(script: str) -> list[str]:
    return ["bash", "-c", script]


def grid_engine_report(job_id: str, job_dir: Path) -> str:
    """What Grid Engine and the machine say about a job that did not end in time: its qstat
    page, the files it wrote, the shepherd's trace, the processes under it and the execd's
    last messages (so a failure in CI can be read without the machine)."""
    def run(*command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
        return f"$ {' '.join(command)}\n{done.stdout}{done.stderr}"

    parts = [run("qstat", "-j", job_id), run("ps", "-eo", "pid,ppid,pgid,stat,etimes,cmd")]
    for path in sorted(job_dir.glob("*")):
        parts.append(f"--- {path}\n{path.read_text(errors='replace')[-2000:]}")
    conf = subprocess.run(["qconf", "-sconf"], capture_output=True, text=True, timeout=20).stdout
    spool = next((line.split()[1] for line in conf.splitlines() if line.startswith("execd_spool_dir")), None)
    if spool:
        traces = sorted(Path(spool).glob(f"*/active_jobs/{job_id}.*/trace"))
        for path in traces + sorted(Path(spool).glob("*/messages")):
            parts.append(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


def test_parallel_job_runs_and_is_settled_from_qacct(queue: BatchQueue, tmp_path: Path) -> None:
    t0 = time.monotonic()
    job = queue.submit(JobRequest("smp job", bash('echo "slots=$NSLOTS pe=$PE"'), str(tmp_path / "j"),
                                  Resources(cpus=2, walltime_s=600)))
    status = queue.wait(job.job_id, timeout_s=60)
    elapsed = time.monotonic() - t0
    assert status.state is JobState.DONE and status.exit_code == 0, status
    assert "slots=2 pe=smp" in (tmp_path / "j" / "job.out").read_text()
    assert status.source == "accounting" and status.accounting is not None
    assert status.accounting.nodes and status.accounting.elapsed_s is not None
    assert accounting_fields(status, "ci-sge")["max_memory_mb"] is not None
    print(f"SGE batch job: submit -> settled from qacct in {elapsed:.2f} s, {queue.poller.stats}")


def test_failed_job_keeps_its_exit_code(queue: BatchQueue, tmp_path: Path) -> None:
    job = queue.submit(JobRequest("fails", bash("exit 3"), str(tmp_path / "j"), Resources()))
    status = queue.wait(job.job_id, timeout_s=60)
    assert (status.state, status.exit_code) == (JobState.FAILED, 3)
    assert (tmp_path / "j" / "exit_code").read_text() == "3\n"


def test_status_matches_qstat_and_qdel_reaches_the_queue(queue: BatchQueue, tmp_path: Path) -> None:
    jobs = [queue.submit(JobRequest(f"wide{i}", ["sleep", "60"], str(tmp_path / f"j{i}"), Resources(cpus=4)))
            for i in range(3)]  # 8 slots: two run, one waits
    ids = [j.job_id for j in jobs]
    try:
        deadline = time.monotonic() + 20
        while True:
            queue.poller.poll_once()
            mine = {i: queue.poller.status(i) for i in ids}
            if sorted(s.state.value for s in mine.values()) == ["pending", "running", "running"]:
                break
            assert time.monotonic() < deadline, mine
            time.sleep(0.2)
        # A job may move (t -> r) between our query and qstat's: compare snapshots until two agree.
        for _ in range(10):
            out = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True, check=True).stdout
            theirs = {line.split()[0]: line.split()[4] for line in out.splitlines()[2:] if line.split()}
            if {i: mine[i].native_state for i in ids} == {i: theirs.get(i) for i in ids}:
                break
            time.sleep(0.3)
            queue.poller.poll_once()
            mine = {i: queue.poller.status(i) for i in ids}
        assert {i: mine[i].native_state for i in ids} == {i: theirs.get(i) for i in ids}
        running = [s for s in mine.values() if s.state is JobState.RUNNING]
        assert all(s.queue == "all.q" and s.nodes for s in running)
    finally:
        queue.cancel(ids)
    for job_id in ids:
        assert queue.wait(job_id, timeout_s=60).state is JobState.CANCELLED
    out = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True, check=True).stdout
    assert not any(line.split()[0] in ids for line in out.splitlines()[2:] if line.split())


@pytest.mark.parametrize("folder", ["my proj #1 'x'", "plain project"])
def test_project_path_that_qsub_cannot_read(queue: BatchQueue, tmp_path: Path, folder: str) -> None:
    # qsub cuts a #$ line at its first # and drops every quote: a path with them is not written
    # on a directive; the job script changes to it and writes its output there itself.
    project = tmp_path / folder
    job_dir = project / "runs" / "r1" / "jobs" / "step.a1"
    job_dir.mkdir(parents=True)
    script = 'pwd; echo "job=$ORCH_JOB_ID"; echo to-stderr >&2'
    job = queue.submit(JobRequest("odd path", bash(script), str(job_dir), Resources(), workdir=str(project)))
    text = (job_dir / "job.sh").read_text()
    if "#" in folder:
        assert "#$ -j y -o /dev/null\n" in text and "#$ -wd" not in text
    else:
        assert f'#$ -j y -o "{job_dir}/job.out"\n' in text and f'#$ -wd "{project}"\n' in text
    status = queue.wait(job.job_id, timeout_s=60)
    assert status.state is JobState.DONE and status.exit_code == 0, (status, grid_engine_report(job.job_id, job_dir))
    assert (job_dir / "job.out").read_text() == f"{project}\njob={job.job_id}\nto-stderr\n"
    strays = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()
                    and p.parent != job_dir)
    assert strays == [], strays
    home = Path.home()
    assert not list(home.glob(f"*.o{job.job_id}")) and not list(home.glob(f"*.e{job.job_id}"))


def test_hosts_check_against_the_real_queue(host: HostConfig) -> None:
    checks = {c.name: c for c in check_host(host)}
    assert all(c.ok for c in checks.values()), checks
    assert "queues all.q exist" in checks["queue answers"].detail
    wrong = replace(host, queues={"nosuch.q": replace(host.queue(), name="nosuch.q")}, default_queue="nosuch.q")
    assert not {c.name: c for c in check_host(wrong)}["queue answers"].ok


def test_pilots_run_dask_tasks(host: HostConfig, tmp_path: Path) -> None:
    from distributed import Client

    t0 = time.monotonic()
    cluster = start_pilot_cluster(replace(host, pilot=replace(host.pilot, max_pilots=2)),
                                  log_directory=tmp_path / "logs",
                                  extra_kwargs={"local_directory": str(tmp_path / "dask")})
    try:
        with Client(cluster) as client:
            futures = client.map(lambda i: (i + 1, os.environ.get("JOB_ID"), os.environ.get("ORCH_JOB_ID")),
                                 range(30), resources={"cpus": 1})
            results = client.gather(futures)
            assert [r[0] for r in results] == list(range(1, 31))
            assert None not in {r[1] for r in results}  # ran inside Grid Engine jobs
            assert all(r[2] == r[1] for r in results)  # under the generic name too
            print(f"SGE pilots (adaptive): 30 tasks done {time.monotonic() - t0:.2f} s after start")
    finally:
        cluster.close()
