"""Bulk streams through the OpenSSH client (``ssh``), for large payloads.

paramiko does its packet work in Python under one interpreter lock; the ``ssh`` binary
encrypts in C in its own process, which on loopback moves a large file about 1.5 times as
fast (see ``bench/transfer.py``). It is used only for streams worth its start-up (~0.1-0.2 s),
with the same checks as our paramiko connections: the target's known_hosts file with strict
checking (never the user's ``~/.ssh/config``), batch mode (no password prompt, ever), the
target's key or the agent (one :class:`~orchestrator.hosts.ssh.target.SSHTarget` for both
clients). :class:`OpenSSHShell` is the same client API as a paramiko connection
(:class:`~orchestrator.hosts.ssh.shell.RemoteShell`); the stager takes it for payloads of
16 MiB and more, and falls back to paramiko when the ``ssh`` client is refused where paramiko
is not.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import IO

from orchestrator.hosts.errors import QueueCommandError
from orchestrator.hosts.runner import CommandResult
from orchestrator.hosts.ssh.shell import RemoteProcess, RemoteShell
from orchestrator.hosts.ssh.target import SSHError, SSHTarget

CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
           "aes128-ctr", "aes192-ctr", "aes256-ctr")
# curve25519 first (what paramiko uses too): the default post-quantum hybrid KEX costs ~0.1-0.2 s per
# connection, which matters for streams of a few seconds; it stays in the list as a fallback.
KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "sntrup761x25519-sha512@openssh.com",
       "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group-exchange-sha256",
       "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256")
SSH_FAILED = 255  # ssh's own exit status when it could not connect or log in
PIPE_SIZE = 1 << 20


def ssh_binary() -> str | None:
    return shutil.which("ssh")


def _option_value(path: str) -> str:
    return f'"{path}"' if any(c.isspace() for c in path) else path


def ssh_argv(target: SSHTarget, remote_argv: Sequence[str], ssh: str = "ssh") -> list[str]:
    """The ``ssh`` command line that runs ``remote_argv`` on the target, with our checks."""
    argv = [ssh, "-F", "/dev/null", "-T", "-x", "-a",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={_option_value(str(target.known_hosts_file))}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "CheckHostIP=no",
            "-o", f"Ciphers={','.join(CIPHERS)}", "-o", f"KexAlgorithms={','.join(KEX)}",
            "-o", "Compression=no", "-o", "ConnectTimeout=15",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "ClearAllForwardings=yes",
            "-p", str(target.port), "-l", target.login]
    if target.key_path is not None:
        argv += ["-i", str(target.key_path), "-o", "IdentitiesOnly=yes"]
    return [*argv, "--", target.host, shlex.join(remote_argv)]


def _widen(pipe: IO[bytes] | None) -> None:
    """A 1 MiB pipe instead of 64 KiB: far fewer wake-ups between us and ``ssh`` on bulk data."""
    if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
        try:
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # above the system's pipe-max-size: the default size works, only slower


class OpenSSHProcess(RemoteProcess):
    """A remote command run through a local ``ssh`` process, with raw (unbuffered) pipes."""

    def __init__(self, target: SSHTarget, remote_argv: Sequence[str], ssh: str = "ssh") -> None:
        super().__init__(remote_argv)
        self.target = target
        try:
            self.process = subprocess.Popen(ssh_argv(target, remote_argv, ssh), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        except FileNotFoundError as exc:
            raise SSHError(f"{target.label}: no ssh client {ssh!r} on this machine (install openssh-client)") from exc
        for pipe in (self.process.stdin, self.process.stdout):
            _widen(pipe)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True, name="openssh-stderr")
        self._drain.start()

    def _drain_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while data := stream.read(65536):
            self._keep_stderr(data)

    def _recv(self, max_bytes: int) -> bytes:
        assert self.process.stdout is not None
        return os.read(self.process.stdout.fileno(), max_bytes)

    def write(self, data: bytes | memoryview) -> None:
        assert self.process.stdin is not None
        fd = self.process.stdin.fileno()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def stdin_fileno(self) -> int | None:
        return self.process.stdin.fileno() if self.process.stdin is not None else None

    def close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()

    def wait(self, timeout: float | None = None) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"ssh to {self.target.label} still running after {timeout} s") from exc
        self._drain.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        self._drain.join(5)


class OpenSSHShell(RemoteShell):
    """The target's commands and streams through the local ``ssh`` client (``ssh``: its path)."""

    def __init__(self, target: SSHTarget, *, env_setup: Sequence[str] = (), ssh: str = "ssh") -> None:
        super().__init__(target, env_setup=env_setup)
        self.ssh = ssh

    def _open(self, argv: Sequence[str], idle_timeout: float | None) -> OpenSSHProcess:
        # ssh's ServerAlive settings find a dead connection; an idle stream is not one
        return OpenSSHProcess(self.target, argv, self.ssh)

    def _finished(self, result: CommandResult) -> CommandResult:
        if result.exit_code == SSH_FAILED:
            # a host key or a login refused stays refused; anything else (no route, a timeout) may pass
            refused = any(why in result.stderr for why in ("Host key verification failed", "Permission denied"))
            where = f"{self.target.host} port {self.target.port}"
            detail = result.stderr.strip() or "ssh failed"
            raise QueueCommandError(f"{self.target.label}: ssh was refused by {where}: {detail}" if refused else
                                    f"{self.target.label}: cannot reach the SSH server on {where} with ssh: {detail}",
                                    transient=not refused)
        return result

    def close(self) -> None:
        """Nothing to close: each process is its own connection."""
