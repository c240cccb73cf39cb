"""Nothing stuck, the logic: limits read from hosts files, the poller's outage clock, the host
health written only on change, stranded tasks ended on a real (in-process) dask scheduler, the
pilot watch's decisions, the pilot log's error lines.

The end-to-end cases (real sshd, real SLURM, the daemon as a process) are in
``tests/integration/test_nothing_stuck.py``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster
from test_hosts_poller import HOST, Clock, ReplayRunner
from waiting import wait_until

from orchestrator.hosts.config.loader import parse_hosts
from orchestrator.hosts.config.model import LivenessConfig
from orchestrator.hosts.config.units import parse_period_s
from orchestrator.hosts.errors import HostConfigError
from orchestrator.hosts.queues import backend_for
from orchestrator.hosts.queues.pilot_logs import first_error_lines
from orchestrator.hosts.queues.poller import PollSettings, QueuePoller
from orchestrator.project import Project
from orchestrator.scheduler.executors.queue_watch import PILOTS_RETRY_AFTER_S, PilotWatch, QueueHostWatch
from orchestrator.scheduler.executors.watch import (
    ClusterView,
    HealthReport,
    StepStranded,
    StrandedTasks,
    WorkerSeen,
    cluster_view,
    fail_tasks,
)
from orchestrator.store.host_health import HostState

SLURM_HOST = """
[hosts.c]
kind = "slurm"
default_queue = "q"
[hosts.c.queues.q]
cores = 4
"""


# ---------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(("text", "seconds"), [(30, 30.0), (2.5, 2.5), ("30s", 30.0), ("3m", 180.0), ("2h", 7200.0),
                                               ("1d", 86400.0), ("00:03:00", 180.0), (" 90 ", 90.0)])
def test_periods_as_people_write_them(text: Any, seconds: float) -> None:
    assert parse_period_s(text) == seconds


@pytest.mark.parametrize("text", [0, -1, "0s", "soon", "3 minutes", True, 10**400, "9" * 400])
def test_bad_periods_are_refused(text: Any) -> None:
    with pytest.raises(ValueError, match="period"):
        parse_period_s(text)


def test_liveness_and_pilot_limits_from_the_hosts_file() -> None:
    text = SLURM_HOST + """
[hosts.c.pilot]
connect_timeout = "90s"
connect_failures = 5
[hosts.c.liveness]
unreachable_after = "5m"
no_worker_limit = 600
worker_silence = "00:01:00"
lost_job_after = "1m"
"""
    host = parse_hosts(text, Path("h.toml"))["c"]
    assert (host.pilot.connect_timeout_s, host.pilot.connect_failures) == (90.0, 5)
    assert host.liveness == LivenessConfig(unreachable_after_s=300.0, no_worker_s=600.0, worker_silence_s=60.0,
                                           lost_job_after_s=60.0)
    assert host.to_dict()["liveness"]["unreachable_after_s"] == 300.0
    assert parse_hosts(SLURM_HOST, Path("h.toml"))["c"].liveness == LivenessConfig()  # the defaults


def test_bad_limits_name_the_file_host_and_key() -> None:
    text = SLURM_HOST + """
