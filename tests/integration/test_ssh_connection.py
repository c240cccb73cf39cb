"""SSH connections against a real OpenSSH server (tests/infra/sshd.sh): host keys, logins,
commands, port forwards, the pool. Outside CI a missing sshd skips; in CI it fails.

The command API (run, files, timeouts) of every shell is checked in test_queue_ssh_check.py."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from infra.services import require_service

from orchestrator.hosts.ssh.client import ChannelProcess, SSHConnection, SSHPool, connect, shared_pool
from orchestrator.hosts.ssh.shell import RemoteProcess
from orchestrator.hosts.ssh.target import HostKeyMismatchError, HostKeyUnknownError, SSHAuthError, SSHTarget

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def target() -> SSHTarget:
    env = require_service("sshd", start=os.geteuid() == 0)
    return SSHTarget(env["ORCH_TEST_SSH_HOST"], int(env["ORCH_TEST_SSH_PORT"]), env["ORCH_TEST_SSH_USER"],
                     Path(env["ORCH_TEST_SSH_KEY"]), Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"]))


@pytest.fixture(scope="module")
def conn(target: SSHTarget) -> Iterator[SSHConnection]:
    with connect(target) as connection:
        yield connection


def _server_fingerprint(target: SSHTarget) -> str:
    """What ``ssh-keygen -lf`` says of the host key in the test known_hosts file."""
    listed = subprocess.run(["ssh-keygen", "-lf", str(target.known_hosts_file)], capture_output=True, text=True,
                            check=True).stdout
    return listed.split()[1]


def test_command_output_exit_code_and_quoting(conn: SSHConnection) -> None:
    result = conn.run(["printf", "%s|", "two words", "$HOME", "it's"])
    assert result.ok and result.stdout == "two words|$HOME|it's|"
    assert conn.run(["sh", "-c", "exit 7"]).exit_code == 7
    assert conn.run(["cat"], input_text="x" * 300_000).stdout == "x" * 300_000


def test_failing_command_reports_its_stderr(conn: SSHConnection) -> None:
    result = conn.run(["sh", "-c", "echo 'step log: CTF fit diverged' >&2; exit 3"])
    assert result.exit_code == 3 and not result.ok
    assert "CTF fit diverged" in result.stderr
    assert "exited 3: step log: CTF fit diverged" in result.describe()


def test_unknown_host_key_is_refused_with_fingerprint_and_how_to_accept(target: SSHTarget, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    stranger = SSHTarget(target.host, target.port, target.user, target.key_path, empty)
    with pytest.raises(HostKeyUnknownError) as caught:
        connect(stranger)
    message = str(caught.value)
    assert _server_fingerprint(target) in message
    assert f"ssh-keyscan -p {target.port} -t ed25519 {target.host} >> {empty}" in message
    assert empty.read_text() == ""  # nothing added silently
    # following the advice works
    scanned = subprocess.run(["ssh-keyscan", "-p", str(target.port), "-t", "ed25519", target.host],
                             capture_output=True, text=True, check=True).stdout
    empty.write_text(scanned)
    connect(stranger).close()


def test_changed_host_key_is_refused(target: SSHTarget, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    wrong = tmp_path / "known_hosts"
    name = target.known_hosts_file.read_text().split()[0]
    key_type, key_data = (tmp_path / "other.pub").read_text().split()[:2]
    wrong.write_text(f"{name} {key_type} {key_data}\n")
    with pytest.raises(HostKeyMismatchError, match="HOST KEY CHANGED.*ssh-keygen -R"):
        connect(SSHTarget(target.host, target.port, target.user, target.key_path, wrong))


def test_a_key_the_host_does_not_accept_is_refused_without_asking_for_a_password(target: SSHTarget,
                                                                                  tmp_path: Path) -> None:
    key_file = tmp_path / "id_ecdsa"
    paramiko.ECDSAKey.generate().write_private_key_file(str(key_file))
    stranger = SSHTarget(target.host, target.port, target.user, key_file, target.known_hosts)
    with pytest.raises(SSHAuthError, match="login refused.*authorized_keys"):
        connect(stranger)
    with pytest.raises(SSHAuthError, match="does not exist"):
        connect(SSHTarget(target.host, target.port, target.user, tmp_path / "nope", target.known_hosts))


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                while data := client.recv(65536):
                    client.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_local_forward_reaches_a_port_on_the_host(conn: SSHConnection) -> None:
    server, port = _echo_server()
    forward = conn.forward_local(port)
    try:
        with socket.create_connection(("127.0.0.1", forward.port), timeout=10) as client:
            client.sendall(b"scheduler")
            assert client.recv(100) == b"SCHEDULER"
    finally:
        forward.close()
        server.close()


def test_remote_forward_lets_the_host_reach_us_over_ssh_only(conn: SSHConnection) -> None:
    server, port = _echo_server()
    forward = conn.forward_remote(port)
    try:
        probe = (f"import socket; s = socket.create_connection(('127.0.0.1', {forward.port}), timeout=10); "
                 "s.sendall(b'worker'); print(s.recv(100).decode())")
        assert conn.run(["python3", "-c", probe]).stdout.strip() == "WORKER"
    finally:
        forward.close()
        server.close()


def _transport(process: RemoteProcess) -> paramiko.Transport:
    assert isinstance(process, ChannelProcess)
    return process.channel.get_transport()


def test_pool_opens_several_connections_and_reuses_them(target: SSHTarget) -> None:
    with SSHPool(target, size=3) as pool:
        # three streams at once: each holds its own connection
        processes = [pool.start(["cat"]) for _ in range(3)]
        transports = {id(_transport(process)) for process in processes}
        assert len(transports) == 3
        for process in processes:
            process.close_stdin()
            assert process.read_all() == b"" and process.wait(10) == 0
            process.close()
        # closed: their connections are kept and reused
        with pool.start(["true"]) as again:
            assert id(_transport(again)) in transports
        assert pool.run(["true"]).ok


def test_pool_replaces_a_connection_the_server_dropped(target: SSHTarget) -> None:
    with SSHPool(target, size=1) as pool:
        with pool.start(["true"]) as first:
            kept = _transport(first)
        kept.sock.shutdown(socket.SHUT_RDWR)  # what a restarted sshd or a NAT timeout leaves
        result = pool.run(["echo", "again"])
        assert result.ok and result.stdout == "again\n"
        with pool.start(["true"]) as second:
            assert _transport(second) is not kept


def test_shared_pool_is_one_per_target_and_process(target: SSHTarget) -> None:
    setup = ("export ORCH_MARK=1",)
    assert shared_pool(target) is shared_pool(target)
    assert shared_pool(target, env_setup=setup) is not shared_pool(target)
    assert shared_pool(target, env_setup=setup).run(["sh", "-c", "echo $ORCH_MARK"]).stdout == "1\n"


def test_tcp_nodelay_and_preferred_cipher(conn: SSHConnection) -> None:
    sock = conn.transport.sock
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert conn.transport.remote_cipher.startswith("aes128-gcm")
