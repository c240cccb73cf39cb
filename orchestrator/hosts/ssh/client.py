"""SSH connections to execution hosts (paramiko): checked host keys, key or agent login, remote
commands and streams, port forwards, and pools of kept connections.

Host keys are checked against a known_hosts file, never added silently: an unknown key is
refused with its fingerprint and the command that accepts it. Logins use a key file or the
SSH agent; no password is ever asked for or stored. Every transport socket has TCP_NODELAY
(small request/answer exchanges are several times faster with it) and prefers AES-GCM,
the cheapest cipher on CPUs with AES instructions.

:class:`SSHConnection` and :class:`SSHPool` are remote shells (:mod:`orchestrator.hosts.ssh.shell`):
the same ``run``/``read_text``/``make_dirs``/``write_text``/``start`` as the OpenSSH client's
shell. Queue commands on a login node go through :func:`shared_pool`: a command on a kept
connection answers in ~10 ms, a new paramiko connection costs ~90 ms and an ``ssh`` process
~165 ms (loopback, measured with the test sshd).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import select
import shlex
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import paramiko

from orchestrator.hosts.ssh.shell import DEFAULT_IDLE_TIMEOUT_S, RemoteProcess, RemoteShell, with_env_setup
from orchestrator.hosts.ssh.target import (
    HostKeyMismatchError,
    HostKeyUnknownError,
    SSHAuthError,
    SSHConnectError,
    SSHError,
    SSHTarget,
)

PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
DEFAULT_KEY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")
SHARED_POOL_SIZE = 4  # connections per host for commands: sshd allows 10 unauthenticated at once
SHARED_CONNECT_TIMEOUT_S = 10.0
_KEYSCAN_TYPE = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa", "ssh-dss": "dsa"}


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (what ``ssh-keygen -lf`` prints)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _prefer(available: Sequence[str], first: Sequence[str]) -> tuple[str, ...]:
    head = [name for name in first if name in available]
    return tuple(head + [name for name in available if name not in head])


def _keyscan_command(target: SSHTarget, key_type: str) -> str:
    scan_type = _KEYSCAN_TYPE.get(key_type, "ecdsa" if key_type.startswith("ecdsa") else key_type)
    return (f"ssh-keyscan -p {target.port} -t {scan_type} {shlex.quote(target.host)} "
            f">> {shlex.quote(str(target.known_hosts_file))}")


def check_host_key(target: SSHTarget, known: paramiko.HostKeys, key: paramiko.PKey) -> None:
    """Accept ``key`` only if known_hosts holds exactly it for the target; else say how to fix."""
    entries = known.lookup(target.host_key_name) or {}
    key_type = key.get_name()
    held = entries.get(key_type)
    if held is not None and held.asbytes() == key.asbytes():
        return
    where = target.known_hosts_file
    if held is None:
        raise HostKeyUnknownError(
            f"{target.label}: unknown host key {key_type} {fingerprint(key)} (not in {where}); refused. "
            f"Check this fingerprint with the host's administrator (on the host: "
            f"ssh-keygen -lf /etc/ssh/ssh_host_{_KEYSCAN_TYPE.get(key_type, 'ecdsa')}_key.pub), then accept "
            f"it with: {_keyscan_command(target, key_type)}")
    raise HostKeyMismatchError(
        f"{target.label}: HOST KEY CHANGED: the host offers {key_type} {fingerprint(key)}, but {where} holds "
        f"{fingerprint(held)} for {target.host_key_name}. Someone may be intercepting the connection, or "
        f"the host was reinstalled; refused. If the change is expected, remove the old key with "
        f"ssh-keygen -R {shlex.quote(target.host_key_name)} -f {shlex.quote(str(where))} and accept the "
        f"new one (after checking its fingerprint) with: {_keyscan_command(target, key_type)}")


def _load_known_hosts(target: SSHTarget) -> paramiko.HostKeys:
    known = paramiko.HostKeys()
    path = target.known_hosts_file
    if path.exists():
        try:
            known.load(str(path))
        except (OSError, paramiko.SSHException) as exc:
            raise SSHConnectError(f"{path}: cannot read this known_hosts file: {exc}") from exc
    return known


def _candidate_keys(target: SSHTarget) -> tuple[list[tuple[str, paramiko.PKey]], list[str]]:
    """Keys to try, in order (key file, agent, default key files), and notes on skipped ones."""
    keys: list[tuple[str, paramiko.PKey]] = []
    notes: list[str] = []
    files = [target.key_path] if target.key_path else [Path.home() / ".ssh" / n for n in DEFAULT_KEY_FILES]
    for path in files:
        if not path.exists():
            if target.key_path:
                raise SSHAuthError(f"{target.label}: key file {path} does not exist (the host's ssh 'key')")
            continue
        try:
            keys.append((str(path), paramiko.PKey.from_path(path)))
        except paramiko.PasswordRequiredException:
            notes.append(f"{path} has a passphrase: load it into your agent with `ssh-add {path}`")
        except (OSError, paramiko.SSHException, ValueError) as exc:
            notes.append(f"{path} could not be read ({exc})")
    keys.extend((f"agent key {fingerprint(k)}", k) for k in paramiko.Agent().get_keys())
    return keys, notes


def _authenticate(transport: paramiko.Transport, target: SSHTarget) -> None:
    keys, notes = _candidate_keys(target)
    tried = []
    for name, key in keys:
        try:
            transport.auth_publickey(target.login, key)
        except paramiko.AuthenticationException:
            tried.append(name)
            continue
        if transport.is_authenticated():
            return
    detail = f"tried {', '.join(tried)}" if tried else "no key to try (no key file, no SSH agent keys)"
    hints = "; ".join(notes)
    raise SSHAuthError(
        f"{target.label}: login refused ({detail}){'; ' + hints if hints else ''}. Put your public key in "
        f"~{target.login}/.ssh/authorized_keys on the host, or set the host's ssh 'key' to a key it accepts.")


def connect(target: SSHTarget, *, timeout: float = 15.0, keepalive_s: int = 30) -> SSHConnection:
    """Open an authenticated connection (host key checked first; nothing is sent to an unknown host)."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OSError as exc:
        raise SSHConnectError(f"{target.label}: cannot reach the SSH server on {target.host} port {target.port} "
                              f"({exc}); is sshd running there, and is the port right?") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        options = transport.get_security_options()
        options.ciphers = _prefer(options.ciphers, PREFERRED_CIPHERS)
        known = _load_known_hosts(target)
        held = list((known.lookup(target.host_key_name) or {}).keys())
        if "ssh-rsa" in held:
            held += ["rsa-sha2-512", "rsa-sha2-256"]
        options.key_types = _prefer(options.key_types, held)
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHConnectError(f"{target.label}: SSH handshake failed ({exc})") from exc
        check_host_key(target, known, transport.get_remote_server_key())
        _authenticate(transport, target)
    except BaseException:
        transport.close()
        raise
    transport.set_keepalive(keepalive_s)
    return SSHConnection(target, transport)


