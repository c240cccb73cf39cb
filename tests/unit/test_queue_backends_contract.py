"""The contract every queue backend answers, checked on EVERY registered backend the same way.

Each backend brings its samples below (what its queue prints: recorded from the test SLURM and
Grid Engine; for PBS, PBS Pro's documented formats) and the port of its directive parser
(``queue_directive_parsers.py``). A backend added to ``BACKENDS`` without samples fails
``test_every_backend_brings_its_samples``: adding a queue system means adding its line here too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from queue_directive_parsers import (
    DIRECTIVE_READERS,
    MisreadError,
    sge_output_file,
    slurm_output_file,
)

from orchestrator.hosts import job_env
from orchestrator.hosts.config.loader import parse_hosts
from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.errors import JobSubmitError, QueueCommandError, ResourceLimitError
from orchestrator.hosts.queues import BACKENDS, backend_for
from orchestrator.hosts.queues.base import JobRequest, JobState, QueueBackend
from orchestrator.hosts.queues.jobscript import find_template, render_job_script
from orchestrator.hosts.queues.pilots import pilot_spec
from orchestrator.hosts.runner import CommandResult
from orchestrator.protocol.steps import Resources

P, R, D, F = JobState.PENDING, JobState.RUNNING, JobState.DONE, JobState.FAILED


@dataclass(frozen=True)
class Samples:
    """What one queue system prints, and how to read back what we write for it."""

    submitted: list[tuple[str, str]]          # submit output -> job id
    refused: str                              # a submit output without a job id
    status: str                               # status output ...
    states: dict[str, JobState]               # ... and the states it shows
    no_jobs: str                              # the status output when no job matches
    accounting: str                           # accounting output ...
    accounted: dict[str, JobState]            # ... and the states it records
    queues: str                               # output of list_queues_command ...
    queue_names: set[str]                     # ... and the queue names in it
    option: str                               # a directive taking a value, "{}" where the value goes
    output_file: Callable[[list[str]], str]   # the file an output directive's words name
    workdir: Callable[[list[str]], str] | None  # the directory a workdir directive's words name


def _after(flag: str, words: list[str]) -> str:
    """The value of ``flag`` in directive words (``--flag=value`` or ``-flag value``)."""
    for i, word in enumerate(words):
        if word.startswith(flag + "="):
            return word[len(flag) + 1:]
        if word == flag:
            return words[i + 1]
    raise AssertionError(f"no {flag} in {words}")


SAMPLES: dict[str, Samples] = {
    "slurm": Samples(
        submitted=[("42\n", "42"), ("42;ci\n", "42"), ("Submitted batch job 43\n", "43")],
        refused="sbatch: error: Batch job submission failed: Invalid partition name specified\n",
        status="15|PENDING|debug|0:00||gres:gpu:1|Resources\n14|RUNNING|debug|1:02:03|localhost|gres:gpu:2|None\n"
               "20|COMPLETED|debug|0:01|localhost|gres:gpu:1|None\n",
        states={"15": P, "14": R, "20": D},
        no_jobs="",
        accounting="21|FAILED|3:0|00:00:00|00:00.002||localhost|billing=1,cpu=1,mem=500M,node=1\n"
                   "21.batch|FAILED|3:0|00:00:00|00:00.002||localhost|cpu=1,mem=500M,node=1\n",
        accounted={"21": F},
        queues="debug|up\n",
        queue_names={"debug"},
        option="--comment={}",
        output_file=lambda words: slurm_output_file(_after("--output", words)),
        workdir=lambda words: _after("--chdir", words),
    ),
    "sge": Samples(
        submitted=[("7\n", "7"), ("8.1-3:1\n", "8"), ('Your job 9 ("ok") has been submitted\n', "9")],
        refused="Unable to run job: Error reading answer list from qmaster\nExiting.\n",
        status="<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n    <job_list state=\"running\">\n"
               "      <JB_job_number>1</JB_job_number>\n      <state>r</state>\n"
               "      <queue_name>all.q@vm</queue_name>\n    </job_list>\n  </queue_info>\n  <job_info>\n"
               "    <job_list state=\"pending\">\n      <JB_job_number>4</JB_job_number>\n      <state>qw</state>\n"
               "      <queue_name></queue_name>\n    </job_list>\n  </job_info>\n</job_info>\n",
        states={"1": R, "4": P},
        no_jobs="<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n"
                "</job_info>\n",
        accounting="==============================================================\nqname        all.q\n"
                   "hostname     vm\njobnumber    5\nfailed       0\nexit_status  3\nru_wallclock 2s\n",
        accounted={"5": F},
        queues="all.q\n",
        queue_names={"all.q"},
        option="-N {}",
        output_file=lambda words: sge_output_file(_after("-o", words)),
        workdir=lambda words: _after("-wd", words),
    ),
    "pbs": Samples(
        submitted=[("4113.pbs01\n", "4113.pbs01"), ("77[].pbs01\n", "77[].pbs01")],
        refused="qsub: Job exceeds queue resource limits MSG=cannot satisfy queue max ngpus requirement\n",
        status='{"timestamp":1,"pbs_version":"2022.1.3","pbs_server":"s","Jobs":{'
               '"1.s":{"job_state":"R","queue":"workq"},"2.s":{"job_state":"Q","queue":"workq"},'
               '"3.s":{"job_state":"F","queue":"workq","Exit_status":0}}}',
        states={"1.s": R, "2.s": P, "3.s": D},
        no_jobs='{"timestamp":1,"pbs_version":"2024.1.2","pbs_server":"s"}',
        accounting='{"Jobs":{"3.s":{"job_state":"F","Exit_status":2,"resources_used":{"walltime":"00:00:01"}}}}',
        accounted={"3.s": F},
        queues="Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type\n"
               "---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----\n"
               "workq                0     3 yes yes     1     2     0     0     0     0 Exec\n",
        queue_names={"workq"},
        option="-N {}",
        output_file=lambda words: _after("-o", words),
        workdir=None,
    ),
}
KINDS = sorted(BACKENDS)
#: values no directive parser treats plainly; each backend either carries them exactly or says it cannot
HARD_VALUES = ["/tmp/my proj #1 'x'", 'say "hi"', "back\\slash", "tab\there", "100%", "$HOME/x", "a:b,c",
               "ünïcode", "-dash", "  lead and trail  ", "#", "'", '"', "\\", ""]
HARD_PATHS = ["/tmp/my proj #1 'x'/job.out", "/tmp/back\\slash %j/job.out", "/tmp/a:b/job.out",
              "/tmp/dq \"q\"/job.out", "/tmp/tab\there/job.out", "/tmp/$HOME/job.out", "/tmp/ünï/job.out"]
HOST_FILE = """
[hosts.h]
kind = "{kind}"
[hosts.h.queues.q]
cores = 8
memory = "8G"
gpus = 2
walltime = "01:00:00"
[hosts.h.pilot]
cores = 2
memory = "2G"
"""


def host(kind: str) -> HostConfig:
    return parse_hosts(HOST_FILE.format(kind=kind), Path("/t/hosts.toml"))["h"]


def backend(kind: str) -> QueueBackend:
    return backend_for(host(kind))


def read(kind: str, line: str) -> list[str]:
    return DIRECTIVE_READERS[kind](line)


def result(stdout: str = "", stderr: str = "", returncode: int = 0) -> CommandResult:
    return CommandResult(("cmd",), returncode, stdout, stderr)


def test_every_backend_brings_its_samples() -> None:
    assert set(SAMPLES) == set(BACKENDS) == set(DIRECTIVE_READERS)


@pytest.mark.parametrize("kind", KINDS)
def test_what_it_is(kind: str) -> None:
    cls = BACKENDS[kind]
    assert cls.kind == kind and cls.display_name and cls.directive_prefix.startswith("#")
    assert find_template(cls.template_name).is_file()
    assert cls.job_id_variable and all(name.isidentifier() for name in (cls.job_id_variable, *cls.gpu_variables))
    for name, option in cls.queue_options.items():
        assert option.check(option.default) == option.default and option.help, name


@pytest.mark.parametrize("kind", KINDS)
def test_submit_output(kind: str) -> None:
    for text, job_id in SAMPLES[kind].submitted:
        assert backend(kind).parse_job_id(text) == job_id
    with pytest.raises(JobSubmitError):
        backend(kind).parse_job_id(SAMPLES[kind].refused)
    assert all(isinstance(word, str) for word in backend(kind).submit_command())


@pytest.mark.parametrize("kind", KINDS)
def test_status_parsing(kind: str) -> None:
    queue = backend(kind)
    statuses = queue.parse_status(SAMPLES[kind].status)
    assert {job_id: status.state for job_id, status in statuses.items()} == SAMPLES[kind].states
    assert all(status.job_id == job_id for job_id, status in statuses.items())
    assert queue.parse_status(SAMPLES[kind].no_jobs) == {}
    with pytest.raises(QueueCommandError):
        queue.parse_status("this is not a status listing\n")
    with pytest.raises(QueueCommandError) as failed:
        queue.read_status(result(stderr="cannot connect to the controller\n", returncode=1))
    assert failed.value.transient  # a queue that does not answer fails nothing
    try:  # empty output: no job, or our own error; never a crash
        assert queue.parse_status("") == {}
    except QueueCommandError:
        pass


@pytest.mark.parametrize("kind", KINDS)
def test_one_status_command_for_many_jobs(kind: str) -> None:
    queue = backend(kind)
    ids = [job_id for job_id, _ in SAMPLES[kind].submitted]
    command = queue.status_command(ids)
    assert command and all(isinstance(word, str) for word in command)
    text = " ".join(command)
    assert all(job_id in text for job_id in ids) or queue.user in command  # by id, or all of the user's


@pytest.mark.parametrize("kind", KINDS)
def test_state_table(kind: str) -> None:
    queue = backend(kind)
    assert all(isinstance(state, JobState) for state in queue.STATES.values())
    assert {P, R} <= set(queue.STATES.values())  # waiting and running jobs are told apart
    assert queue.map_state("zz") is JobState.UNKNOWN
    for status in queue.parse_status(SAMPLES[kind].status).values():
        assert status.state is not JobState.UNKNOWN


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_command(kind: str) -> None:
    queue = backend(kind)
    ids = [job_id for job_id, _ in SAMPLES[kind].submitted]
    command = queue.cancel_command(ids)
    assert all(job_id in command for job_id in ids)  # one command for all of them
    assert queue.cancel_succeeded(result()) and not queue.cancel_succeeded(result(stderr="denied\n", returncode=1))


@pytest.mark.parametrize("kind", KINDS)
def test_accounting_parsing(kind: str) -> None:
    queue = backend(kind)
    records = queue.parse_accounting(SAMPLES[kind].accounting)
    assert {job_id: record.state for job_id, record in records.items()} == SAMPLES[kind].accounted
    assert queue.parse_accounting("") == {}
    for command in queue.accounting_commands(["1", "2"]):
        assert command and all(isinstance(word, str) for word in command)


@pytest.mark.parametrize("kind", KINDS)
def test_directives_for_resources(kind: str) -> None:
    queue = backend(kind)
    config = queue.host.queue()
    lines = queue.directives(Resources(cpus=2, gpus=1, memory_mb=1000, walltime_s=600), config)
    assert any(queue.gpu_request(config, 1) in line for line in lines)
    assert any("00:10:00" in line for line in lines)  # the wall time, in the queue's format
    for line in lines:
        assert read(kind, " " + line), line  # the queue reads it, and reads something
    with pytest.raises(ResourceLimitError, match="a node has 8 cores"):
        queue.directives(Resources(cpus=16), config)
    with pytest.raises(ResourceLimitError, match="queue allows 3600 s"):
        queue.directives(Resources(walltime_s=7200), config)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", ["plain_name-1.2", *HARD_VALUES])
def test_quoting_is_read_back_exactly_or_refused(kind: str, value: str) -> None:
    queue = backend(kind)
    quoted = queue.quote_directive(value)
    if value == "plain_name-1.2":
        assert quoted == value  # plain text stays as it is
    if quoted is None:
        return  # the queue cannot carry it: the caller avoids the directive or refuses
    line = SAMPLES[kind].option.format(quoted)
    expected = SAMPLES[kind].option.format(value)
    assert read(kind, " " + line) == (expected.split(" ", 1) if " " in SAMPLES[kind].option else [expected])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("breaker", ["\n", "\r", "\0"])
def test_no_queue_carries_a_line_break(kind: str, breaker: str) -> None:
    assert backend(kind).quote_directive(f"a{breaker}b") is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/dev/null", "/w/plain/job.out", *HARD_PATHS])
def test_output_and_workdir_directives_name_exactly_the_path(kind: str, path: str) -> None:
    queue = backend(kind)
    samples = SAMPLES[kind]
    output = queue.output_directive(path)
    if path in ("/dev/null", "/w/plain/job.out"):
        assert output is not None  # the fallback and plain paths always work
    if output is not None:
        assert samples.output_file(read(kind, " " + output)) == path
    workdir = queue.workdir_directive(path.rsplit("/", 1)[0])
    if workdir is not None:
        assert samples.workdir is not None
        assert samples.workdir(read(kind, " " + workdir)) == path.rsplit("/", 1)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_job_script_directives_are_read_as_written(kind: str, tmp_path: Path) -> None:
    queue = backend(kind)
    job_dir = tmp_path / "my proj #1 'x'" / "job"
    job_dir.mkdir(parents=True)
    text = render_job_script(queue, JobRequest("step one", ["bash", "-c", "echo ran in $PWD"], str(job_dir),
                                               Resources(cpus=2)))
    for line in text.splitlines():
        if line.startswith(queue.directive_prefix):
            assert read(kind, line[len(queue.directive_prefix):]), line
    output = queue.output_directive(str(job_dir / "job.out"))
    # run by bash (directives are comments to it): the step's output reaches job.out through the
    # queue's directive or, where the queue cannot be told the path, through the script itself
    done = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = done.stdout if output is not None else (job_dir / "job.out").read_text()
    assert written == f"ran in {job_dir}\n"


@pytest.mark.parametrize("kind", KINDS)
def test_job_exports_give_the_generic_names(kind: str) -> None:
    queue = backend(kind)
    show = f'printf "%s|%s" "${job_env.JOB_ID}" "${{{job_env.JOB_GPUS}-unset}}"'
    env = {"PATH": "/usr/bin:/bin", queue.job_id_variable: "4242", job_env.JOB_GPUS: "stale"}
    expected_gpus = "unset"
    if queue.gpu_variables:
        env[queue.gpu_variables[-1]] = "0,1"
        expected_gpus = "0,1"
    script = "set -u\n" + "\n".join(queue.job_exports()) + "\n" + show
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=10)
    assert done.stdout == f"4242|{expected_gpus}", done.stderr
    bare = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=10)
    assert bare.stdout == "|unset", bare.stderr  # outside a job: nothing, and no error under set -u


@pytest.mark.parametrize("kind", KINDS)
def test_pilot_job_script(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    from orchestrator.hosts.queues.pilots import _import_jobqueue

    queue = backend(kind)
    spec = pilot_spec(queue.host, log_directory=str(tmp_path / "my proj #1 'x'" / "pilots"))
    assert spec.cluster_class == queue.pilot_class
    cluster_class = getattr(_import_jobqueue(), spec.cluster_class)
    kwargs = {key: value for key, value in spec.kwargs.items() if key != "scheduler_options"}
    text = cluster_class.job_cls(scheduler="tcp://127.0.0.1:8786", name="w", **kwargs).job_script()
    directives = [line[len(queue.directive_prefix):] for line in text.splitlines()
                  if line.startswith(queue.directive_prefix)]
    for line in directives:
        assert "my proj" not in line and read(kind, line), line
    assert queue.job_exports()[0] in text.splitlines()


@pytest.mark.parametrize("kind", KINDS)
def test_checks_of_orch_hosts_check(kind: str) -> None:
    queue = backend(kind)
    assert queue.parse_queue_names(SAMPLES[kind].queues) == SAMPLES[kind].queue_names
    for command in (queue.list_queues_command(), queue.user_jobs_command("alice")):
        assert command and all(isinstance(word, str) for word in command)
    assert "alice" in " ".join(queue.user_jobs_command("alice"))
    inventory = queue.gpu_inventory_command()
    assert inventory is None or all(isinstance(word, str) for word in inventory)
    assert queue.parse_gpu_inventory("") == {}


def test_the_readers_refuse_what_the_queues_refuse() -> None:
    with pytest.raises(MisreadError):
        read("slurm", ' --comment="unterminated')
    with pytest.raises(MisreadError):
        read("pbs", " -N 'unterminated")
    assert read("slurm", " --a=1 # a comment") == ["--a=1"]
    assert read("sge", ' -wd "/a b" -N x') == ["-wd", "/a b -N x"]  # a quoted word runs to the line's end
    assert read("pbs", " -N a#b") == ["-N", "a#b"]
