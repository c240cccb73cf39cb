"""Where to log in over SSH (:class:`SSHTarget`), and what can go wrong logging in.

One target type for every SSH use: paramiko connections (:mod:`.client`), the OpenSSH client
(:mod:`.openssh`), queue commands on a login node, staging, dask workers, ``orch hosts check``.
Whichever client does the work, the same rules come from it: the host key is checked against
the target's known_hosts file (default ``~/.ssh/known_hosts``), strictly; the login is the
target's key file, else the SSH agent; nothing ever prompts. No paramiko here, so the OpenSSH
path and the queue runners do not load it.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.hosts.errors import HostError


class SSHError(HostError):
    """Something went wrong talking to a host over SSH; the message names the host."""


class SSHConnectError(SSHError):
    """The host could not be reached, or the SSH handshake failed (or the connection was lost)."""


class HostKeyError(SSHError):
    """The host's key is not the one known_hosts holds for it (or none is held)."""


class HostKeyUnknownError(HostKeyError):
    """known_hosts holds no key for the host: the user must accept it first."""


class HostKeyMismatchError(HostKeyError):
    """known_hosts holds a different key for the host."""


class SSHAuthError(SSHError):
    """None of our keys (key file, agent) was accepted."""


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
        """From any object with ``host``, ``port``, ``user``, ``key``, ``known_hosts`` attributes
        (a host's :class:`~orchestrator.hosts.config.model.SshConfig`)."""
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
