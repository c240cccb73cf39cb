"""Pilot clusters from a host's [pilot] section (the dask-jobqueue arguments, no queue needed)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.hosts.config.loader import parse_hosts
from orchestrator.hosts.errors import HostError
from orchestrator.hosts.queues import backend_for
from orchestrator.hosts.queues.pilots import FORK_WORKERS, pilot_spec, pilots_needed

HOSTS = """
[hosts.slurm]
kind = "slurm"
max_jobs = 12
env_setup = ["module load relion"]
extra_directives = ["--account=em"]
[hosts.slurm.queues.gpu]
cores = 16
gpus = 4
gpu_request = "--gres=gpu:{type}:{n}"
gpu_type = "a100"
[hosts.slurm.pilot]
cores = 8
memory = "32G"
walltime = "04:00:00"
processes = 2
gpus = 2
interface = "ib0"

[hosts.sge]
kind = "sge"
[hosts.sge.queues."all.q"]
cores = 8
[hosts.sge.pilot]
cores = 4
memory = "8G"
max_pilots = 3

[hosts.pbs]
kind = "pbs"
[hosts.pbs.queues.workq]
gpus = 2
[hosts.pbs.pilot]
cores = 2
memory = "4G"
gpus = 2
processes = 2
min_pilots = 1

[hosts.remote]
kind = "slurm"
[hosts.remote.ssh]
host = "login"
[hosts.remote.queues.q]
"""


@pytest.fixture(scope="module")
def hosts():  # type: ignore[no-untyped-def]
    return parse_hosts(HOSTS, Path("/t/hosts.toml"))


def test_slurm_pilot(hosts) -> None:  # type: ignore[no-untyped-def]
    spec = pilot_spec(hosts["slurm"], log_directory="/logs")
    assert spec.cluster_class == "SLURMCluster" and (spec.minimum_jobs, spec.maximum_jobs) == (0, 12)
    kw = spec.kwargs
    assert (kw["queue"], kw["cores"], kw["processes"], kw["memory"], kw["walltime"]) == ("gpu", 8, 2, "32G",
                                                                                          "04:00:00")
    assert kw["job_extra_directives"] == ["--account=em", "--gres=gpu:a100:2"]
    # the job's id and GPUs under generic names, the site's set-up, then workers forked from the
    # started, pre-imported process
    exports = backend_for(hosts["slurm"]).job_exports()
    assert kw["job_script_prologue"] == [*exports, "module load relion", FORK_WORKERS] and kw["interface"] == "ib0"
    assert kw["log_directory"] == "/logs"
    assert kw["worker_extra_args"][:2] == ["--resources", "cpus=4,gpus=1"]
    assert spec.worker_resources == {"cpus": 4.0, "gpus": 1.0}
    assert "--lifetime" in kw["worker_extra_args"] and kw["python"] == sys.executable


def test_gpus_must_divide_among_processes(hosts) -> None:  # type: ignore[no-untyped-def]
    host = hosts["slurm"]
    odd = replace(host, pilot=replace(host.pilot, gpus=3))
    with pytest.raises(HostError, match="must divide among its 2 worker processes"):
        pilot_spec(odd)


def test_sge_and_pbs_pilots(hosts) -> None:  # type: ignore[no-untyped-def]
    sge = pilot_spec(hosts["sge"])
    assert sge.cluster_class == "SGECluster" and sge.maximum_jobs == 3
    assert sge.kwargs["job_extra_directives"] == ["-pe smp 4"] and sge.kwargs["resource_spec"] is None
    assert sge.worker_resources == {"cpus": 4.0} and "--lifetime" in sge.kwargs["worker_extra_args"]
    pbs = pilot_spec(hosts["pbs"])
    assert pbs.cluster_class == "PBSCluster" and (pbs.minimum_jobs, pbs.maximum_jobs) == (1, 1)
    assert pbs.kwargs["resource_spec"] == "select=1:ncpus=2:mem=4096mb:ngpus=2"
    assert pbs.worker_resources == {"cpus": 1.0, "gpus": 1.0}


def test_pilots_need_local_queue_commands(hosts) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HostError, match="reached over SSH"):
        pilot_spec(hosts["remote"])


def test_pilots_needed(hosts) -> None:  # type: ignore[no-untyped-def]
    assert pilots_needed(0, hosts["sge"]) == 0
    assert pilots_needed(9, hosts["sge"]) == 3 and pilots_needed(100, hosts["sge"]) == 3
    assert pilots_needed(0, hosts["pbs"]) == 1


@pytest.mark.parametrize("name", ["slurm", "sge", "pbs"])
def test_a_log_directory_the_queue_would_misread_goes_through_the_prologue(hosts, name: str) -> None:  # type: ignore[no-untyped-def]
    # dask-jobqueue writes its log directory into -o/-e directives unquoted
    logs = "/p/my proj #1 'x'/pilots"
    spec = pilot_spec(hosts[name], log_directory=logs)
    backend = backend_for(hosts[name])
    assert "log_directory" not in spec.kwargs
    assert backend.output_directive("/dev/null") in spec.kwargs["job_extra_directives"]
    redirect = [line for line in spec.kwargs["job_script_prologue"] if line.startswith("exec >>")]
    assert redirect == [f"exec >>'/p/my proj #1 '\"'\"'x'\"'\"'/pilots/orch-pilot-{name}-'\"$ORCH_JOB_ID.log\" 2>&1"]
    assert spec.kwargs["job_script_prologue"].index(redirect[0]) > spec.kwargs["job_script_prologue"].index(
        backend.job_exports()[0])  # ORCH_JOB_ID is set before it names the file
