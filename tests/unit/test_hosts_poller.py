"""The shared poller's logic: batching, adaptive interval, transient failures, reconciliation.

The runner here replays real SLURM answers (recorded on the test cluster) so that every
branch can be reached on demand with a fake clock; the integration tests drive the same
poller against the real SLURM and Grid Engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator.hosts.config.model import HostConfig, QueueConfig
from orchestrator.hosts.errors import QueueCommandError
from orchestrator.hosts.queues import backend_for
from orchestrator.hosts.queues.base import JobState
from orchestrator.hosts.queues.poller import PollSettings, QueuePoller
from orchestrator.hosts.runner import CommandResult

HOST = HostConfig(name="c", kind="slurm", source=Path("/t/hosts.toml"),
                  queues={"debug": QueueConfig(name="debug")}, default_queue="debug")
NO_ACCOUNTING = "Slurm accounting storage is disabled\n"
SETTINGS = PollSettings(fast_s=1, max_s=30, growth=2, accounting_grace_s=10, lost_after_s=60)


class ReplayRunner:
    """Answers squeue/sacct/scancel from the ``squeue``/``sacct`` texts the test sets."""

    def __init__(self, files: dict[str, str] | None = None) -> None:
        self.squeue: str | Exception = ""
        self.sacct: str | None = None  # None: accounting disabled
        self.calls: list[list[str]] = []
        self.files = files or {}

    def run(self, argv: Sequence[str], *, input_text: str | None = None, timeout_s: float = 30) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        if argv[0] == "squeue":
            if isinstance(self.squeue, Exception):
                raise self.squeue
            if self.squeue.startswith("ERR:"):
                return CommandResult(tuple(argv), 1, "", self.squeue[4:])
            return CommandResult(tuple(argv), 0, self.squeue, "")
        if argv[0] == "sacct":
            if self.sacct is None:
                return CommandResult(tuple(argv), 1, "", NO_ACCOUNTING)
            return CommandResult(tuple(argv), 0, self.sacct, "")
        if argv[0] == "scancel":
            return CommandResult(tuple(argv), 0, "", "")
        raise AssertionError(f"unexpected command {argv}")

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def make_dirs(self, path: str) -> None:
        pass

    def write_text(self, path: str, text: str) -> None:
        self.files[path] = text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(runner: ReplayRunner, clock: Clock) -> QueuePoller:
    return QueuePoller(backend_for(HOST), runner, settings=SETTINGS, clock=clock)


def squeue_calls(runner: ReplayRunner) -> list[list[str]]:
    return [c for c in runner.calls if c[0] == "squeue"]


def test_one_query_per_poll_for_every_job_and_adaptive_interval(clock: Clock) -> None:
    runner = ReplayRunner()
    poller = make(runner, clock)
    for job_id in ("11", "12", "13"):
        poller.watch(job_id)
    runner.squeue = "11|PENDING|debug|0:00||N/A|Priority\n12|RUNNING|debug|0:01|n1|N/A|None\n" \
                    "13|RUNNING|debug|0:01|n1|N/A|None\n"
    changes = poller.poll_once()
    assert squeue_calls(runner) == [["squeue", "--noheader", "--jobs=11,12,13", "--states=all",
                                     "--format=%i|%T|%P|%M|%N|%b|%r"]]
    assert {s.job_id: s.state for s in changes} == {"11": JobState.PENDING, "12": JobState.RUNNING,
                                                     "13": JobState.RUNNING}
    assert poller.next_interval() == 1  # a job is still pending: fast
    runner.squeue = runner.squeue.replace("PENDING", "RUNNING").replace("Priority", "None")
    poller.poll_once()
    assert poller.next_interval() == 1  # something changed: fast once more
    intervals = []
    for _ in range(5):
        poller.poll_once()
        intervals.append(poller.next_interval())
    assert intervals == [2, 4, 8, 16, 30]  # all running and quiet: slower, capped
    assert poller.stats.status_queries == 7 and len(squeue_calls(runner)) == 7
    poller.watch("14")
    assert poller.next_interval() == 1  # a new job: fast again


def test_transient_failures_change_nothing(clock: Clock) -> None:
    runner = ReplayRunner()
    poller = make(runner, clock)
    poller.watch("21")
    runner.squeue = "21|RUNNING|debug|0:05|n1|N/A|None\n"
    poller.poll_once()
    runner.squeue = "ERR:slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
    for expected in (1, 2, 4, 8, 16, 30, 30):
        clock.now += 100  # far past lost_after_s: still nothing may be marked failed
        assert poller.poll_once() == []
        assert poller.next_interval() == expected
    runner.squeue = QueueCommandError("`squeue` did not answer within 20 s", transient=True)
    assert poller.poll_once() == []
    assert poller.status("21").state is JobState.RUNNING
    assert poller.stats.status_failures == 8 and "did not answer" in (poller.stats.last_error or "")
    runner.squeue = "21|RUNNING|debug|12:05|n1|N/A|None\n"
    poller.poll_once()
    assert poller.next_interval() == 1 and poller.status("21").state is JobState.RUNNING  # look again soon


def test_vanished_job_settles_from_its_sentinel(clock: Clock) -> None:
    runner = ReplayRunner(files={"/w/ok/exit_code": "0\n", "/w/bad/exit_code": "3\n"})
    poller = make(runner, clock)
    poller.watch("31", job_dir="/w/ok")
    poller.watch("32", job_dir="/w/bad")
    runner.squeue = "31|RUNNING|debug|0:05|n1|N/A|None\n32|RUNNING|debug|0:05|n1|N/A|None\n"
    poller.poll_once()
    runner.squeue = "ERR:slurm_load_jobs error: Invalid job id specified\n"  # both aged out of squeue
    poller.poll_once()
    ok, bad = poller.status("31"), poller.status("32")
    assert (ok.state, ok.exit_code, ok.source) == (JobState.DONE, 0, "sentinel")
    assert (bad.state, bad.exit_code, bad.reason) == (JobState.FAILED, 3, "exit code 3")
    assert poller.wait("31", timeout_s=0) is ok


def test_vanished_job_without_evidence_stays_open_then_is_lost(clock: Clock) -> None:
    runner = ReplayRunner()
    poller = make(runner, clock)
    poller.watch("41", job_dir="/w/none")
    runner.squeue = "41|RUNNING|debug|0:05|n1|N/A|None\n"
    poller.poll_once()
    runner.squeue = ""
    poller.poll_once()
    status = poller.status("41")
    assert status.state is JobState.RUNNING and "left the queue" in (status.reason or "")
    assert poller.next_interval() == 1
    clock.now += 59
    poller.poll_once()
    assert not poller.status("41").is_final
    clock.now += 2
    poller.poll_once()
    lost = poller.status("41")
    assert (lost.state, lost.source) == (JobState.FAILED, "lost") and "neither an accounting" in lost.reason


def test_finished_job_waits_for_its_accounting_record(clock: Clock) -> None:
    runner = ReplayRunner(files={"/w/j/exit_code": "0\n"})
    runner.sacct = ""  # slurmdbd has not recorded the end yet
    poller = make(runner, clock)
    poller.watch("20", job_dir="/w/j")
    runner.squeue = "20|COMPLETED|debug|0:01|localhost|gres:gpu:1|None\n"
    poller.poll_once()
    assert not poller.status("20").is_final and "accounting" in poller.status("20").reason
    runner.sacct = ("20|COMPLETED|0:0|00:00:01|00:00.229||localhost|billing=1,cpu=1,gres/gpu=1,mem=500M,node=1\n"
                    "20.batch|COMPLETED|0:0|00:00:01|00:00.229|2048K|localhost|cpu=1,gres/gpu=1,mem=500M,node=1\n")
    clock.now += 1
    poller.poll_once()
    done = poller.status("20")
    assert (done.state, done.source, done.exit_code) == (JobState.DONE, "accounting", 0)
    assert done.accounting.gpus == 1 and done.accounting.max_memory_mb == 2.0


def test_accounting_that_never_comes_is_not_waited_for_forever(clock: Clock) -> None:
    runner = ReplayRunner(files={"/w/j/exit_code": "1\n"})
    runner.sacct = ""
    poller = make(runner, clock)
    poller.watch("22", job_dir="/w/j")
    runner.squeue = "22|FAILED|debug|0:01|localhost|N/A|NonZeroExitCode\n"
    poller.poll_once()
    clock.now += 11
    poller.poll_once()
    status = poller.status("22")
    assert (status.state, status.exit_code, status.source) == (JobState.FAILED, 1, "queue")


def test_without_accounting_the_queue_state_and_sentinel_settle_at_once(clock: Clock) -> None:
    runner = ReplayRunner(files={"/w/j/exit_code": "0\n"})
    poller = make(runner, clock)
    poller.watch("23", job_dir="/w/j")
    runner.squeue = "23|COMPLETED|debug|0:01|localhost|N/A|None\n"
    poller.poll_once()
    assert poller.status("23").state is JobState.DONE and poller.status("23").exit_code == 0
    sacct_calls = [c for c in runner.calls if c[0] == "sacct"]
    poller.watch("24", job_dir="/w/j")
    runner.squeue = "24|COMPLETED|debug|0:01|localhost|N/A|None\n"
    poller.poll_once()
    assert [c for c in runner.calls if c[0] == "sacct"] == sacct_calls  # not asked again for a while


def test_job_deleted_while_pending_settles_at_once(clock: Clock) -> None:
    runner = ReplayRunner()
    runner.sacct = ""  # accounting answers, but a job that never ran has no record
    poller = make(runner, clock)
    poller.watch("52", job_dir="/w/none")
    runner.squeue = "52|PENDING|debug|0:00||N/A|Priority\n"
    poller.poll_once()
    poller.cancel(["52"])
    runner.squeue = ""
    poller.poll_once()
    assert (poller.status("52").state, poller.status("52").source) == (JobState.CANCELLED, "cancel")


def test_cancelled_jobs_settle_as_cancelled(clock: Clock) -> None:
    runner = ReplayRunner(files={"/w/j/exit_code": "143\n"})
    poller = make(runner, clock)
    poller.watch("51", job_dir="/w/j")
    runner.squeue = "51|RUNNING|debug|0:05|n1|N/A|None\n"
    poller.poll_once()
    poller.cancel(["51"])
    assert ["scancel", "51"] in runner.calls
    runner.squeue = ""
    poller.poll_once()
    assert poller.status("51").state is JobState.CANCELLED


def test_listeners_hear_every_change_and_unknown_jobs_are_errors(clock: Clock) -> None:
    runner = ReplayRunner()
    poller = make(runner, clock)
    heard: list[tuple[str, JobState]] = []
    poller.add_listener(lambda status: heard.append((status.job_id, status.state)))
    poller.watch("61")
    runner.squeue = "61|PENDING|debug|0:00||N/A|Priority\n"
    poller.poll_once()
    poller.poll_once()  # nothing changed: nothing heard
    runner.squeue = "61|RUNNING|debug|0:00|n1|N/A|None\n"
    poller.poll_once()
    assert heard == [("61", JobState.PENDING), ("61", JobState.RUNNING)]
    with pytest.raises(Exception, match="not watched"):
        poller.wait("999", timeout_s=0)
    assert poller.wait("61", timeout_s=0.01).state is JobState.RUNNING  # timeout: current status