[hosts.c.pilot]
connect_failures = 0
[hosts.c.liveness]
unreachable_after = "soon"
lost_jobs_after = "1m"
"""
    with pytest.raises(HostConfigError) as caught:
        parse_hosts(text, Path("h.toml"))
    message = str(caught.value)
    assert "h.toml: host 'c': key 'liveness.unreachable_after': expected a period" in message
    assert "key 'liveness.lost_jobs_after': unknown key; did you mean 'lost_job_after'?" in message
    assert "key 'pilot.connect_failures'" in message


# ---------------------------------------------------------------------------------------- the poller's outage clock
def test_poller_says_since_when_the_queue_has_not_answered(clock: Clock) -> None:
    runner = ReplayRunner()
    poller = QueuePoller(backend_for(HOST), runner, settings=PollSettings(fast_s=1, max_s=30), clock=clock)
    poller.watch("31")
    runner.squeue = "31|RUNNING|debug|0:05|n1|N/A|None\n"
    poller.poll_once()
    assert poller.stats.failing_since is None and poller.stats.last_answer_s == 1000.0
    runner.squeue = "ERR:slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
    clock.now = 1010.0
    poller.poll_once()
    clock.now = 1050.0
    poller.poll_once()
    assert poller.stats.failing_since == 1010.0  # the first failure of the outage, not the last
    runner.squeue = "31|RUNNING|debug|0:55|n1|N/A|None\n"
    clock.now = 1060.0
    poller.poll_once()
    assert poller.stats.failing_since is None and poller.stats.last_answer_s == 1060.0


def test_pilot_jobs_share_the_query_but_are_not_the_hosts_batch_jobs(clock: Clock) -> None:
    runner = ReplayRunner()
    poller = QueuePoller(backend_for(HOST), runner, clock=clock)
    poller.watch("41")
    poller.watch("42", pilot=True)
    runner.squeue = "41|RUNNING|debug|0:05|n1|N/A|None\n42|PENDING|debug|0:00||N/A|Priority\n"
    poller.poll_once()
    assert [c for c in runner.calls if c[0] == "squeue"][0][2] == "--jobs=41,42"  # one query for both
    assert set(poller.snapshot()) == {"41"} and set(poller.snapshot(pilots=True)) == {"42"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


# ---------------------------------------------------------------------------------------- host health
@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def test_health_is_written_only_when_it_changes(project: Project) -> None:
    with project.open_store() as store:
        report = HealthReport(store, "c")
        report.ok("its queue answers")
        first = store.hosts.get("c")
        assert first is not None and first.state is HostState.OK
        report.ok("its queue answers")
        assert store.hosts.get("c") == first  # nothing written
        report.unreachable("status command failing since 10:00")
        down = store.hosts.get("c")
        assert down is not None and down.state is HostState.UNREACHABLE and down.since >= first.since
        report.unreachable("status command failing since 10:00")
        assert store.hosts.get("c") == down
        report.ok("its queue answers")
        up = store.hosts.get("c")
        assert up is not None and up.state is HostState.OK and up.message == "its queue answers"
        report.note("pilot job 7 never connected")
        noted = store.hosts.get("c")
        assert noted is not None and noted.state is HostState.OK and noted.since == up.since
        assert noted.message == "pilot job 7 never connected"
    with project.open_store() as store:  # a new scheduler starts from what the store says
        assert HealthReport(store, "c").state is HostState.OK


def test_queue_host_unreachable_after_its_grace_period_then_ok(project: Project, clock: Clock) -> None:
    host = parse_hosts(SLURM_HOST + '[hosts.c.liveness]\nunreachable_after = "60s"\n', Path("h.toml"))["c"]
    runner = ReplayRunner()
    poller = QueuePoller(backend_for(host), runner, clock=clock)
    poller.watch("51")
    with project.open_store() as store:
        watch = QueueHostWatch(host, poller, HealthReport(store, "c"), clock=clock)
        runner.squeue = "51|RUNNING|debug|0:05|n1|N/A|None\n"
        poller.poll_once()
        watch.look()
        assert store.hosts.get("c").state is HostState.OK  # type: ignore[union-attr]
        runner.squeue = "ERR:slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
        clock.now += 5
        poller.poll_once()
        clock.now += 50  # 50 s into the outage: still within the grace period
        watch.look()
        assert store.hosts.get("c").state is HostState.OK  # type: ignore[union-attr]
        clock.now += 15
        watch.look()
        down = store.hosts.get("c")
        assert down is not None and down.state is HostState.UNREACHABLE
        assert "status command has failed since" in (down.message or "")
        assert "Unable to contact slurm controller" in (down.message or "")
        assert "unreachable_after = 60 s" in (down.message or "")
        runner.squeue = "51|RUNNING|debug|1:05|n1|N/A|None\n"
        poller.poll_once()
        clock.now += 2
        watch.look()
        assert store.hosts.get("c").state is HostState.OK  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------- stranded tasks
@pytest.fixture
def cluster() -> Any:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="inproc://",
                               dashboard_address=None, silence_logs=logging.CRITICAL)
    client = Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_a_task_no_worker_can_take_fails_after_the_limit(cluster: Client) -> None:
    waiting = cluster.submit(time.sleep, 0, key="step-1-a1-1", resources={"gpus": 1}, pure=False)
    runs = cluster.submit(sum, [1, 2], key="step-2-a1-1", pure=False)
    assert runs.result(timeout=30) == 3
    views: list[ClusterView] = []

    def stranded_seen() -> bool:
        view = cluster_view(cluster)
        if view is None:
            return False
        views.append(view)
        return "step-1-a1-1" in view.stranded
    wait_until(stranded_seen, "the task in the no-worker state")
    assert views[-1].stranded["step-1-a1-1"] == {"gpus": 1.0} and len(views[-1].workers) == 1
    stranded = StrandedTasks("box", lambda: 0.5)
    start = time.monotonic()
    while waiting.status == "pending":
        stranded.check(cluster)
        assert time.monotonic() - start < 30, "the stranded task was never failed"
        time.sleep(0.1)
    error = waiting.exception(timeout=10)
    assert isinstance(error, StepStranded), error
    assert "host 'box': no worker could take the step for 0 s" in str(error) and "gpus=1" in str(error)
    assert "no_worker_limit" in str(error)


def test_only_tasks_still_waiting_are_failed(cluster: Client) -> None:
    done = cluster.submit(sum, [1, 2], key="step-3-a1-1", pure=False)
    assert done.result(timeout=30) == 3
    assert fail_tasks(cluster, ["step-3-a1-1", "no-such-key"], "gone") == []
    assert done.status == "finished"


def test_a_view_names_the_workers_and_how_long_since_each_was_heard(cluster: Client) -> None:
    view = cluster_view(cluster)
    assert view is not None and len(view.workers) == 1
    (seen,) = view.workers.values()
    assert 0 <= seen.silent_s < 30


# ---------------------------------------------------------------------------------------- pilots
class FakeJobqueueCluster:
    """What the pilot watch reads of dask-jobqueue's cluster: its jobs by name, and its loop."""

    def __init__(self) -> None:
        self.workers: dict[str, Any] = {}
        self.scheduler_address = "tls://10.0.0.1:8786"
        self.closed: list[str] = []
        self.loop = SimpleNamespace(add_callback=self._run)

    def _run(self, coroutine_function: Any) -> None:
        import asyncio

        asyncio.run(coroutine_function())

    def add(self, name: str, job_id: str) -> None:
        async def close() -> None:
            self.closed.append(job_id)

        self.workers[name] = SimpleNamespace(job_id=job_id, close=close)


