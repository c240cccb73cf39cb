"""``orch hosts`` and ``orch queue`` without a queue system (the real ones: tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lifecycle_helpers import put_step

from orchestrator.cli import main
from orchestrator.hosts.config.loader import load_hosts
from orchestrator.hosts.queues.view import jobs_in_store
from orchestrator.project import Project
from orchestrator.store import StepState

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _hosts_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user hosts file
    monkeypatch.setenv("ORCH_HOSTS", str(REPO / "hosts" / "slurm-gpu-cluster.toml"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_hosts_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hosts", "list", "--json")
    assert code == 0
    hosts = {h["name"]: h for h in json.loads(out)}
    assert set(hosts) == {"local", "cluster"} and hosts["cluster"]["queues"] == ["cpu", "gpu"]
    assert hosts["cluster"]["gpus"] == "gpu: 4 a100"
    code, out, _ = run(capsys, "hosts", "show", "cluster", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["queues"]["gpu"]["gpu_request"] == "--gres=gpu:{type}:{n}"
    assert shown["path_map"] == {"/home": "/cluster/home"} and shown["pilot"]["max_pilots"] == 20
    code, out, _ = run(capsys, "hosts", "show", "cluster")
    assert code == 0 and "module load relion/3.1.3-cuda11" in out


def test_show_says_when_pilots_are_off(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_HOSTS", str(REPO / "hosts" / "ci-test.toml"))
    code, out, _ = run(capsys, "hosts", "show", "ci-slurm-jobs")
    assert code == 0 and "off: every step runs as its own batch job" in out
    code, out, _ = run(capsys, "hosts", "show", "ci-slurm-jobs", "--json")
    assert code == 0 and json.loads(out)["pilot"]["enabled"] is False


def test_errors_are_messages_with_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, "hosts", "show", "nope")
    assert code == 3 and "unknown host 'nope'; known: cluster, local" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('[hosts.x]\nkind = "slurm"\nmax_job = 3\n[hosts.x.queues.q]\n')
    monkeypatch.setenv("ORCH_HOSTS", str(bad))
    code, _, err = run(capsys, "hosts", "list")
    assert code == 2 and f"{bad}: host 'x': key 'max_job': unknown key" in err


def test_local_check_runs_for_real(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hosts", "check", "local", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and [c["name"] for c in report["checks"]] == [
        "reachable", "work dir writable", "GPUs seen"]


def test_queue_reads_job_ids_from_the_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    project = Project.create(tmp_path / "proj")
    code, out, _ = run(capsys, "queue", "--project", str(project.path))
    assert code == 0 and "no batch jobs in project proj" in out
    with project.open_store() as store:
        run_id = store.runs.create("testkit.fanout", {}).id
        ids = store.steps.add(run_id, [{"name": f"s{i}", "func": "f"} for i in range(3)])
        put_step(store, ids["s0"], StepState.RUNNING, host="cluster", job_id="101")
        put_step(store, ids["s1"], StepState.FINISHED, host="cluster", job_id="100")
        put_step(store, ids["s2"], StepState.RUNNING, host="local")
        jobs = jobs_in_store(store)
        assert {h: dict(j) for h, j in jobs.items()} == {"cluster": {"101": jobs["cluster"]["101"]}}
        assert set(jobs_in_store(store, include_finished=True)["cluster"]) == {"100", "101"}
    code, _, err = run(capsys, "queue", "elsewhere", "--project", str(project.path))
    assert code == 3 and "unknown host 'elsewhere'" in err
    assert "cluster" in load_hosts(project.path)
