"""SSH connections to execution hosts (paramiko): checked host keys, key or agent login, remote
commands, SFTP, port forwards, and a small pool of connections for parallel transfers.

Host keys are checked against a known_hosts file, never added silently: an unknown key is
refused with its fingerprint and the command that accepts it. Logins use a key file or the
SSH agent; no password is ever asked for or stored. Every transport socket has TCP_NODELAY
(small request/answer exchanges are several times faster with it) and prefers AES-GCM,
the cheapest cipher on CPUs with AES instructions.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import select
import shlex
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from orchestrator.hosts.errors import HostError

PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
DEFAULT_KEY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")
STDERR_KEPT = 64 * 1024  # bytes of a command's stderr kept for error messages
_KEYSCAN_TYPE = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa", "ssh-dss": "dsa"}


class SSHError(HostError):
    """Something went wrong talking to a host over SSH; the message names the host."""


class SSHConnectError(SSHError):
    """The host could not be reached, or the SSH handshake failed."""


class HostKeyError(SSHError):
    """The host's key is not the one known_hosts holds for it (or none is held)."""


class HostKeyUnknownError(HostKeyError):
    """known_hosts holds no key for the host: the user must accept it first."""


class HostKeyMismatchError(HostKeyError):
    """known_hosts holds a different key for the host."""


class SSHAuthError(SSHError):
    """None of our keys (key file, agent) was accepted."""


