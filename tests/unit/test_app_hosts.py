"""The application layer's hosts, queue and transfers (without a queue system or an SSH host)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.app import hosts, queue, transfers
from orchestrator.app.errors import http_status
from orchestrator.errors import NotFoundError, OrchestratorError
from orchestrator.project import Project

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _hosts_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user hosts file
    monkeypatch.setenv("ORCH_HOSTS", str(REPO / "hosts" / "slurm-gpu-cluster.toml"))


def test_list_and_show_hosts(tmp_path: Path) -> None:
    listed = hosts.list_hosts()
    by_name = {host.name: host for host in listed.hosts}
    assert set(by_name) == {"local", "cluster"} and listed.files == [REPO / "hosts" / "slurm-gpu-cluster.toml"]
    assert by_name["cluster"].queues == ["cpu", "gpu"] and by_name["cluster"].gpus == "gpu: 4 a100"
    assert by_name["local"].reach == "this machine" and by_name["local"].source is None
    json.dumps(listed.to_dict())
    cluster = hosts.show_host("cluster")
    assert cluster.queues["gpu"].gpus == 4
    project = Project.create(tmp_path / "proj")
    (project.path / "hosts.toml").write_text('[hosts.box]\nkind = "ssh"\nwork_dir = "/scratch/orch"\n'
                                             '[hosts.box.ssh]\nhost = "box.example.org"\nuser = "me"\n')
    assert "box" in {host.name for host in hosts.list_hosts(project.path).hosts}  # the project's own file
    assert hosts.reach(hosts.show_host("box", project)) == "ssh me@box.example.org:22"


def test_unknown_host_is_not_found() -> None:
    with pytest.raises(OrchestratorError, match="unknown host 'nope'; known: cluster, local") as caught:
        hosts.show_host("nope")
    assert http_status(caught.value) == 404


def test_check_the_local_host_for_real() -> None:
    report = hosts.check_host("local")
    assert report.ok and report.host == "local"
    assert [check.name for check in report.checks] == ["reachable", "work dir writable", "GPUs seen"]
    assert json.loads(json.dumps(report.to_dict()))["checks"][0]["ok"] is True


def test_queue_of_a_project_without_batch_jobs(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "proj")
    report = queue.queue_jobs(project.path)
    assert (report.project, report.jobs, report.errors) == ("proj", [], {})
    with pytest.raises(OrchestratorError, match="unknown host 'elsewhere'"):
        queue.queue_jobs(project.path, "elsewhere")


def test_transfers_of_a_project_that_moved_nothing(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "proj")
    report = transfers.transfer_status(project.path)
    assert report.to_dict() == {"project": "proj", "active": [], "recent": []} and not report.moving
    with pytest.raises(NotFoundError, match="no run 'ctf'"):
        transfers.transfer_status(project.path, "ctf")
