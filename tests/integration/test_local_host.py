"""The local host as [hosts.local] configures it, on real worker processes (no GPU needed).

- two fake GPUs declared (``gpus = 2``) and two workers: two one-GPU steps run at once, each
  with one GPU in ``CUDA_VISIBLE_DEVICES``, not the same one;
- GPUs not declared come from ``CUDA_VISIBLE_DEVICES``;
- a step asking for more GPUs, cores or memory than the host has is refused by ``orch run``
  (exit code 2, the step, the resource and the host named, nothing queued), by a workflow file
  and by the Python API alike;
- the cluster has the workers, resources, memory limit and env_setup environment the file says;
  a failing env_setup fails the local runs, not the scheduler;
- without a hosts file the daemon runs as it always did (one worker per core, no limits), and
  ``--workers`` overrides the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.app.runs import submit_run
from orchestrator.cli import main
from orchestrator.hosts.fit import DoesNotFitHost
from orchestrator.project import Project
from orchestrator.scheduler import daemon
from orchestrator.scheduler.executors.local import resolve_local_host, start_local_cluster
from orchestrator.scheduler.lock import running_pid
from orchestrator.store import RunRecord, RunState, StepRecord

pytestmark = pytest.mark.integration

WriteHosts = Callable[[str], None]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project that sees no hosts file but its own, on a machine with no GPU variables set."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("ORCH_HOSTS", "CUDA_VISIBLE_DEVICES", "ORCH_JOB_GPUS"):
        monkeypatch.delenv(name, raising=False)
    return Project.create(tmp_path / "proj")


@pytest.fixture
def hosts(project: Project) -> WriteHosts:
    def write(local_keys: str) -> None:
        (project.path / "hosts.toml").write_text(f'[hosts.local]\nkind = "local"\n{local_keys}\n')
    return write


def orch(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def runs(project: Project) -> list[RunRecord]:
    with project.open_store() as store:
        return store.runs.list()


def steps(project: Project, run_id: int) -> list[StepRecord]:
    with project.open_store() as store:
        return store.steps.list(run_id)


def assert_ran_at_once_on_distinct_gpus(project: Project, run_id: int, devices: set[str]) -> None:
    [run] = [r for r in runs(project) if r.id == run_id]
    assert run.run_state is RunState.FINISHED, run.error
    done = steps(project, run_id)
    seen = [s.result["cuda_visible_devices"] for s in done if s.result]
    assert sorted(seen) == sorted(devices), seen  # each step one GPU, not the same one
    assert all(s.gpus == [int(s.result["cuda_visible_devices"])] for s in done if s.result)
    assert all(s.started_at and s.finished_at for s in done)
    assert max(s.started_at for s in done if s.started_at) < min(s.finished_at for s in done if s.finished_at), \
        "the two GPU steps did not run at once"


def test_two_gpu_steps_run_at_once_each_on_its_own_declared_gpu(project: Project, hosts: WriteHosts,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    hosts('gpus = 2\nworkers = 2\ngpu_type = "fake"')
    code, out, _err = orch(capsys, "run", str(project.path), "testkit.sleep", "count=2", "gpus=1", "seconds=4",
                           "--no-daemon", "--json")
    assert code == 0
    run_id = json.loads(out)["runs"][0]["id"]
    assert daemon.serve(project, idle_exit_s=0.5) == 0
    assert_ran_at_once_on_distinct_gpus(project, run_id, {"0", "1"})


def test_gpus_not_declared_come_from_cuda_visible_devices(project: Project, hosts: WriteHosts,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    hosts("workers = 2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    code, _out, err = orch(capsys, "run", str(project.path), "testkit.sleep", "gpus=3", "--no-daemon")
    assert code == 2 and "step 'sleep_0' asks for 3 GPU(s); host 'local' has 2 GPU(s) (CUDA_VISIBLE_DEVICES=3,5)" in err
    code, out, _err = orch(capsys, "run", str(project.path), "testkit.sleep", "count=2", "gpus=1", "seconds=4",
                           "--no-daemon", "--json")
    assert code == 0
    assert daemon.serve(project, idle_exit_s=0.5) == 0
    assert_ran_at_once_on_distinct_gpus(project, json.loads(out)["runs"][0]["id"], {"3", "5"})


def test_more_gpus_than_the_host_has_are_refused_at_submit_by_every_front_end(
        project: Project, hosts: WriteHosts, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hosts("gpus = 2\nworkers = 2")
    code, out, err = orch(capsys, "run", str(project.path), "testkit.sleep", "count=2", "gpus=3")
    assert code == 2 and out == ""
    assert "step 'sleep_0' asks for 3 GPU(s); host 'local' has 2 GPU(s) (gpus = 2)" in err
    assert "(and 1 more step(s) that do not fit)" in err
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"runs": [
        {"name": "fits", "protocol": "testkit.sleep", "params": {"gpus": 1}},
        {"name": "too-big", "protocol": "testkit.sleep", "params": {"gpus": 2}}]}))
    code, _out, err = orch(capsys, "run", str(project.path), "--workflow", str(workflow))
    assert code == 2
    assert "run 2 ('too-big')" in err or "too-big" in err
    assert "step 'sleep_0' asks for 2 GPU(s); host 'local' has 2, dealt over 2 worker(s), so a step gets at most 1" \
        in err
    with pytest.raises(DoesNotFitHost, match=r"step 'sleep_0' asks for 3 GPU\(s\); host 'local' has 2 GPU\(s\)"):
        submit_run(project, "testkit.sleep", {"gpus": 3})
    assert runs(project) == []  # nothing queued, by any of them
    assert running_pid(project) is None  # and no scheduler started for it


def test_more_cores_or_memory_than_declared_are_refused_at_submit(project: Project, hosts: WriteHosts,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    hosts('cores = 4\nmemory = "4G"\nworkers = 2')
    refusals = {
        ("cpus=5",): "step 'sleep_0' asks for 5 core(s) (5 CPU(s) x 1 MPI rank(s)); host 'local' has 4 (cores = 4)",
        ("cpus=2", "mpi_ranks=3"): "step 'sleep_0' asks for 6 core(s) (2 CPU(s) x 3 MPI rank(s)); host 'local' has 4",
        ("memory_mb=3000",): "step 'sleep_0' asks for 3000 MB of memory; each of the 2 worker(s) of host 'local' "
                             "may use 2048 MB (memory = 4096 MB shared by the workers",
    }
    for params, message in refusals.items():
        code, _out, err = orch(capsys, "run", str(project.path), "testkit.sleep", *params, "--no-daemon")
        assert code == 2 and message in err, (params, err)
    assert runs(project) == []
    code, _out, _err = orch(capsys, "run", str(project.path), "testkit.sleep", "cpus=4", "memory_mb=2000",
                            "--no-daemon")
    assert code == 0 and [r.run_state for r in runs(project)] == [RunState.QUEUED]


def test_a_run_whose_inputs_are_not_produced_yet_is_checked_when_it_starts(
        project: Project, hosts: WriteHosts, capsys: pytest.CaptureFixture[str]) -> None:
    """testkit.chain's steps come from its input's files: they cannot be built at submit."""
    hosts('memory = "1G"\nworkers = 1')
    assert orch(capsys, "run", str(project.path), "testkit.produce", "--name", "p", "--no-daemon")[0] == 0
    assert orch(capsys, "run", str(project.path), "testkit.chain", "source=p.files", "--no-daemon")[0] == 0
    assert [r.run_state for r in runs(project)] == [RunState.QUEUED, RunState.QUEUED]
    assert daemon.serve(project, idle_exit_s=0.5) == 0
    assert [r.run_state for r in runs(project)] == [RunState.FINISHED, RunState.FINISHED]


def test_the_cluster_has_the_workers_resources_memory_and_environment_of_the_file(
        project: Project, hosts: WriteHosts) -> None:
    hosts('cores = 4\nmemory = "3G"\ngpus = 2\nworkers = 3\n'
          'env_setup = ["export ORCH_TEST_SETUP=\'from env_setup\'", "export PATH=/opt/fake/bin:$PATH"]')
    spec = resolve_local_host(project.path)
    cluster, client = start_local_cluster(spec)
    try:
        workers = client.scheduler_info()["workers"]
        assert sorted((w["name"], w["resources"]) for w in workers.values()) == [
            (0, {"cpus": 1.0, "gpus": 1.0}), (1, {"cpus": 1.0, "gpus": 1.0}), (2, {"cpus": 1.0})]
        assert {w["memory_limit"] for w in workers.values()} == {1024 * 2**20}
        seen = client.run(lambda: (os.environ.get("ORCH_TEST_SETUP"), os.environ.get("CUDA_VISIBLE_DEVICES"),
                                   os.environ["PATH"].split(":")[0]))
        by_name = {workers[address]["name"]: value for address, value in seen.items()}
        assert by_name == {0: ("from env_setup", "0", "/opt/fake/bin"), 1: ("from env_setup", "1", "/opt/fake/bin"),
                           2: ("from env_setup", os.environ.get("CUDA_VISIBLE_DEVICES"), "/opt/fake/bin")}
    finally:
        client.close()
        cluster.close()


def test_a_failing_env_setup_fails_the_local_runs_with_its_error(project: Project, hosts: WriteHosts,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    hosts('workers = 1\nenv_setup = ["export A=1", "no-such-command-here --load relion"]')
    assert orch(capsys, "run", str(project.path), "testkit.noop", "--no-daemon")[0] == 0
    assert daemon.serve(project, idle_exit_s=0.5) == 0
    [run] = runs(project)
    assert run.run_state is RunState.FAILED
    assert "host 'local'" in (run.error or "") and "env_setup failed" in (run.error or "")
    assert "no-such-command-here: command not found" in (run.error or "")


def test_without_a_hosts_file_the_daemon_runs_as_before(project: Project, capsys: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.scheduler.executors.local")
    assert orch(capsys, "run", str(project.path), "testkit.noop", "count=6", "--no-daemon")[0] == 0
    assert daemon.serve(project, idle_exit_s=0.5) == 0
    [run] = runs(project)
    assert run.run_state is RunState.FINISHED
    cores = os.cpu_count() or 1
    [layout] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("host local: ")]
    assert layout.startswith(f"host local: {cores} worker(s) of 1 CPU(s); ")  # the GPUs are this machine's
    assert "MB each" not in layout and "env_setup" not in layout  # no memory limit, no environment added
    assert len({s.worker for s in steps(project, run.id)}) <= cores


def test_orch_daemon_workers_overrides_the_file(project: Project, hosts: WriteHosts,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    hosts("workers = 1")
    code, out, _err = orch(capsys, "run", str(project.path), "testkit.sleep", "count=2", "seconds=3", "--no-daemon",
                           "--json")
    assert code == 0
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    done = steps(project, json.loads(out)["runs"][0]["id"])
    assert len({s.worker for s in done}) == 2
    assert max(s.started_at for s in done if s.started_at) < min(s.finished_at for s in done if s.finished_at)
