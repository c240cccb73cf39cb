"""Running queue commands: on this machine, or on a host's login node over SSH.

Queue backends only build argument lists; a :class:`CommandRunner` runs them. The same
backend therefore drives a cluster whose login node is this machine (``LocalRunner``) or a
remote one (``SshRunner``, OpenSSH in batch mode; the remote shell gets a ``shlex.join``-ed
command line, so arguments stay arguments).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.hosts.config.model import HostConfig, SshConfig
from orchestrator.hosts.errors import QueueCommandError

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """``squeue ... exited 1: <stderr>`` for error messages."""
        detail = (self.stderr.strip() or self.stdout.strip() or "no output").splitlines()
        return f"`{shlex.join(self.argv)}` exited {self.returncode}: {' | '.join(detail[-3:])}"


class CommandRunner(Protocol):
    """Runs one command (argument list) where the host's queue commands live."""

    def run(self, argv: Sequence[str], *, input_text: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandResult:
        """Run and return the result; raise :class:`QueueCommandError` (transient) on timeout
        or when the program cannot be started or reached."""
        ...

    def read_text(self, path: str) -> str | None:
        """The content of a (small) file on the host, or None when it does not exist."""
        ...

    def make_dirs(self, path: str) -> None:
        """``mkdir -p`` on the host; :class:`QueueCommandError` when it cannot."""
        ...

    def write_text(self, path: str, text: str) -> None:
        """Write a (small) file on the host."""
        ...


class LocalRunner:
    """Commands on this machine, with an optional environment overlay (e.g. the queue's config file)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env) if env else None

    def _environment(self) -> dict[str, str] | None:
        if self.env is None:
            return None
        return {**os.environ, **self.env}

    def run(self, argv: Sequence[str], *, input_text: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandResult:
        argv = tuple(argv)
        try:
            done = subprocess.run(list(argv), input=input_text, capture_output=True, text=True,
                                  timeout=timeout_s, env=self._environment(),
                                  stdin=None if input_text is not None else subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise QueueCommandError(f"`{shlex.join(argv)}` did not answer within {timeout_s:g} s",
                                    transient=True) from None
        except FileNotFoundError:
            raise QueueCommandError(f"`{argv[0]}` not found on this machine (is the queue's client installed "
                                    "and on PATH?)") from None
        except OSError as exc:
            raise QueueCommandError(f"cannot run `{shlex.join(argv)}`: {exc}", transient=True) from None
        return CommandResult(argv, done.returncode, done.stdout, done.stderr)

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def make_dirs(self, path: str) -> None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueCommandError(f"cannot create directory {path}: {exc.strerror or exc}") from None

    def write_text(self, path: str, text: str) -> None:
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise QueueCommandError(f"cannot write {path}: {exc.strerror or exc}") from None


class SshRunner:
    """Commands on a remote host through the ``ssh`` client (BatchMode: never prompts)."""

    SSH_EXIT_UNREACHABLE = 255

    def __init__(self, ssh: SshConfig, *, connect_timeout_s: int = 10, env_setup: Sequence[str] = ()) -> None:
        self.ssh = ssh
        self.connect_timeout_s = connect_timeout_s
        #: the host's set-up lines (``module load <queue client>``), run before every command
        self.env_setup = tuple(env_setup)

    def ssh_argv(self) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}",
                "-p", str(self.ssh.port)]
        if self.ssh.key:
            argv += ["-i", str(self.ssh.key), "-o", "IdentitiesOnly=yes"]
        if self.ssh.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.ssh.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        return argv + [self.ssh.destination, "--"]

    def run(self, argv: Sequence[str], *, input_text: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandResult:
        argv = tuple(argv)
        remote = argv
        if self.env_setup:
            # The set-up lines as the site wrote them, then the command with its arguments intact.
            remote = ("sh", "-c", "\n".join(self.env_setup) + '\nexec "$@"', "sh", *argv)
        full = [*self.ssh_argv(), shlex.join(remote)]
        try:
            done = subprocess.run(full, input=input_text, capture_output=True, text=True, timeout=timeout_s,
                                  stdin=None if input_text is not None else subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise QueueCommandError(f"`{shlex.join(argv)}` on {self.ssh.destination} did not answer within "
                                    f"{timeout_s:g} s", transient=True) from None
        except FileNotFoundError:
            raise QueueCommandError("the `ssh` client is not installed on this machine") from None
        if done.returncode == self.SSH_EXIT_UNREACHABLE:
            raise QueueCommandError(f"cannot reach {self.ssh.destination} port {self.ssh.port}: "
                                    f"{done.stderr.strip() or 'ssh failed'}", transient=True)
        return CommandResult(argv, done.returncode, done.stdout, done.stderr)

    def read_text(self, path: str) -> str | None:
        result = self.run(["cat", "--", path])
        return result.stdout if result.ok else None

    def make_dirs(self, path: str) -> None:
        result = self.run(["mkdir", "-p", "--", path])
        if not result.ok:
            raise QueueCommandError(f"cannot create {path} on {self.ssh.destination}: {result.describe()}")

    def write_text(self, path: str, text: str) -> None:
        result = self.run(["tee", "--", path], input_text=text)
        if not result.ok:
            raise QueueCommandError(f"cannot write {path} on {self.ssh.destination}: {result.describe()}")


def runner_for(host: HostConfig, env: Mapping[str, str] | None = None) -> CommandRunner:
    """The runner that reaches ``host``'s queue commands."""
    if host.ssh is not None:
        return SshRunner(host.ssh, env_setup=host.env_setup)
    return LocalRunner(env)
