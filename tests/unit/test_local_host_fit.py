"""The local host's shape from [hosts.local], its GPUs, its env_setup, and the fit of steps on every kind of host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.hosts.config.loader import parse_hosts
from orchestrator.hosts.config.model import BUILT_IN_LOCAL_HOST, HostConfig
from orchestrator.hosts.env_setup import EnvSetupError, environment_after
from orchestrator.hosts.errors import HostConfigError
from orchestrator.hosts.fit import DoesNotFitHost, check_local_steps, check_queue_steps, check_ssh_steps
from orchestrator.hosts.gpus import GpuUnavailable, deal_gpus, host_gpu_devices
from orchestrator.hosts.local_host import LocalHostSpec, local_host_spec, plan_local_host
from orchestrator.protocol import Resources, Step

NO_GPU_VARIABLES: dict[str, str] = {}


def local(text: str, tmp_path: Path) -> HostConfig:
    return parse_hosts(f'[hosts.local]\nkind = "local"\n{text}', tmp_path / "hosts.toml")["local"]


def step(name: str = "refine", **resources: int) -> Step:
    return Step(name=name, func="orch_testkit.steps:noop_step", resources=Resources(**resources))


def never_detect() -> list[str]:
    raise AssertionError("nvidia-smi must not be asked when the hosts file or the environment says")


# -- GPUs --

def test_gpus_are_dealt_to_workers_one_holder_each_without_sharing() -> None:
    assert deal_gpus(["0", "1"], 2) == (("0",), ("1",))
    assert deal_gpus(["0", "1"], 4) == (("0",), ("1",), (), ())
    assert deal_gpus(["0", "1", "2", "3"], 2) == (("0", "2"), ("1", "3"))
    assert deal_gpus(["0", "1", "2"], 2) == (("0", "2"), ("1",))
    assert deal_gpus([], 3) == ((), (), ())


def test_shared_gpus_go_to_every_worker_starting_from_a_different_one() -> None:
    assert deal_gpus(["0", "1"], 3, sharing=True) == (("0", "1"), ("1", "0"), ("0", "1"))


def test_declared_gpus_need_no_device_and_respect_an_allocation() -> None:
    assert host_gpu_devices(2, NO_GPU_VARIABLES, never_detect) == (["0", "1"], "gpus = 2")
    assert host_gpu_devices(0, NO_GPU_VARIABLES, never_detect) == ([], "gpus = 0")
    devices, source = host_gpu_devices(1, {"CUDA_VISIBLE_DEVICES": "2,3"}, never_detect)
    assert devices == ["2"] and "CUDA_VISIBLE_DEVICES=2,3" in source
    with pytest.raises(GpuUnavailable, match=r"gpus = 3, but CUDA_VISIBLE_DEVICES='2,3' leaves this process 2"):
        host_gpu_devices(3, {"CUDA_VISIBLE_DEVICES": "2,3"}, never_detect)


def test_undeclared_gpus_come_from_the_environment_else_nvidia_smi() -> None:
    assert host_gpu_devices(None, {"CUDA_VISIBLE_DEVICES": "3,5"}, never_detect) == (
        ["3", "5"], "CUDA_VISIBLE_DEVICES=3,5")
    assert host_gpu_devices(None, {"CUDA_VISIBLE_DEVICES": ""}, never_detect)[0] == []
    assert host_gpu_devices(None, {"ORCH_JOB_GPUS": "1"}, never_detect)[0] == ["1"]
    assert host_gpu_devices(None, NO_GPU_VARIABLES, lambda: ["0", "1", "2"]) == (["0", "1", "2"], "found by nvidia-smi")
    devices, source = host_gpu_devices(None, NO_GPU_VARIABLES, list)
    assert devices == [] and "nvidia-smi lists none" in source


def test_more_gpus_declared_than_the_environment_allows_is_a_host_error(tmp_path: Path) -> None:
    with pytest.raises(HostConfigError, match=r"^host 'local' \(.*\): gpus = 2, but CUDA_VISIBLE_DEVICES='1'"):
        local_host_spec(local("gpus = 2", tmp_path), env={"CUDA_VISIBLE_DEVICES": "1"})


def test_the_loader_says_whether_gpus_were_given(tmp_path: Path) -> None:
    assert local("gpus = 0", tmp_path).gpus_declared
    assert not local("cores = 4", tmp_path).gpus_declared
    assert not BUILT_IN_LOCAL_HOST.gpus_declared


# -- the layout --

def test_workers_default_to_one_per_core_fewer_when_memory_is_short(tmp_path: Path) -> None:
    assert plan_local_host(local("cores = 8", tmp_path), []).workers == 8
    spec = plan_local_host(local('cores = 8\nmemory = "4G"', tmp_path), [])
    assert (spec.workers, spec.cpus_per_worker, spec.memory_per_worker_mb) == (4, 2, 1024)
    spec = plan_local_host(local('cores = 32\nmemory = "128G"\nworkers = 8', tmp_path), [])
    assert (spec.workers, spec.cpus_per_worker, spec.memory_per_worker_mb) == (8, 4, 16384)
    assert plan_local_host(local("cores = 32\nworkers = 8", tmp_path), [], workers=2).cpus_per_worker == 16


def test_a_layout_that_starves_its_workers_of_memory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HostConfigError, match=r"hosts.toml\): memory = 512 MB over 4 worker\(s\) leaves 128 MB each"):
        plan_local_host(local('memory = "512M"\nworkers = 4', tmp_path), [])


def test_the_built_in_host_has_todays_shape() -> None:
    spec = local_host_spec(BUILT_IN_LOCAL_HOST, env={"CUDA_VISIBLE_DEVICES": ""})
    assert (spec.workers, spec.cpus_per_worker, spec.gpu_devices, spec.env) == (os.cpu_count() or 1, 1, [], {})
    assert spec.cores is None and spec.memory_per_worker_mb is None and spec.max_step_gpus == 0
    assert spec.resources_of(0) == {"cpus": 1.0} and spec.env_of(0) == {}


def test_each_gpu_worker_advertises_and_sees_its_own_gpus(tmp_path: Path) -> None:
    host = local('gpus = 2\nworkers = 3\ngpu_type = "a5000"', tmp_path)
    spec = local_host_spec(host, env={})
    assert [spec.resources_of(i) for i in range(3)] == [{"cpus": 1.0, "gpus": 1.0}] * 2 + [{"cpus": 1.0}]
    assert [spec.env_of(i).get("CUDA_VISIBLE_DEVICES") for i in range(3)] == ["0", "1", None]
    assert spec.max_step_gpus == 1 and spec.gpu_devices == ["0", "1"]
    assert "2 a5000 GPU(s) [0,1] (gpus = 2), at most 1 per step" in spec.describe()
    with_env = LocalHostSpec(workers=1, worker_gpus=(("0",),), env={"A": "1"})
    assert with_env.env_of(0) == {"A": "1", "CUDA_VISIBLE_DEVICES": "0"}


# -- the fit of steps --

def test_local_refuses_more_gpus_than_the_host_or_one_worker_has(tmp_path: Path) -> None:
    spec = local_host_spec(local("gpus = 2\nworkers = 2", tmp_path), env={})
    check_local_steps(spec, [step(gpus=1), step(gpus=0)])
    with pytest.raises(DoesNotFitHost, match=r"^step 'refine' asks for 3 GPU\(s\); host 'local' has 2 GPU\(s\) "
                                             r"\(gpus = 2\)$") as refused:
        check_local_steps(spec, [step(gpus=3)])
    assert refused.value.exit_code == 2
    with pytest.raises(DoesNotFitHost, match=r"asks for 2 GPU\(s\); host 'local' has 2, dealt over 2 worker\(s\), "
                                             r"so a step gets at most 1 .*gpu_sharing = true"):
        check_local_steps(spec, [step(gpus=2)])
    shared = local_host_spec(local("gpus = 2\nworkers = 2\ngpu_sharing = true", tmp_path), env={})
    check_local_steps(shared, [step(gpus=2)])
    none = local_host_spec(BUILT_IN_LOCAL_HOST, env={"CUDA_VISIBLE_DEVICES": ""})
    with pytest.raises(DoesNotFitHost, match=r"1 GPU\(s\); host 'local' has no GPUs \(CUDA_VISIBLE_DEVICES=\)"):
        check_local_steps(none, [step(gpus=1)])


def test_local_refuses_more_cores_or_memory_than_declared(tmp_path: Path) -> None:
    spec = local_host_spec(local('cores = 4\nmemory = "4G"\nworkers = 2', tmp_path), env={})
    check_local_steps(spec, [step(cpus=4), step(cpus=2, mpi_ranks=2), step(memory_mb=2048)])
    with pytest.raises(DoesNotFitHost, match=r"^step 'big' asks for 6 core\(s\) \(2 CPU\(s\) x 3 MPI rank\(s\)\); "
                                             r"host 'local' has 4 \(cores = 4\)$"):
        check_local_steps(spec, [step("big", cpus=2, mpi_ranks=3)])
    with pytest.raises(DoesNotFitHost, match=r"^step 'fat' asks for 3000 MB of memory; each of the 2 worker\(s\) of "
                                             r"host 'local' may use 2048 MB") as refused:
        check_local_steps(spec, [step("ok"), step("fat", memory_mb=3000), step("fatter", memory_mb=4000)])
    assert "(and 1 more step(s) that do not fit)" in str(refused.value)


def test_the_built_in_host_does_not_limit_cores_or_memory() -> None:
    """Without a declared size MPI steps may oversubscribe this machine, as they always could."""
    spec = local_host_spec(BUILT_IN_LOCAL_HOST, env={"CUDA_VISIBLE_DEVICES": ""})
    check_local_steps(spec, [step(cpus=4, mpi_ranks=1000, memory_mb=10**9)])


HOSTS = """
[hosts.box]
kind = "ssh"
work_dir = "/data/orch"
cores = 8
memory = "16G"
gpus = 2
workers = 2
[hosts.box.ssh]
host = "box.example.org"

