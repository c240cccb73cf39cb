"""Hosts files: validation messages name the file, the host and the key; lookup order."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.hosts.config.loader import load_hosts, load_hosts_file, parse_hosts
from orchestrator.hosts.config.model import HostKind
from orchestrator.hosts.config.units import parse_duration_s, parse_memory_mb, parse_walltime_s
from orchestrator.hosts.errors import HostConfigError, UnknownHostError

REPO = Path(__file__).resolve().parents[2]
NOWHERE = Path("/nonexistent/hosts.toml")

SLURM_HOST = """
[hosts.cluster]
kind = "slurm"
work_dir = "/scratch/orch"
shared_fs = true
max_jobs = 10
env_setup = ["module load relion/3.1"]

[hosts.cluster.path_map]
"/home" = "/cluster/home"

[hosts.cluster.queues.gpu]
cores = 32
memory = "256G"
gpus = 4
gpu_type = "a100"
gpu_request = "--gres=gpu:{type}:{n}"
walltime = "1-00:00:00"

[hosts.cluster.pilot]
cores = 8
memory = "16G"
walltime = "02:00:00"
processes = 8
"""


def write(tmp_path: Path, text: str, name: str = "hosts.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(HostConfigError) as info:
        load_hosts_file(path)
    return str(info.value)


def test_valid_file_becomes_records(tmp_path: Path) -> None:
    hosts = load_hosts_file(write(tmp_path, SLURM_HOST))
    host = hosts["cluster"]
    assert host.kind == "slurm" and host.is_queue and host.default_queue == "gpu"
    queue = host.queue()
    assert (queue.cores, queue.memory_mb, queue.gpus, queue.walltime_s) == (32, 256 * 1024, 4, 86400)
    assert host.pilot.queue == "gpu" and host.pilot.memory_mb == 16384 and host.pilot.walltime_s == 7200
    assert host.map_path("/home/alice/em/run1") == "/cluster/home/alice/em/run1"
    assert host.map_path("/homework/x") == "/homework/x"  # a prefix must end at a path separator
    assert host.env_setup == ("module load relion/3.1",)
    assert host.source == tmp_path / "hosts.toml"


def test_a_queue_systems_own_keys_come_from_its_backend(tmp_path: Path) -> None:
    hosts = load_hosts_file(write(tmp_path, '[hosts.ge]\nkind = "sge"\n[hosts.ge.queues.a]\nparallel_env = "mpi"\n'
                                            '[hosts.ge.queues.b]\n'))
    assert hosts["ge"].queues["a"].options == {"parallel_env": "mpi"}
    assert hosts["ge"].queues["b"].options == {"parallel_env": "smp"}  # the backend's default


def test_pilots_are_on_unless_the_file_turns_them_off(tmp_path: Path) -> None:
    assert load_hosts_file(write(tmp_path, SLURM_HOST))["cluster"].pilot.enabled
    off = SLURM_HOST.replace("[hosts.cluster.pilot]\n", "[hosts.cluster.pilot]\nenabled = false\n")
    assert not load_hosts_file(write(tmp_path, off))["cluster"].pilot.enabled


def test_unknown_key_names_file_host_and_key_with_a_suggestion(tmp_path: Path) -> None:
    message = error_of(tmp_path, SLURM_HOST.replace("max_jobs = 10", "max_job = 10"))
    assert str(tmp_path / "hosts.toml") in message
    assert "host 'cluster'" in message and "key 'max_job'" in message
    assert "unknown key" in message and "did you mean 'max_jobs'" in message


def test_nested_key_is_named_with_its_path(tmp_path: Path) -> None:
    message = error_of(tmp_path, SLURM_HOST.replace("cores = 32", "cores = \"32x\""))
    assert "host 'cluster': key 'queues.gpu.cores': must be an integer >= 1, got '32x'" in message
    message = error_of(tmp_path, SLURM_HOST.replace("gpu_typ", "gpu_typ").replace('gpu_type = "a100"',
                                                                                  'gpu_kind = "a100"'))
    assert "key 'queues.gpu.gpu_kind': unknown key" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = SLURM_HOST.replace('memory = "256G"', 'memory = "lots"').replace('walltime = "1-00:00:00"',
                                                                          'walltime = "forever"')
    message = error_of(tmp_path, text)
    assert message.startswith(f"2 problem(s) in hosts file {tmp_path / 'hosts.toml'}")
    assert "key 'queues.gpu.memory': expected a size" in message
    assert "key 'queues.gpu.walltime': expected a wall time" in message


@pytest.mark.parametrize(("text", "expected"), [
    ('[hosts.a]\nkind = "lsf"\n', "key 'kind': must be one of local, ssh, slurm, sge, pbs, got 'lsf'"),
    ('[hosts.a]\nwork_dir = "/x"\n', "host 'a': key 'kind': is required"),
    ('[hosts.a]\nkind = "slurm"\n', "key 'queues': a slurm host needs at least one"),
    ('[hosts.a]\nkind = "ssh"\nwork_dir = "/w"\n', "key 'ssh': is required for kind 'ssh'"),
    ('[hosts.a]\nkind = "ssh"\n[hosts.a.ssh]\nhost = "box"\n', "key 'work_dir': is required"),
    ('[hosts.a]\nkind = "local"\n[hosts.a.ssh]\nhost = "box"\n', "key 'ssh': makes no sense for kind 'local'"),
    ('[hosts.a]\nkind = "local"\nqueues = {}\n', "key 'queues': unknown key for kind 'local'"),
    ('[hosts.a]\nkind = "slurm"\ncores = 4\n[hosts.a.queues.q]\n', "key 'cores': unknown key for kind 'slurm'"),
    ('[hosts.a]\nkind = "ssh"\nwork_dir = "/w"\n[hosts.a.ssh]\nhost = "b"\n[hosts.a.path_map]\n"/a" = "/b"\n',
     "needs shared_fs = true"),
    ('[hosts.a]\nkind = "slurm"\n[hosts.a.queues.q]\ngpu_request = "--gres=gpu:{count}"\n',
     "key 'queues.q.gpu_request': may only use the fields {n}, {type}; got {count}"),
    ('[hosts.a]\nkind = "slurm"\ndefault_queue = "x"\n[hosts.a.queues.q]\n',
     "key 'default_queue': names no queue of this host (q)"),
    ('[hosts.a]\nkind = "slurm"\n[hosts.a.queues.q]\ncores = 4\n[hosts.a.pilot]\ncores = 8\n',
     "key 'pilot.cores': 8 is more than queue 'q' has per node (4)"),
    ('[hosts.a]\nkind = "slurm"\n[hosts.a.queues.q]\n[hosts.a.pilot]\nenabled = "no"\n',
     "key 'pilot.enabled': must be true or false"),
    ('[hosts.a]\nkind = "slurm"\nextra_directives = ["--a\\n--b"]\n[hosts.a.queues.q]\n',
     "key 'extra_directives': must be one line"),
    ('[hosts."bad name"]\nkind = "local"\n', "host 'bad name': invalid host name"),
    ('[hosts.a]\nkind = "slurm"\ntemplate = "nope.sh.j2"\n[hosts.a.queues.q]\n', "key 'template': no such template"),
    ('[host.a]\nkind = "local"\n', "unknown top-level key 'host'"),
    ('[hosts.a]\nkind = ["slurm"]\n', "key 'kind': must be a string"),
    # a queue table's keys of one queue system belong to its backend: Grid Engine's, not SLURM's
    ('[hosts.a]\nkind = "slurm"\n[hosts.a.queues.q]\nparallel_env = "smp"\n',
     "key 'queues.q.parallel_env': unknown key"),
    ('[hosts.a]\nkind = "sge"\n[hosts.a.queues.q]\nparallel_env = ""\n',
     "key 'queues.q.parallel_env': must not be empty"),
])
def test_invalid_files(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert expected in message
    assert str(tmp_path / "hosts.toml") in message


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[hosts.a\nkind = 1")
    assert message.startswith(f"{tmp_path / 'hosts.toml'}: not valid TOML")


def test_lookup_order_and_builtin_local(tmp_path: Path) -> None:
    user = write(tmp_path, '[hosts.box]\nkind = "local"\ncores = 2\n[hosts.old]\nkind = "local"\n', "user.toml")
    project = tmp_path / "proj"
    project.mkdir()
    write(project, '[hosts.box]\nkind = "local"\ncores = 4\n')
    env_file = write(tmp_path, '[hosts.box]\nkind = "local"\ncores = 8\n', "env.toml")
    registry = load_hosts(project, env={"ORCH_HOSTS": str(env_file)}, user_config=user)
    assert registry.files == [user, project / "hosts.toml", env_file]
    assert registry.get("box").cores == 8 and registry.get("box").source == env_file
    assert "old" in registry and "local" in registry
    assert load_hosts(project, env={}, user_config=user).get("box").cores == 4
    assert load_hosts(None, env={}, user_config=user).get("box").cores == 2
    only_builtin = load_hosts(None, env={}, user_config=NOWHERE)
    assert only_builtin.names() == ["local"] and only_builtin.get("local").kind == HostKind.LOCAL


def test_missing_orch_hosts_file_and_unknown_host(tmp_path: Path) -> None:
    with pytest.raises(HostConfigError, match="ORCH_HOSTS names .*missing.toml, which is not a file"):
        load_hosts(None, env={"ORCH_HOSTS": str(tmp_path / "missing.toml")}, user_config=NOWHERE)
    with pytest.raises(UnknownHostError, match="unknown host 'gpu'; known: local"):
        load_hosts(None, env={}, user_config=NOWHERE).get("gpu")


def test_xdg_config_home_is_the_user_file(tmp_path: Path) -> None:
    config = tmp_path / "xdg" / "orchestrator"
    config.mkdir(parents=True)
    write(config, '[hosts.mine]\nkind = "local"\n')
    assert "mine" in load_hosts(None, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})


@pytest.mark.parametrize("name", ["workstation", "slurm-gpu-cluster", "pbs-pro-cluster", "sge-cluster",
                                  "ssh-gpu-box", "ci-test"])
def test_example_files_are_valid(name: str) -> None:
    hosts = load_hosts_file(REPO / "hosts" / f"{name}.toml")
    assert hosts


def test_template_override_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "site.sh.j2").write_text("{% extends 'slurm.sh.j2' %}\n")
    text = '[hosts.a]\nkind = "slurm"\ntemplate = "site.sh.j2"\n[hosts.a.queues.q]\n'
    assert parse_hosts(text, tmp_path / "hosts.toml")["a"].template == str(tmp_path / "site.sh.j2")


def test_units() -> None:
    assert parse_memory_mb("16G") == 16384 and parse_memory_mb("500M") == 500 and parse_memory_mb(2000) == 2000
    assert parse_memory_mb("1.5T") == 1572864 and parse_memory_mb("16GB") == 16384
    assert parse_walltime_s("2-00:00:00") == 172800 and parse_walltime_s("1:30:00") == 5400
    assert parse_walltime_s(60) == 60 and parse_walltime_s("2-12") == 216000
    for ambiguous in ("90:00", "3600", "1:2:3"):
        with pytest.raises(ValueError, match="expected a wall time"):
            parse_walltime_s(ambiguous)
    assert parse_duration_s("1-02:03:04") == 93784 and parse_duration_s("5:03") == 303
    assert parse_duration_s("00:00.229") == pytest.approx(0.229) and parse_duration_s("INVALID") is None
    for bad in ("-1G", "lots", True):
        with pytest.raises(ValueError):
            parse_memory_mb(bad)  # type: ignore[arg-type]