class RemoteCommandError(SSHError):
    """A remote command failed; ``exit_status`` (None: no status, e.g. killed) and ``stderr`` say how."""

    def __init__(self, message: str, exit_status: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.stderr = stderr


@dataclass(frozen=True)
class SSHTarget:
    """Where to log in: the ``ssh`` section of a host's configuration maps onto this."""

    host: str
    port: int = 22
    user: str | None = None
    key_path: Path | None = None
    known_hosts: Path | None = None

    @classmethod
    def from_config(cls, ssh: Any) -> SSHTarget:
        """From any object with ``host``, ``port``, ``user``, ``key``, ``known_hosts`` attributes."""
        key = getattr(ssh, "key", None) or getattr(ssh, "key_path", None)
        known = getattr(ssh, "known_hosts", None)
        return cls(ssh.host, int(getattr(ssh, "port", 22) or 22), getattr(ssh, "user", None),
                   Path(key).expanduser() if key else None, Path(known).expanduser() if known else None)

    @property
    def login(self) -> str:
        return self.user or getpass.getuser()

    @property
    def label(self) -> str:
        return f"{self.login}@{self.host}:{self.port}"

    @property
    def known_hosts_file(self) -> Path:
        return self.known_hosts or Path.home() / ".ssh" / "known_hosts"

    @property
    def host_key_name(self) -> str:
        """The name known_hosts files use for this host and port."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


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
        raise SSHConnectError(f"{target.label}: cannot reach the SSH server ({exc}); is sshd running there, "
                              f"and is the port right?") from exc
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


class RemoteProcess:
    """A running remote command with byte streams: subclasses provide ``_recv``/``_send``.

    The stdout side is buffered here so that line-oriented protocols (``readline``) and
    bulk reads (``read_some``, ``read_exact``) can be mixed.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = tuple(argv)
        self._buffer = bytearray()
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()

    # --- provided by subclasses
    def _recv(self, max_bytes: int) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def close_stdin(self) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def stdin_fileno(self) -> int | None:
        """A file descriptor to write stdin to directly (``os.sendfile``), or None."""
        return None

    # --- shared
    def _keep_stderr(self, data: bytes) -> None:
        with self._stderr_lock:
            self._stderr += data
            del self._stderr[:-STDERR_KEPT]

    def stderr_text(self) -> str:
        with self._stderr_lock:
            return self._stderr.decode(errors="replace")

    def read_some(self, max_bytes: int = 1 << 20) -> bytes:
        """Up to ``max_bytes`` of stdout (b"" at its end)."""
        if self._buffer:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return data
        return self._recv(max_bytes)

    def readline(self, limit: int = 1 << 20) -> bytes:
        """One line of stdout, with its newline (without it only at the end of the stream)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or len(self._buffer) > limit:
                cut = end + 1 if end >= 0 else len(self._buffer)
                line = bytes(self._buffer[:cut])
                del self._buffer[:cut]
                return line
            data = self._recv(65536)
            if not data:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            self._buffer += data

    def read_all(self) -> bytes:
        chunks = [bytes(self._buffer)]
        self._buffer.clear()
        while data := self._recv(1 << 20):
            chunks.append(data)
        return b"".join(chunks)

    def __enter__(self) -> RemoteProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChannelProcess(RemoteProcess):
    """A remote command on an exec channel of a paramiko transport."""

    def __init__(self, channel: paramiko.Channel, argv: Sequence[str], idle_timeout: float | None) -> None:
        super().__init__(argv)
        self.channel = channel
        channel.settimeout(idle_timeout)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True, name="ssh-stderr")
        self._drain.start()

    def _drain_stderr(self) -> None:
        try:
            while data := self.channel.recv_stderr(65536):
                self._keep_stderr(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def _recv(self, max_bytes: int) -> bytes:
        return self.channel.recv(max_bytes)

    def write(self, data: bytes | memoryview) -> None:
        self.channel.sendall(data)

    def close_stdin(self) -> None:
        self.channel.shutdown_write()

    def wait(self, timeout: float | None = None) -> int:
        if not self.channel.status_event.wait(timeout):
            raise TimeoutError(f"{shlex.join(self.argv)[:200]} still running after {timeout} s")
        self._drain.join(5)
        return self.channel.recv_exit_status()

    def close(self) -> None:
        self.channel.close()


class SSHConnection:
    """One authenticated transport to a host: run commands, stream data, SFTP, forward ports."""

    def __init__(self, target: SSHTarget, transport: paramiko.Transport) -> None:
        self.target = target
        self.transport = transport

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def start(self, argv: Sequence[str], *, idle_timeout: float | None = 300.0) -> ChannelProcess:
        """Start ``argv`` (quoted with shlex.join for the remote shell) with streamed stdin/stdout."""
        try:
            channel = self.transport.open_session(timeout=30)
            channel.exec_command(shlex.join(argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHConnectError(f"{self.target.label}: cannot start {argv[0]!r}: {exc}") from exc
        return ChannelProcess(channel, argv, idle_timeout)

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = 300.0,
            check: bool = False) -> CommandResult:
        """Run a command to its end; with ``check``, a non-zero exit raises RemoteCommandError."""
        command = shlex.join(argv)
        with self.start(argv, idle_timeout=timeout) as process:
            try:
                if input:
                    process.write(input)
                process.close_stdin()
                stdout = process.read_all()
                code = process.wait(timeout)
            except TimeoutError as exc:
                raise RemoteCommandError(f"{self.target.label}: `{command[:200]}` timed out after {timeout} s",
                                         None, process.stderr_text()) from exc
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise SSHConnectError(f"{self.target.label}: connection lost while running "
                                      f"`{command[:200]}`: {exc}") from exc
            result = CommandResult(tuple(argv), code, stdout, process.stderr_text().encode())
        if check and not result.ok:
            raise command_error(self.target, argv, code, result.stderr.decode(errors="replace"))
        return result

    def sftp(self) -> paramiko.SFTPClient:
        client = paramiko.SFTPClient.from_transport(self.transport)
        if client is None:
            raise SSHConnectError(f"{self.target.label}: the server refused the SFTP subsystem")
        return client

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

    def __exit__(self, *exc: object) -> None:
        self.close()


def command_error(target: SSHTarget, argv: Sequence[str], code: int, stderr: str) -> RemoteCommandError:
    tail = "\n".join(stderr.strip().splitlines()[-20:]) or "(no stderr)"
    how = "was killed (no exit status)" if code < 0 else f"exited with status {code}"
    return RemoteCommandError(f"{target.label}: `{shlex.join(argv)[:300]}` {how}:\n{tail}", code, stderr)


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


class SSHPool:
    """Up to ``size`` connections to one target, opened on demand and reused; dead ones are dropped."""

    def __init__(self, target: SSHTarget, size: int = 4, *, timeout: float = 15.0) -> None:
        if size < 1:
            raise ValueError("an SSH pool needs at least one connection")
        self.target = target
        self.size = size
        self.timeout = timeout
        self._idle: list[SSHConnection] = []
        self._open = 0
        self._cond = threading.Condition()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[SSHConnection]:
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    def _acquire(self) -> SSHConnection:
        with self._cond:
            while True:
                if self._closed:
                    raise SSHError(f"{self.target.label}: connection pool is closed")
                while self._idle:
                    conn = self._idle.pop()
                    if conn.alive:
                        return conn
                    self._open -= 1
                    conn.close()
                if self._open < self.size:
                    self._open += 1
                    break
                self._cond.wait()
        try:
            return connect(self.target, timeout=self.timeout)
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _release(self, conn: SSHConnection) -> None:
        with self._cond:
            if conn.alive and not self._closed:
                self._idle.append(conn)
            else:
                self._open -= 1
                conn.close()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for conn in self._idle:
                conn.close()
            self._open -= len(self._idle)
            self._idle.clear()
            self._cond.notify_all()

    def __enter__(self) -> SSHPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