def pilot_host(timeout: str = "30s", failures: int = 2) -> Any:
    return parse_hosts(SLURM_HOST + f'[hosts.c.pilot]\nconnect_timeout = "{timeout}"\n'
                                    f"connect_failures = {failures}\n", Path("h.toml"))["c"]


def test_pilot_whose_worker_never_connects_is_cancelled_then_the_host_gives_up(tmp_path: Path, clock: Clock) -> None:
    runner = ReplayRunner()
    poller = QueuePoller(backend_for(HOST), runner, clock=clock)
    jobqueue = FakeJobqueueCluster()
    logs = tmp_path / "pilots"
    logs.mkdir()
    (logs / "orch-pilot-c-61.err").write_text("starting\nbash: /opt/py/bin/python3: No such file or directory\n")
    watch = PilotWatch(pilot_host(), jobqueue, client=None, poller=poller, log_dir=logs,  # type: ignore[arg-type]
                       python="/opt/py/bin/python3", clock=clock)
    nobody = ClusterView()
    jobqueue.add("SLURMCluster-0", "61")
    assert watch.look(nobody, clock.now) == [] and watch.alive()
    runner.squeue = "61|RUNNING|debug|0:01|n1|N/A|None\n"
    poller.poll_once()
    assert watch.look(nobody, clock.now) == []  # running: its connect_timeout starts now
    clock.now += 29
    assert watch.look(nobody, clock.now) == []
    clock.now += 2
    (report,) = watch.look(nobody, clock.now)
    assert "pilot job 61 of host 'c' has run for 31 s" in report and "it was cancelled" in report
    assert "No such file or directory" in report and "tls://10.0.0.1:8786" in report and "/opt/py/bin/python3" in report
    assert jobqueue.closed == ["61"] and "SLURMCluster-0" not in jobqueue.workers  # cancelled, dropped
    assert watch.failures == 1 and not watch.broken()
    # dask-jobqueue starts another; it ends before its worker connects: the second failure in a row
    jobqueue.add("SLURMCluster-0", "62")
    runner.squeue = "62|FAILED|debug|0:01|n1|N/A|NonZeroExitCode\n"
    watch.look(nobody, clock.now)
    poller.poll_once()
    clock.now += 3
    watch.look(nobody, clock.now)
    clock.now += 3
    (report,) = watch.look(nobody, clock.now)
    assert "pilot job 62" in report and "ended (FAILED" in report and "before its dask worker connected" in report
    assert watch.broken() and "2 pilot job(s) in a row never connected" in watch.broken_message
    clock.now += PILOTS_RETRY_AFTER_S
    assert not watch.broken() and watch.failures == 1  # tried again; one more failure stops them again


