"""``orch hosts check`` and the SSH command runner against the REAL test sshd (tests/infra/sshd.sh)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from infra.services import require_service

from orchestrator.cli import main
from orchestrator.hosts.config.loader import load_hosts_file
from orchestrator.hosts.runner import SshRunner

pytestmark = pytest.mark.integration


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    env = require_service("sshd")
    path = tmp_path / "hosts.toml"
    path.write_text(f"""
[hosts.box]
kind = "ssh"
work_dir = "/tmp/orch-ci-check-$(touch PWNED) it's"
gpus = 0
[hosts.box.ssh]
host = "{env['ORCH_TEST_SSH_HOST']}"
port = {env['ORCH_TEST_SSH_PORT']}
user = "{env['ORCH_TEST_SSH_USER']}"
key = "{env['ORCH_TEST_SSH_KEY']}"
known_hosts = "{env['ORCH_TEST_SSH_KNOWN_HOSTS']}"

[hosts.nobody]
kind = "ssh"
work_dir = "/tmp"
[hosts.nobody.ssh]
host = "127.0.0.1"
port = 9
key = "{env['ORCH_TEST_SSH_KEY']}"
""")
    return path


def test_check_over_ssh(hosts_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORCH_HOSTS", str(hosts_file))
    assert main(["hosts", "check", "box", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["reachable"]["ok"] and "answers" in checks["reachable"]["detail"]
    assert checks["work dir writable"]["ok"]
    assert checks["GPUs seen"]["ok"]
    box = load_hosts_file(hosts_file)["box"]
    runner = SshRunner(box.ssh)
    # arguments stay arguments through the remote shell
    result = runner.run(["printf", "%s|", "a b", "$(touch PWNED)", "it's"])
    assert result.ok and result.stdout == "a b|$(touch PWNED)|it's|"
    assert runner.read_text(box.work_dir + "/missing") is None
    assert runner.run(["ls", box.work_dir]).ok and not runner.run(["ls", "PWNED"]).ok
    runner.run(["rm", "-rf", "--", box.work_dir])


def test_unreachable_host_fails_the_check(hosts_file: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORCH_HOSTS", str(hosts_file))
    assert main(["hosts", "check", "nobody", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in report["checks"]] == ["reachable"]
    assert "cannot reach 127.0.0.1 port 9" in report["checks"][0]["detail"]
