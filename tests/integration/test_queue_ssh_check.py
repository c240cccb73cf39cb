"""``orch hosts check`` and the command runners against the REAL test sshd (tests/infra/sshd.sh).

Every runner (this machine, a pool of paramiko connections, the OpenSSH client) answers the
same :class:`~orchestrator.hosts.runner.CommandRunner` contract; the same tests run on each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from infra.services import require_service

from orchestrator.cli import main
from orchestrator.hosts.config.loader import load_hosts_file
from orchestrator.hosts.errors import QueueCommandError
from orchestrator.hosts.runner import CommandRunner, LocalRunner, runner_for
from orchestrator.hosts.ssh.client import SSHPool
from orchestrator.hosts.ssh.openssh import OpenSSHShell
from orchestrator.hosts.ssh.target import SSHTarget

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
    runner = runner_for(box)
    assert isinstance(runner, SSHPool) and runner.env_setup == box.env_setup
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
    assert "cannot reach the SSH server on 127.0.0.1 port 9" in report["checks"][0]["detail"]


def _target(port: int | None = None, known_hosts: Path | None = None) -> SSHTarget:
    env = require_service("sshd")
    return SSHTarget(env["ORCH_TEST_SSH_HOST"], port or int(env["ORCH_TEST_SSH_PORT"]), env["ORCH_TEST_SSH_USER"],
                     Path(env["ORCH_TEST_SSH_KEY"]), known_hosts or Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"]))


RUNNERS: dict[str, Callable[..., CommandRunner]] = {
    "local": lambda **_: LocalRunner(),
    "paramiko": lambda env_setup=(), **where: SSHPool(_target(**where), 2, env_setup=env_setup),
    "openssh": lambda env_setup=(), **where: OpenSSHShell(_target(**where), env_setup=env_setup),
}


@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_every_runner_answers_the_same_contract(kind: str) -> None:
    runner = RUNNERS[kind]()
    folder = f"/tmp/orch-ci-runner-{kind}-{time.time_ns()} it's"
    try:
        result = runner.run(["printf", "%s|", "a b", "$(touch PWNED)", "it's"])
        assert result.ok and result.stdout == "a b|$(touch PWNED)|it's|" and result.argv[0] == "printf"
        failed = runner.run(["sh", "-c", "echo 'no such queue' >&2; exit 4"])
        assert (failed.ok, failed.exit_code, failed.stderr) == (False, 4, "no such queue\n")
        assert failed.describe().endswith("exited 4: no such queue")
        assert runner.run(["cat"], input_text="line one\nline two\n").stdout == "line one\nline two\n"
        runner.make_dirs(folder + "/sub")
        runner.write_text(folder + "/sub/job.sh", "#!/bin/sh\necho ü\n")
        assert runner.read_text(folder + "/sub/job.sh") == "#!/bin/sh\necho ü\n"
        assert runner.read_text(folder + "/missing") is None
        began = time.monotonic()
        with pytest.raises(QueueCommandError, match="did not answer within 1 s") as caught:
            runner.run(["sleep", "30"], timeout_s=1)
        assert caught.value.transient and time.monotonic() - began < 10
    finally:
        runner.run(["rm", "-rf", "--", folder])
        close = getattr(runner, "close", None)
        if close is not None:
            close()


@pytest.mark.parametrize("kind", ["openssh", "paramiko"])
def test_ssh_runners_run_the_hosts_set_up_lines_first(kind: str) -> None:
    runner = RUNNERS[kind](env_setup=("export QUEUE_CONF=/etc/queue.conf", "cd /tmp"))
    result = runner.run(["sh", "-c", 'echo "$QUEUE_CONF $(pwd) $1"', "sh", "it's $HOME"])
    assert result.stdout == "/etc/queue.conf /tmp it's $HOME\n"


@pytest.mark.parametrize("kind", ["openssh", "paramiko"])
def test_an_unreachable_host_is_a_transient_error_that_names_it(kind: str) -> None:
    runner = RUNNERS[kind](port=9)
    with pytest.raises(QueueCommandError, match="cannot reach the SSH server on 127.0.0.1 port 9") as caught:
        runner.run(["true"])
    assert caught.value.transient


@pytest.mark.parametrize("kind", ["openssh", "paramiko"])
def test_a_host_key_not_in_known_hosts_is_refused_for_good(kind: str, tmp_path: Path) -> None:
    """The same strict known_hosts rule whichever client runs the command: refused, not retried."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    runner = RUNNERS[kind](known_hosts=empty)
    with pytest.raises(QueueCommandError, match="Host key verification failed|unknown host key") as caught:
        runner.run(["true"])
    assert not caught.value.transient and empty.read_text() == ""
