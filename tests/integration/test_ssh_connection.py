"""SSH connections against a real OpenSSH server (tests/infra/sshd.sh): host keys, logins,
commands, port forwards, the pool. Outside CI a missing sshd skips; in CI it fails."""

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

from orchestrator.hosts.ssh.client import (
    HostKeyMismatchError,
    HostKeyUnknownError,
    RemoteCommandError,
    SSHAuthError,
    SSHConnection,
    SSHPool,
    SSHTarget,
    connect,
)

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
    assert result.ok and result.stdout == b"two words|$HOME|it's|"
    assert conn.run(["sh", "-c", "exit 7"]).exit_code == 7
    assert conn.run(["cat"], input=b"x" * 300_000).stdout == b"x" * 300_000


def test_failing_command_reports_its_stderr(conn: SSHConnection) -> None:
    with pytest.raises(RemoteCommandError) as caught:
        conn.run(["sh", "-c", "echo 'step log: CTF fit diverged' >&2; exit 3"], check=True)
    assert caught.value.exit_status == 3
    assert "CTF fit diverged" in str(caught.value) and "exited with status 3" in str(caught.value)


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
        assert conn.run(["python3", "-c", probe], check=True).text.strip() == "WORKER"
    finally:
        forward.close()
        server.close()


def test_pool_opens_several_connections_and_reuses_them(target: SSHTarget) -> None:
    with SSHPool(target, size=3) as pool:
        seen: set[int] = set()
        barrier = threading.Barrier(3)

        def use() -> None:
            with pool.connection() as connection:
                barrier.wait(10)
                seen.add(id(connection))
                assert connection.run(["true"]).ok

        threads = [threading.Thread(target=use) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 3
        with pool.connection() as again:
            assert id(again) in seen


def test_sftp_and_tcp_nodelay(conn: SSHConnection) -> None:
    sock = conn.transport.sock
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert conn.transport.remote_cipher.startswith("aes128-gcm")
    with conn.sftp() as sftp:
        assert sftp.stat("/tmp").st_mode is not None