[hosts.cluster]
kind = "slurm"
[hosts.cluster.queues.gpu]
cores = 16
memory = "64G"
gpus = 2
[hosts.cluster.pilot]
cores = 4
memory = "8G"
processes = 2
"""


def test_ssh_hosts_hold_a_workers_share(tmp_path: Path) -> None:
    box = parse_hosts(HOSTS, tmp_path / "hosts.toml")["box"]
    check_ssh_steps(box, [step(cpus=4, gpus=1)])
    with pytest.raises(DoesNotFitHost, match=r"step 'refine' asks for 5 CPU\(s\), 0 GPU\(s\), 1 rank\(s\); each of the "
                                             r"2 worker\(s\) of SSH host box holds 4 CPU\(s\) and 1 GPU\(s\)"):
        check_ssh_steps(box, [step(cpus=5)])
    with pytest.raises(DoesNotFitHost, match=r"asks for 20000 MB of memory; SSH host box has 16384 MB"):
        check_ssh_steps(box, [step(memory_mb=20000)])


def test_queue_hosts_take_a_pilot_share_or_a_job_the_queue_can_run(tmp_path: Path) -> None:
    cluster = parse_hosts(HOSTS, tmp_path / "hosts.toml")["cluster"]
    check_queue_steps(cluster, [step(cpus=2), step(cpus=16, gpus=2, memory_mb=60000)])
    with pytest.raises(DoesNotFitHost, match=r"^step 'refine' fits neither a pilot of host cluster nor its queue: "
                                             r"host 'cluster', queue 'gpu': .* nodes"):
        check_queue_steps(cluster, [step(gpus=3)])


# -- env_setup --

def test_env_setup_runs_once_and_gives_what_it_sets(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GONE": "x", "KEPT": "y"}
    script = tmp_path / "env.sh"
    script.write_text("export FROM_FILE='a b'\n")
    change = environment_after(["export RELION=/opt/relion", f"source {script}", "unset GONE",
                                'export PATH="/opt/relion/bin:$PATH"'], where="host 'local'", env=env)
    assert change.changed == {"RELION": "/opt/relion", "FROM_FILE": "a b", "PATH": f"/opt/relion/bin:{env['PATH']}"}
    assert change.unset == ("GONE",)
    assert environment_after([], where="host 'local'", env=env).changed == {}


def test_a_failing_env_setup_line_is_an_error_naming_the_host(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    with pytest.raises(EnvSetupError, match=r"host 'local' \(x.toml\): env_setup failed \(bash exited with 127; .*"
                                            r"module: command not found"):
        environment_after(["export A=1", "module load relion/3.1", "export B=2"], where="host 'local' (x.toml)",
                          env=env)