class ChannelProcess(RemoteProcess):
    """A remote command on an exec channel of a paramiko transport; ``on_close`` runs once when
    it is closed (a pool takes its connection back)."""

    def __init__(self, channel: paramiko.Channel, argv: Sequence[str], idle_timeout: float | None,
                 on_close: Callable[[], None] | None = None) -> None:
        super().__init__(argv)
        self.channel = channel
        self._on_close = on_close
        channel.settimeout(idle_timeout)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True, name="ssh-stderr")
        self._drain.start()

    def _drain_stderr(self) -> None:
        try:
            while data := self.channel.recv_stderr(65536):
                self._keep_stderr(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the channel ended: what came is kept

    def _recv(self, max_bytes: int) -> bytes:
        return self.channel.recv(max_bytes)

    def write(self, data: bytes | memoryview) -> None:
        try:
            self.channel.sendall(data)
        except paramiko.SSHException as exc:
            raise ConnectionError(f"{shlex.join(self.argv)[:200]}: {exc}") from exc

    def close_stdin(self) -> None:
        self.channel.shutdown_write()

    def wait(self, timeout: float | None = None) -> int:
        if not self.channel.status_event.wait(timeout):
            raise TimeoutError(f"{shlex.join(self.argv)[:200]} still running after {timeout} s")
        self._drain.join(5)
        return self.channel.recv_exit_status()

    def kill(self) -> None:
        self.channel.close()

    def close(self) -> None:
        self.channel.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


class SSHConnection(RemoteShell):
    """One authenticated transport to a host: commands and streams (the RemoteShell API), port
    forwards. Made by :func:`connect`."""

    def __init__(self, target: SSHTarget, transport: paramiko.Transport) -> None:
        super().__init__(target)
        self.transport = transport

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def start(self, argv: Sequence[str], *, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S) -> ChannelProcess:
        return self._open(with_env_setup(argv, self.env_setup), idle_timeout)

    def _open(self, argv: Sequence[str], idle_timeout: float | None,
              on_close: Callable[[], None] | None = None) -> ChannelProcess:
        try:
            channel = self.transport.open_session(timeout=30)
            channel.exec_command(shlex.join(argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHConnectError(f"{self.target.label}: cannot start {argv[0]!r}: {exc}") from exc
        return ChannelProcess(channel, argv, idle_timeout, on_close)

    def forward_local(self, remote_port: int, remote_host: str = "127.0.0.1", *, local_port: int = 0,
                      local_host: str = "127.0.0.1") -> PortForward:
        """Listen on ``local_host:local_port``; each connection goes to ``remote_host:remote_port``
        as seen from the SSH host (like ``ssh -L``)."""
        listener = socket.create_server((local_host, local_port))
        forward = PortForward(listener.getsockname()[1], listener.close)

        def accept_loop() -> None:
            while True:
                try:
                    client, peer = listener.accept()
                except OSError:
                    return  # listener closed
                try:
                    channel = self.transport.open_channel("direct-tcpip", (remote_host, remote_port), peer)
                except (paramiko.SSHException, OSError):
                    client.close()
                    continue
                _start_pump(client, channel)

        threading.Thread(target=accept_loop, daemon=True, name=f"ssh-L{forward.port}").start()
        return forward

    def forward_remote(self, local_port: int, local_host: str = "127.0.0.1", *, remote_port: int = 0,
                       remote_host: str = "127.0.0.1") -> PortForward:
        """Listen on the SSH host at ``remote_host:remote_port`` (0: any free port); each connection
        comes back to ``local_host:local_port`` here (like ``ssh -R``): remote dask workers reach a
        local scheduler with no inbound connection but SSH."""

        def handler(channel: paramiko.Channel, _origin: Any, _server: Any) -> None:
            try:
                sock = socket.create_connection((local_host, local_port), timeout=15)
            except OSError:
                channel.close()
                return
            _start_pump(sock, channel)

        try:
            port = self.transport.request_port_forward(remote_host, remote_port, handler)
        except paramiko.SSHException as exc:
            raise SSHError(f"{self.target.label}: the server refused to listen on {remote_host}:{remote_port} "
                           f"({exc}); check AllowTcpForwarding in its sshd_config") from exc
        return PortForward(port, lambda: self.transport.cancel_port_forward(remote_host, port))

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> SSHConnection:
        return self


@dataclass
class PortForward:
    """A running forward; ``port`` is the listening port (local for -L, remote for -R)."""

    port: int
    _stop: Any

    def close(self) -> None:
        try:
            self._stop()
        except (OSError, paramiko.SSHException):
            pass  # the transport is already gone


def _start_pump(sock: socket.socket, channel: paramiko.Channel) -> None:
    def pump() -> None:
        try:
            while True:
                readable, _, _ = select.select([sock, channel], [], [], 5.0)
                if sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in readable:
                    data = channel.recv(65536)
                    if not data:
                        break
                    sock.sendall(data)
        except (OSError, paramiko.SSHException, EOFError):
            pass
        finally:
            channel.close()
            sock.close()

    threading.Thread(target=pump, daemon=True, name="ssh-forward").start()


class SSHPool(RemoteShell):
    """Up to ``size`` connections to one target, opened on demand and kept: each process
    :meth:`start` opens holds one of them until it is closed; dead ones are dropped (a kept
    connection the server has since dropped is replaced once, transparently)."""

    def __init__(self, target: SSHTarget, size: int = 4, *, timeout: float = 15.0,
                 env_setup: Sequence[str] = ()) -> None:
        if size < 1:
            raise ValueError("an SSH pool needs at least one connection")
        super().__init__(target, env_setup=env_setup)
        self.size = size
        self.timeout = timeout
        self._idle: list[SSHConnection] = []
        self._open_count = 0
        self._cond = threading.Condition()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _open(self, argv: Sequence[str], idle_timeout: float | None) -> RemoteProcess:
        while True:
            conn, kept = self._acquire()
            try:
                return conn._open(argv, idle_timeout, on_close=partial(self._release, conn))
            except SSHConnectError:
                conn.close()
                self._release(conn)
                if not kept:
                    raise
                # a kept connection the server dropped while idle: the next one (or a new one) runs it

    def _acquire(self) -> tuple[SSHConnection, bool]:
        """A connection and whether it was kept from before (it may have died since)."""
        with self._cond:
            while True:
                if self._closed:
                    raise SSHError(f"{self.target.label}: connection pool is closed")
                while self._idle:
                    conn = self._idle.pop()
                    if conn.alive:
                        return conn, True
                    self._open_count -= 1
                    conn.close()
                if self._open_count < self.size:
                    self._open_count += 1
                    break
                self._cond.wait()
        try:
            return connect(self.target, timeout=self.timeout), False
        except BaseException:
            with self._cond:
                self._open_count -= 1
                self._cond.notify()
            raise

    def _release(self, conn: SSHConnection) -> None:
        with self._cond:
            if conn.alive and not self._closed:
                self._idle.append(conn)
            else:
                self._open_count -= 1
                conn.close()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for conn in self._idle:
                conn.close()
            self._open_count -= len(self._idle)
            self._idle.clear()
            self._cond.notify_all()

    def __enter__(self) -> SSHPool:
        return self


_shared_pools: dict[tuple[int, SSHTarget, tuple[str, ...]], SSHPool] = {}
_shared_lock = threading.Lock()


def shared_pool(target: SSHTarget, *, env_setup: Sequence[str] = ()) -> SSHPool:
    """This process's pool of connections to ``target`` for commands (its ``env_setup`` lines
    run before each one), kept for the life of the process: the poller, the submitter, the
    watchers and ``orch hosts check`` reuse one login instead of paying one per command. Do not
    close it. A forked child makes its own (a transport cannot cross a fork)."""
    key = (os.getpid(), target, tuple(env_setup))
    with _shared_lock:
        pool = _shared_pools.get(key)
        if pool is None or pool.closed:
            pool = _shared_pools[key] = SSHPool(target, SHARED_POOL_SIZE, timeout=SHARED_CONNECT_TIMEOUT_S,
                                                env_setup=env_setup)
        return pool


@atexit.register
def _close_shared_pools() -> None:
    with _shared_lock:
        for (pid, _target, _setup), pool in list(_shared_pools.items()):
            if pid == os.getpid():
                pool.close()
        _shared_pools.clear()
