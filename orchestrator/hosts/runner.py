"""Running commands on a host: one result type, one client API, wherever the command runs.

Queue backends, ``orch hosts check``, staging and recovery only build argument lists; a
:class:`CommandRunner` runs them and answers with a :class:`CommandResult`. The runner is
chosen by :func:`runner_for`: this machine (:class:`LocalRunner`), or a host over SSH, where
commands run on pooled paramiko connections (:func:`orchestrator.hosts.ssh.client.shared_pool`:
a command on a kept connection answers in ~10 ms, where each ``ssh`` process pays ~0.15 s of
start-up and key exchange). The SSH runners (:class:`~orchestrator.hosts.ssh.shell.RemoteShell`:
paramiko connections and pools, and the OpenSSH client for bulk streams) also open streams
(``start``); they get the remote shell a ``shlex.join``-ed command line, so arguments stay
arguments.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.errors import QueueCommandError

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CommandResult:
    """How one command ended, wherever it ran (here, or on a host through paramiko or ``ssh``).

    ``exit_code`` is negative when the command ended without an exit status (killed by a
    signal; a remote command whose channel closed first). Output is text (UTF-8, undecodable
    bytes replaced): commands answer in text; byte payloads go through streams instead.
    """

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        """``squeue ... exited 1: <last lines of stderr>`` for error messages."""
        detail = (self.stderr.strip() or self.stdout.strip() or "no output").splitlines()
        how = f"exited {self.exit_code}" if self.exit_code >= 0 else "was killed (no exit status)"
        return f"`{shlex.join(self.argv)[:300]}` {how}: {' | '.join(detail[-3:])}"


class CommandRunner(Protocol):
    """Runs commands (argument lists) on one host and reads and writes its small files."""

    def run(self, argv: Sequence[str], *, input_text: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> CommandResult:
        """Run and return the result (a non-zero exit is a result, not an error); raise
        :class:`QueueCommandError` when the command cannot be started or the host reached
        (``transient``: a timeout, a lost connection, a host that does not answer)."""
        ...

    def read_text(self, path: str) -> str | None:
        """The content of a (small) file on the host, or None when it does not exist."""
        ...

    def make_dirs(self, path: str) -> None:
        """``mkdir -p`` on the host; :class:`QueueCommandError` when it cannot."""
        ...

    def write_text(self, path: str, text: str) -> None:
        """Write a (small) file on the host; :class:`QueueCommandError` when it cannot."""
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
            done = subprocess.run(list(argv), input=input_text, capture_output=True, text=True, encoding="utf-8",
                                  errors="replace", timeout=timeout_s, env=self._environment(),
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


def runner_for(host: HostConfig, env: Mapping[str, str] | None = None) -> CommandRunner:
    """The runner for ``host``'s commands: this machine (with ``env`` over its environment), or
    the host's SSH target through this process's pooled connections to it, each command run
    after the host's ``env_setup`` lines."""
    if host.ssh is not None:
        from orchestrator.hosts.ssh.client import shared_pool
        from orchestrator.hosts.ssh.target import SSHTarget

        return shared_pool(SSHTarget.from_config(host.ssh), env_setup=host.env_setup)
    return LocalRunner(env)