def test_a_pilot_that_connects_resets_the_count(clock: Clock, tmp_path: Path) -> None:
    runner = ReplayRunner()
    poller = QueuePoller(backend_for(HOST), runner, clock=clock)
    jobqueue = FakeJobqueueCluster()
    watch = PilotWatch(pilot_host(), jobqueue, client=None, poller=poller, log_dir=tmp_path,  # type: ignore[arg-type]
                       python="python3", clock=clock)
    watch.failures = 1
    jobqueue.add("SLURMCluster-3", "71")
    runner.squeue = "71|RUNNING|debug|0:01|n1|N/A|None\n"
    watch.look(ClusterView(), clock.now)
    poller.poll_once()
    connected = ClusterView({"tls://10.0.0.2:1": WorkerSeen("SLURMCluster-3-0", 0.1)})
    clock.now += 600
    assert watch.look(connected, clock.now) == [] and watch.failures == 0 and jobqueue.closed == []


# ---------------------------------------------------------------------------------------- pilot logs
def test_first_error_lines_of_a_pilots_log(tmp_path: Path) -> None:
    (tmp_path / "orch-pilot-c-222.err").write_text(
        "Lmod: loading python/3.11\nERROR: Unable to locate a modulefile for 'relion/9'\n"
        "distributed.worker - INFO - Waiting to connect to: tls://10.0.0.1:8786\n"
        "OSError: Timed out trying to connect to tls://10.0.0.1:8786 after 30 s\n")
    (tmp_path / "orch-pilot-c-22.err").write_text("ERROR: another job's\n")  # 22 is not 222
    (tmp_path / "orch-pilot-c.o333").write_text("all good\nstill good\n")  # Grid Engine's naming
    lines, files = first_error_lines(tmp_path, "222")
    assert [f.name for f in files] == ["orch-pilot-c-222.err"]
    assert lines == ["ERROR: Unable to locate a modulefile for 'relion/9'",
                     "OSError: Timed out trying to connect to tls://10.0.0.1:8786 after 30 s"]
    assert first_error_lines(tmp_path, "333")[0] == ["all good", "still good"]  # no error line: its end
    assert first_error_lines(tmp_path, "444") == ([], [])
    assert first_error_lines(tmp_path / "none", "1") == ([], [])


def test_the_local_host_fails_a_stranded_step_after_its_configured_limit(cluster: Client, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.scheduler.executors.local import ConfiguredLocalHost, LocalExecutor

    project = Project.create(tmp_path / "proj")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[hosts.local]\nkind = "local"\n[hosts.local.liveness]\nno_worker_limit = "1s"\n')
    monkeypatch.setenv("ORCH_HOSTS", str(hosts))
    executor = LocalExecutor(cluster, configured=ConfiguredLocalHost(project.path))
    waiting = cluster.submit(time.sleep, 0, key="step-9-a1-1", resources={"gpus": 4}, pure=False)
    start = time.monotonic()
    while waiting.status == "pending":
        executor.tick()
        assert time.monotonic() - start < 30, "the local host never failed the stranded step"
        time.sleep(0.1)
    error = waiting.exception(timeout=10)
    assert isinstance(error, StepStranded) and "host 'local'" in str(error) and "gpus=4" in str(error), error
    assert time.monotonic() - start >= 1.0  # not before its limit
