"""The one client API for a host over SSH, whichever client does the work.

A :class:`RemoteShell` starts a remote command as byte streams (:meth:`RemoteShell.start`, a
:class:`RemoteProcess`) and, built on that alone, runs commands to their end and reads and
writes small files: the :class:`~orchestrator.hosts.runner.CommandRunner` API, answering with
the same :class:`~orchestrator.hosts.runner.CommandResult` as commands run on this machine.
Three shells differ only in how a process starts (``_open``):

- :class:`~orchestrator.hosts.ssh.client.SSHConnection`: an exec channel on one paramiko
  connection (which also forwards ports, for dask workers);
- :class:`~orchestrator.hosts.ssh.client.SSHPool`: a channel on one of a few kept paramiko
  connections: what :func:`~orchestrator.hosts.runner.runner_for` gives for an SSH host, and
  the stager's small streams;
- :class:`~orchestrator.hosts.ssh.openssh.OpenSSHShell`: a local ``ssh`` process, for bulk
  streams (it encrypts in C, outside our interpreter lock).

All three take the same :class:`~orchestrator.hosts.ssh.target.SSHTarget` and apply its rules
(known_hosts checked strictly, key file or agent, never a prompt). No paramiko is imported here.
"""

from __future__ import annotations

import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

from orchestrator.hosts.errors import QueueCommandError
from orchestrator.hosts.runner import DEFAULT_TIMEOUT_S, CommandResult
from orchestrator.hosts.ssh.target import SSHConnectError, SSHError, SSHTarget

STDERR_KEPT = 64 * 1024  # bytes of a command's stderr kept for error messages
DEFAULT_IDLE_TIMEOUT_S = 300.0  # a stream that moves nothing for this long is taken as lost


class RemoteProcess:
    """A running remote command with byte streams: subclasses provide ``_recv`` and the rest.

    The stdout side is buffered here so that line-oriented protocols (``readline``) and
    bulk reads (``read_some``, ``read_all``) can be mixed.
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
        """The exit status (negative: none, e.g. killed); TimeoutError if still running after ``timeout``."""
        raise NotImplementedError

    def kill(self) -> None:
        """Stop the command now (safe from another thread): reads then see the end of its output."""
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


def with_env_setup(argv: Sequence[str], env_setup: Sequence[str]) -> tuple[str, ...]:
    """``argv`` run after the host's set-up lines (``module load ...``), as the site wrote them;
    the command's own arguments stay arguments (``"$@"``)."""
    if not env_setup:
        return tuple(argv)
    return ("sh", "-c", "\n".join(env_setup) + '\nexec "$@"', "sh", *argv)


class RemoteShell(ABC):
    """Commands, small files and streams on one SSH target (see the module docstring).

    ``env_setup`` lines run before every command this shell starts (a queue host's
    ``module load``); leave them out for streams whose stdout must stay clean.
    """

    def __init__(self, target: SSHTarget, *, env_setup: Sequence[str] = ()) -> None:
        self.target = target
        self.env_setup = tuple(env_setup)

    @abstractmethod
    def _open(self, argv: Sequence[str], idle_timeout: float | None) -> RemoteProcess:
        """Start ``argv`` as given; raise an :class:`SSHError` when the host cannot be reached."""

    def start(self, argv: Sequence[str], *, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S) -> RemoteProcess:
        """Start ``argv`` (quoted with shlex.join for the remote shell) with streamed stdin, stdout
        and stderr; raise an :class:`SSHError` when the host cannot be reached or refuses us."""
        return self._open(with_env_setup(argv, self.env_setup), idle_timeout)

    def run(self, argv: Sequence[str], *, input_text: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandResult:
        """Run a command to its end (the CommandRunner contract: a non-zero exit is a result;
        :class:`QueueCommandError` when the host cannot be reached, transient on a timeout or a
        lost connection). A command still running after ``timeout_s`` is killed."""
        argv = tuple(argv)
        shown = shlex.join(argv)[:200]
        try:
            process = self.start(argv, idle_timeout=timeout_s)
        except SSHConnectError as exc:
            raise QueueCommandError(str(exc), transient=True) from exc
        except SSHError as exc:  # a host key or a login refused: trying again will not help
            raise QueueCommandError(str(exc)) from exc
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            process.kill()

        timer = threading.Timer(timeout_s, expire)
        timer.daemon = True
        code, stdout = -1, b""
        with process:
            timer.start()
            try:
                if input_text is not None:
                    try:
                        process.write(input_text.encode())
                    except BrokenPipeError:
                        pass  # the command did not read all its input: its exit status says how it went
                process.close_stdin()
                stdout = process.read_all()
                if not expired.is_set():
                    code = process.wait(timeout_s)
            except TimeoutError:
                expired.set()
            except (OSError, EOFError) as exc:
                if not expired.is_set():
                    raise QueueCommandError(f"{self.target.label}: connection lost while running `{shown}`: {exc}",
                                            transient=True) from exc
            finally:
                timer.cancel()
            if expired.is_set():
                raise QueueCommandError(f"`{shown}` on {self.target.label} did not answer within {timeout_s:g} s",
                                        transient=True)
            return self._finished(CommandResult(argv, code, stdout.decode(errors="replace"), process.stderr_text()))

    def _finished(self, result: CommandResult) -> CommandResult:
        """A hook for a shell whose client reports its own failures as an exit status."""
        return result

    def read_text(self, path: str) -> str | None:
        result = self.run(["cat", "--", path])
        return result.stdout if result.ok else None

    def make_dirs(self, path: str) -> None:
        result = self.run(["mkdir", "-p", "--", path])
        if not result.ok:
            raise QueueCommandError(f"cannot create {path} on {self.target.label}: {result.describe()}")

    def write_text(self, path: str, text: str) -> None:
        result = self.run(["sh", "-c", 'cat > "$1"', "sh", path], input_text=text)
        if not result.ok:
            raise QueueCommandError(f"cannot write {path} on {self.target.label}: {result.describe()}")

    @abstractmethod
    def close(self) -> None:
        """Close what the shell holds open (connections)."""

    def __enter__(self) -> RemoteShell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
