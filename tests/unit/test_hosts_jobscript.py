"""Job scripts: directives per queue system, quoting of every user value, the exit sentinel.

The rendered scripts are run with bash here (their directives are comments to bash), so the
injection tests check what a shell really does with them, not what the text looks like.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.hosts.config.loader import parse_hosts
from orchestrator.hosts.config.model import HostConfig, QueueConfig
from orchestrator.hosts.errors import JobScriptError, ResourceLimitError
from orchestrator.hosts.queues import backend_for
from orchestrator.hosts.queues.base import JobRequest, safe_job_name
from orchestrator.hosts.queues.jobscript import find_template, render_job_script, shjoin, shquote
from orchestrator.protocol.steps import Resources

HOSTS = """
[hosts.slurm]
kind = "slurm"
extra_directives = ["--account=em"]
env_setup = ["export ORCH_TEST_SETUP=loaded"]
[hosts.slurm.queues.gpu]
cores = 16
memory = "64G"
gpus = 2
walltime = "12:00:00"
max_nodes = 2
extra_directives = ["--qos=gpu"]

[hosts.sge]
kind = "sge"
[hosts.sge.queues."all.q"]
cores = 8
gpus = 2
walltime = "04:00:00"
parallel_env = "smp"

[hosts.pbs]
kind = "pbs"
[hosts.pbs.queues.workq]
cores = 36
gpus = 4
gpu_request = "ngpus={n}"
max_nodes = 4
"""
EVIL = "$(touch PWNED) `touch PWNED` '; touch PWNED; ' \"; touch PWNED; \" \\ $HOME"


@pytest.fixture(scope="module")
def hosts() -> dict[str, HostConfig]:
    return parse_hosts(HOSTS, Path("/test/hosts.toml"))


def script(host: HostConfig, request: JobRequest) -> str:
    return render_job_script(backend_for(host), request)


def directives(text: str, prefix: str) -> list[str]:
    return [line[len(prefix) + 1:] for line in text.splitlines() if line.startswith(prefix + " ")]


def test_slurm_directives(hosts: dict[str, HostConfig]) -> None:
    text = script(hosts["slurm"], JobRequest("refine 3D", ["relion_refine_mpi", "--o", "out/run"], "/w/job 1",
                                             Resources(cpus=4, gpus=2, memory_mb=32000, walltime_s=7200,
                                                       mpi_ranks=3)))
    assert text.startswith("#!/bin/bash\n#SBATCH ")
    assert directives(text, "#SBATCH") == [
        "--job-name=refine_3D", '--output="/w/job 1/job.out"', '--chdir="/w/job 1"', "--partition=gpu",
        "--nodes=1", "--ntasks=3", "--cpus-per-task=4", "--mem=32000M", "--time=02:00:00", "--gres=gpu:2",
        "--account=em", "--qos=gpu"]
    assert "export ORCH_TEST_SETUP=loaded\n" in text


def test_slurm_multi_node_and_limits(hosts: dict[str, HostConfig]) -> None:
    backend = backend_for(hosts["slurm"])
    queue = hosts["slurm"].queue()
    lines = backend.directives(Resources(cpus=8, gpus=4, memory_mb=100000, mpi_ranks=4), queue)
    assert "--nodes=2" in lines and "--gres=gpu:2" in lines and "--mem=50000M" in lines
    for resources, message in [
        (Resources(cpus=32), "32 cpus per rank, a node has 16 cores"),
        (Resources(gpus=6, mpi_ranks=3), "3 nodes, the queue allows 2 per job"),
        (Resources(gpus=4), "2 nodes for 1 rank(s)"),
        (Resources(walltime_s=50000), "50000 s of wall time, the queue allows 43200 s"),
        (Resources(memory_mb=70000), "70000 MB per node, a node has 65536 MB"),
    ]:
        with pytest.raises(ResourceLimitError, match=re.escape(message)):
            backend.directives(resources, queue)
    with pytest.raises(ResourceLimitError, match="the queue has none"):
        backend_for(hosts["slurm"]).directives(Resources(gpus=1), QueueConfig(name="cpu"))


def test_sge_and_pbs_directives(hosts: dict[str, HostConfig]) -> None:
    request = JobRequest("ctf", ["ctffind"], "/w/j", Resources(cpus=2, gpus=1, memory_mb=4000, mpi_ranks=2))
    sge = script(hosts["sge"], request)
    assert directives(sge, "#$") == ["-S /bin/bash", "-N ctf", "-j y -o /w/j/job.out", "-wd /w/j", "-q all.q",
                                     "-pe smp 4", "-l h_vmem=1000M", "-l h_rt=04:00:00", "-l gpu=1"]
    pbs = script(hosts["pbs"], JobRequest("ref", ["x"], "/w/j", Resources(cpus=18, gpus=8, memory_mb=8000,
                                                                         walltime_s=3600, mpi_ranks=4)))
    assert directives(pbs, "#PBS") == ["-S /bin/bash", "-N ref", "-o /w/j/job.out -j oe", "-q workq",
                                       "-l select=2:ncpus=36:mpiprocs=2:mem=4000mb:ngpus=4", "-l place=scatter",
                                       "-l walltime=01:00:00"]


def run_script(text: str, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    path = cwd / "job.sh"
    path.write_text(text)
    return subprocess.run(["bash", str(path)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_no_user_value_can_inject_shell(hosts: dict[str, HostConfig], tmp_path: Path) -> None:
    job_dir = tmp_path / "it's a $(touch PWNED) `dir`; touch PWNED"
    job_dir.mkdir()
    request = JobRequest(
        name="x; touch PWNED $(touch PWNED)", job_dir=str(job_dir),
        command=["bash", "-c", 'printf "%s\\n" "$EVIL" "$1"; pwd', "argv0", EVIL],
        env={"EVIL": EVIL}, resources=Resources())
    text = script(hosts["slurm"], request)
    done = run_script(text, tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out == [EVIL, EVIL, str(job_dir)]
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert (job_dir / "exit_code").read_text() == "0\n"
    assert "#SBATCH --job-name=x_touch_PWNED_touch_PWNED" in text


@pytest.mark.parametrize("field", ["job_dir", "workdir", "directive"])
def test_line_breaks_in_directive_values_are_refused(hosts: dict[str, HostConfig], field: str) -> None:
    request = JobRequest("n", ["true"], "/w/j", Resources())
    if field == "job_dir":
        request = JobRequest("n", ["true"], "/w/j\ntouch PWNED", Resources())
    elif field == "workdir":
        request = JobRequest("n", ["true"], "/w/j", Resources(), workdir="/w\r/x")
    else:
        host = hosts["slurm"]
        bad = replace(host, extra_directives=("--x\ntouch PWNED",))
        with pytest.raises(JobScriptError, match="host .slurm.: .* may not contain a newline"):
            script(bad, request)
        return
    with pytest.raises(JobScriptError, match="host .slurm.: .* may not contain a newline"):
        script(hosts["slurm"], request)


def test_bad_env_names_and_commands_are_refused(hosts: dict[str, HostConfig]) -> None:
    with pytest.raises(JobScriptError, match="not a valid environment variable name"):
        script(hosts["slurm"], JobRequest("n", ["true"], "/w", env={"A;touch x": "1"}))
    with pytest.raises(JobScriptError, match="non-empty list of strings"):
        script(hosts["slurm"], JobRequest("n", [], "/w"))


def test_exit_sentinel_holds_the_exit_code(hosts: dict[str, HostConfig], tmp_path: Path) -> None:
    text = script(hosts["sge"], JobRequest("n", ["bash", "-c", "exit 3"], str(tmp_path), Resources()))
    assert run_script(text, tmp_path).returncode == 3
    assert (tmp_path / "exit_code").read_text() == "3\n"
    assert not (tmp_path / "exit_code.tmp").exists()


def test_term_is_forwarded_and_recorded(hosts: dict[str, HostConfig], tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    command = ["bash", "-c", f'echo $$ > {shquote(marker)}; exec sleep 60']
    (tmp_path / "job.sh").write_text(script(hosts["pbs"], JobRequest("n", command, str(tmp_path), Resources())))
    proc = subprocess.Popen(["bash", str(tmp_path / "job.sh")], cwd=tmp_path)
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    child = int(marker.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    assert (tmp_path / "exit_code").read_text() == "143\n"
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in _proc_state(child):
        assert time.monotonic() < deadline, "the step outlived its job script"
        time.sleep(0.02)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_find_template_and_overrides(hosts: dict[str, HostConfig], tmp_path: Path) -> None:
    assert find_template("slurm.sh.j2").name == "slurm.sh.j2"
    site = tmp_path / "site.sh.j2"
    site.write_text("{% extends 'slurm.sh.j2' %}\n")  # a site template may build on ours
    assert find_template("slurm.sh.j2", str(site)) == site
    host = replace(hosts["slurm"], template=str(site))
    assert "#SBATCH --partition=gpu" in script(host, JobRequest("n", ["true"], "/w"))
    with pytest.raises(JobScriptError, match="not found"):
        find_template("lsf.sh.j2")
    with pytest.raises(JobScriptError, match="does not exist"):
        find_template("slurm.sh.j2", str(tmp_path / "missing.j2"))


def test_helpers() -> None:
    assert shjoin(["a b", "c'd", "$x"]) == "'a b' 'c'\"'\"'d' '$x'"
    assert safe_job_name("3D refine: run #12") == "j3D_refine_run_12"
    assert safe_job_name("   ") == "job" and len(safe_job_name("x" * 500)) == 64


def test_each_queue_carries_what_its_parser_can_read() -> None:
    """Which hard values each queue's directive parser can carry (the contract tests check that
    what is carried is read back exactly; see queue_directive_parsers.py for the rules)."""
    hard = ["/p/my proj #1 'x'", 'say "hi"', "back\\slash", "tab\there", "100%", "$HOME/x", "a:b,c"]
    slurm = backend_for(HostConfig(name="s", kind="slurm"))
    sge = backend_for(HostConfig(name="g", kind="sge"))
    pbs = backend_for(HostConfig(name="p", kind="pbs"))
    # sbatch: double quotes with \ and " escaped carry everything but a line break
    assert all(slurm.quote_directive(v) is not None for v in hard)
    assert slurm.quote_directive("/p/my proj #1 'x'") == "\"/p/my proj #1 'x'\""
    assert slurm.quote_directive('a"b\\c') == '"a\\"b\\\\c"'
    # Grid Engine: no escape at all; # ends the line and quotes vanish
    assert [v for v in hard if sge.quote_directive(v) is None] == ["/p/my proj #1 'x'", 'say "hi"']
    assert sge.quote_directive("tab\there") == '"tab\there"' and sge.quote_directive("a:b,c") == "a:b,c"
    # PBS Pro: single quotes, a quote as '\''
    assert all(pbs.quote_directive(v) is not None for v in hard)
    assert pbs.quote_directive("/p/my proj #1 'x'") == "'/p/my proj #1 '\\''x'\\'''"


def test_output_and_working_directory_per_queue() -> None:
    slurm = backend_for(HostConfig(name="s", kind="slurm"))
    sge = backend_for(HostConfig(name="g", kind="sge"))
    pbs = backend_for(HostConfig(name="p", kind="pbs"))
    # sbatch's --output is a filename pattern: % doubled, or, with a backslash, \ doubled and no %
    assert slurm.output_directive("/p/100%/job.out") == "--output=/p/100%%/job.out"
    assert slurm.output_directive("/p/a\\b %j/job.out") == '--output="/p/a\\\\\\\\b %j/job.out"'
    assert slurm.workdir_directive("/p/my proj") == '--chdir="/p/my proj"'
    # Grid Engine: -o is a [host:]path list, expanded on the node; a quoted word ends its line
    assert sge.output_directive("/p/a:b/job.out") == "-j y -o :/p/a:b/job.out"
    assert sge.output_directive("/p/a b/job.out") == '-j y -o "/p/a b/job.out"'
    assert [sge.output_directive(p) for p in ("/p/a,b", "/p/$HOME", "/p/#1", "~/x")] == [None] * 4
    assert sge.workdir_directive("/p/#1") is None and sge.workdir_directive("/p/a b") == '-wd "/p/a b"'
    # PBS copies the output back after the job: only plain absolute paths; no working-directory directive
    assert pbs.output_directive("/p/plain/job.out") == "-o /p/plain/job.out -j oe"
    assert pbs.output_directive("/p/a b/job.out") is None and pbs.workdir_directive("/p") is None


@pytest.mark.parametrize("name", ["slurm", "sge", "pbs"])
def test_a_hard_project_path_renders_for_every_queue(hosts: dict[str, HostConfig], tmp_path: Path,
                                                     name: str) -> None:
    job_dir = tmp_path / "my proj #1 'x'" / "j"
    job_dir.mkdir(parents=True)
    text = script(hosts[name], JobRequest("n", ["bash", "-c", "pwd; echo oops >&2"], str(job_dir), Resources()))
    done = run_script(text, tmp_path)
    assert done.returncode == 0, done.stderr
    if name == "slurm":  # sbatch is told the path: the script leaves its output alone
        assert '#SBATCH --output="' in text and done.stdout == f"{job_dir}\n"
    else:  # the queue cannot be told it: the script redirects its own output there
        assert (job_dir / "job.out").read_text() == f"{job_dir}\noops\n"
