"""Dask workers on an SSH host, attached to a scheduler on this machine through the SSH connection.

Nothing but SSH crosses the network, in either direction, and the remote opens no port except
on its loopback interface:

- each worker reaches the scheduler through a remote forward (``ssh -R``): the host's
  ``127.0.0.1:<R>`` leads back to the scheduler's port here;
- the scheduler and clients reach each worker through a local forward (``ssh -L``): the
  worker listens on the host's ``127.0.0.1:<W>`` and advertises ``tls://127.0.0.1:<L>``, a
  port on this machine that leads to it.

Those loopback ports are open to every user of either machine, so the dask traffic inside the
forwards is TLS, end to end between the scheduler (or another worker) here and the worker
there, with the project's credentials (:mod:`orchestrator.security`): a connection without a
certificate of the project is refused at either end. The worker's credentials travel as the
first line of its own SSH channel's stdin and live only in the worker's memory
(:data:`~orchestrator.hosts.ssh.worker_scripts.WRAPPER`): nothing is written on the host, and
nothing is left there when the workers stop, however they stop. Each worker's HTTP endpoint
(dask's metrics) listens on the host's loopback only.

A consequence the caller must respect: the workers of the group cannot reach other workers
(theirs or this machine's), only the scheduler. Data may flow from an SSH worker to a worker
of this machine (that one connects to the advertised local port), never the other way, so a
task for an SSH worker must get its inputs as plain arguments, not as futures held elsewhere.

Every worker runs under a small wrapper that holds the worker in its own process group and
ends that whole group when its stdin closes: closing the group, or losing the SSH connection,
leaves no dask worker (nor a program a step started) running on the host.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paramiko

from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.errors import HostError
from orchestrator.hosts.ssh.client import (
    ChannelProcess,
    PortForward,
    SSHConnection,
    SSHError,
    SSHTarget,
    connect,
)
from orchestrator.hosts.ssh.worker_scripts import PROBE, WRAPPER
from orchestrator.security import LOOPBACK_HTTP, WorkerTLSPem

log = logging.getLogger(__name__)

DEFAULT_PYTHON = "python3"
STDERR_TAIL_LINES = 25
_STOP_GRACE_S = 10.0  # a worker gets this long to leave the scheduler cleanly before SIGKILL


class SSHWorkerError(HostError):
    """Dask workers could not be started (or kept) on an SSH host; the message names the host."""


class SSHWorkerConnectError(SSHWorkerError):
    """The host could not be reached over SSH."""


class RemotePythonError(SSHWorkerError):
    """The host has no usable Python where the configuration says."""


class RemoteModuleMissingError(SSHWorkerError):
    """The host's Python lacks a module the workers need (distributed, orchestrator, ...)."""


class PortForwardError(SSHWorkerError):
    """The SSH server refused a port forward the workers need."""


class SSHWorkerStartError(SSHWorkerError):
    """A worker process ended, or did not join the scheduler in time."""


@dataclass
class RemoteWorker:
    """One worker of a group: its name, where it listens on the host, how it is reached here."""

    name: str
    remote_port: int
    forward: PortForward
    process: ChannelProcess
    wrapper_pid: int | None = None
    worker_pid: int | None = None
    protocol: str = "tls"

    @property
    def address(self) -> str:
        """The address the scheduler knows the worker by (a port of this machine)."""
        return f"{self.protocol}://127.0.0.1:{self.forward.port}"

    @property
    def running(self) -> bool:
        return not self.process.channel.exit_status_ready()


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(nothing on stderr)"


def _scheduler_endpoint(address: str) -> tuple[str, str, int]:
    """(protocol, host, port) of a scheduler that SSH workers can reach through a forward."""
    parts = urlsplit(address)
    if parts.scheme not in ("tls", "tcp") or parts.port is None or not parts.hostname:
        raise SSHWorkerError(
            f"scheduler address {address!r}: SSH workers need a scheduler on a socket (tls://HOST:PORT); "
            f"start the LocalCluster with protocol='tls' and the project's security (protocol='tcp' for a plain "
            f"one, without TLS); processes=False defaults to inproc://")
    return parts.scheme, parts.hostname, parts.port


def _credentials_line(host: HostConfig, protocol: str, tls: WorkerTLSPem | None) -> bytes:
    """The first line of each worker's stdin: its TLS credentials, or ``{}`` for a plain TCP scheduler."""
    if protocol == "tls" and tls is None:
        raise SSHWorkerError(f"host {host.name!r}: the scheduler speaks TLS; the workers need its credentials "
                             "(tls=ProjectTLS.worker_pem())")
    if protocol == "tcp" and tls is not None:
        raise SSHWorkerError(f"host {host.name!r}: TLS credentials given for a plain TCP scheduler; start the "
                             "scheduler with protocol='tls' and the project's security")
    return (json.dumps(tls.as_dict() if tls is not None else {}) + "\n").encode()


def _remote_shell(host: HostConfig, argv: Sequence[str]) -> list[str]:
    """``argv`` run by a login bash after the host's env-setup lines (modules, conda, ...)."""
    lines = [*host.env_setup, "exec " + shlex.join(argv)]
    return ["bash", "-lc", "\n".join(lines)]


def remote_python(host: HostConfig, python: str | None = None) -> str:
    """The interpreter to run on the host: the one asked for, the host's ``python``, else python3."""
    return python or host.python or host.pilot.python or DEFAULT_PYTHON


class SSHWorkerGroup:
    """Dask workers running on one SSH host; ``close()`` ends them and the connection."""

    def __init__(self, host: HostConfig, conn: SSHConnection, scheduler_forward: PortForward,
                 workers: list[RemoteWorker], python: str) -> None:
        self.host = host
        self.conn = conn
        self.scheduler_forward = scheduler_forward
        self.workers = workers
        self.python = python
        self._closed = False
        self._lock = threading.Lock()

    @property
    def worker_addresses(self) -> list[str]:
        return [w.address for w in self.workers]

    @property
    def alive(self) -> bool:
        """True while the connection holds and every worker process runs."""
        return not self._closed and self.conn.alive and all(w.running for w in self.workers)

    def remote_pids(self) -> list[int]:
        """PIDs on the host of the wrappers and the dask workers (for diagnostics and tests)."""
        return [pid for w in self.workers for pid in (w.wrapper_pid, w.worker_pid) if pid is not None]

    def check(self) -> None:
        """Raise :class:`SSHWorkerStartError` if the connection dropped or a worker process ended."""
        if not self.conn.alive:
            raise SSHWorkerStartError(f"host {self.host.name!r}: the SSH connection to {self.conn.target.label} "
                                      f"was lost; its dask workers are gone")
        for worker in self.workers:
            if not worker.running:
                code = worker.process.channel.recv_exit_status()
                raise SSHWorkerStartError(
                    f"host {self.host.name!r}: dask worker {worker.name} ended (exit status {code}); "
                    f"its last lines:\n{_tail(worker.process.stderr_text())}")

    def wait_for_workers(self, client: Any, timeout: float = 60.0) -> None:
        """Return once every worker of the group has joined the scheduler ``client`` talks to."""
        wanted = set(self.worker_addresses)
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            joined = set(client.scheduler_info(n_workers=-1).get("workers", {}))
            if wanted <= joined:
                return
            if time.monotonic() > deadline:
                late = sorted(wanted - joined)
                stderr = "\n".join(f"--- {w.name}:\n{_tail(w.process.stderr_text(), 10)}"
                                   for w in self.workers if w.address in late)
                raise SSHWorkerStartError(
                    f"host {self.host.name!r}: {len(late)} of {len(wanted)} dask workers did not join the "
                    f"scheduler within {timeout:.0f} s ({', '.join(late)}); their last lines:\n{stderr}")
            time.sleep(0.2)

    def close(self, timeout: float = _STOP_GRACE_S + 5) -> None:
        """End the workers (stdin closed: each leaves the scheduler, then its group is killed)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for worker in self.workers:
            try:
                worker.process.close_stdin()
            except (OSError, EOFError, paramiko.SSHException):
                continue  # the channel is gone already, and with it the worker
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("host %s: dask worker %s did not end within %.0f s; closing its channel",
                            self.host.name, worker.name, timeout)
            worker.process.close()
            worker.forward.close()
        self.scheduler_forward.close()
        self.conn.close()

    def __enter__(self) -> SSHWorkerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect(host: HostConfig) -> SSHConnection:
    if host.ssh is None:
        raise SSHWorkerError(f"host {host.name!r} has no [hosts.{host.name}.ssh] section: cannot start workers "
                             f"over SSH")
    try:
        return connect(SSHTarget.from_config(host.ssh))
    except SSHError as exc:
        raise SSHWorkerConnectError(f"host {host.name!r}: cannot start dask workers: {exc}") from exc


def _probe(host: HostConfig, conn: SSHConnection, python: str, ports: int,
           modules: Sequence[str]) -> dict[str, Any]:
    """Run the probe; while it holds its ports, check that the server forwards connections to them."""
    argv = [python, "-c", PROBE, str(ports), *modules]
    with conn.start(_remote_shell(host, argv), idle_timeout=120) as process:
        try:
            line = process.readline()
            if not line:
                process.close_stdin()
                code = process.wait(60)
                raise _probe_error(host, python, code, process.stderr_text())
            try:
                report: dict[str, Any] = json.loads(line)
            except ValueError:
                raise _probe_error(host, python, None, process.stderr_text() + line.decode(errors="replace")) from None
            if not report["missing"]:
                _check_local_forwarding(host, conn, int(report["ports"][0]))
            process.close_stdin()
            process.wait(60)
        except (OSError, EOFError, TimeoutError, paramiko.SSHException) as exc:
            raise RemotePythonError(f"host {host.name!r}: the start-up probe with {python!r} did not finish ({exc}); "
                                    f"stderr:\n{_tail(process.stderr_text())}") from exc
    if report["missing"]:
        detail = "; ".join(f"{name}: {why}" for name, why in report["missing"].items())
        raise RemoteModuleMissingError(
            f"host {host.name!r}: {report['python']} lacks {', '.join(report['missing'])} ({detail}). Install "
            f"em-orchestrator (which brings dask distributed) and the plugins your steps use into that "
            f"environment, or point the host's python to one that has them.")
    if tuple(report["version"][:2]) != sys.version_info[:2]:
        log.warning("host %s: Python %s there, %s here; task functions are pickled by reference, but a "
                    "different minor version may still refuse some payloads", host.name,
                    ".".join(map(str, report["version"])), sys.version.split()[0])
    return report


def _probe_error(host: HostConfig, python: str, code: int | None, stderr: str) -> RemotePythonError:
    if code in (126, 127):
        return RemotePythonError(
            f"host {host.name!r}: cannot run the Python {python!r} there (exit status {code}). Install Python 3 "
            f"with dask distributed on the host, or name its interpreter (e.g. a venv's bin/python) in the "
            f"host's configuration; stderr:\n{_tail(stderr)}")
    return RemotePythonError(
        f"host {host.name!r}: {python!r} did not answer the start-up probe (exit status {code}); is it Python 3 "
        f"(and do the host's env_setup lines work)? stderr:\n{_tail(stderr)}")


def _check_local_forwarding(host: HostConfig, conn: SSHConnection, listening_port: int) -> None:
    """A forwarded connection to a port the probe listens on: refused only if sshd forbids it."""
    try:
        channel = conn.transport.open_channel("direct-tcpip", ("127.0.0.1", listening_port), ("127.0.0.1", 0),
                                              timeout=15)
    except paramiko.ChannelException as exc:
        why = ("the SSH server refuses local port forwarding" if exc.code ==
               paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED else "a forwarded connection failed")
        raise PortForwardError(
            f"host {host.name!r}: {why} ({exc.text}); the scheduler could not reach workers there. Set "
            f"AllowTcpForwarding yes (or local) in the host's sshd_config.") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise PortForwardError(f"host {host.name!r}: cannot open a forwarded channel: {exc}") from exc
    channel.close()


def _local_forwards(conn: SSHConnection, remote_ports: Sequence[int], avoid: set[int]) -> list[PortForward]:
    """One local forward per remote port. When this machine is the host (tests), a local port the
    kernel hands out may be one the probe chose for a worker: such forwards are bound again."""
    forwards: list[PortForward] = []
    rejected: list[PortForward] = []
    try:
        for remote in remote_ports:
            while True:
                forward = conn.forward_local(remote)
                if forward.port not in avoid:
                    break
                rejected.append(forward)
            forwards.append(forward)
    except OSError:
        for forward in forwards:
            forward.close()
        raise
    finally:
        for forward in rejected:
            forward.close()
    return forwards


def _worker_argv(python: str, protocol: str, scheduler_port: int, name: str, listen: int, contact: int,
                 resources: Mapping[str, float] | None, local_directory: str | None,
                 death_timeout_s: float) -> list[str]:
    argv = [python, "-c", WRAPPER, str(_STOP_GRACE_S), f"{protocol}://127.0.0.1:{scheduler_port}",
            "--name", name, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--dashboard-address", LOOPBACK_HTTP,
            "--listen-address", f"{protocol}://127.0.0.1:{listen}",
            "--contact-address", f"{protocol}://127.0.0.1:{contact}",
            # Steps are whole programs whose memory the host's declared memory governs; dask's
            # pause/spill thresholds are for dask's own data and would only stall them.
            "--memory-limit", "0", "--death-timeout", str(int(death_timeout_s))]
    if resources:
        argv += ["--resources", " ".join(f"{key}={value:g}" for key, value in resources.items())]
    if local_directory:
        argv += ["--local-directory", local_directory]
    return argv


def _read_pids(host: HostConfig, worker: RemoteWorker, timeout: float) -> None:
    """The wrapper's first stdout line names its pids; nothing else comes on stdout."""
    worker.process.channel.settimeout(timeout)
    try:
        line = worker.process.readline()
    except (OSError, paramiko.SSHException) as exc:
        raise SSHWorkerStartError(f"host {host.name!r}: dask worker {worker.name} did not start: {exc}; "
                                  f"stderr:\n{_tail(worker.process.stderr_text())}") from exc
    finally:
        worker.process.channel.settimeout(None)
    try:
        pids = json.loads(line)
    except ValueError:
        time.sleep(0.2)  # let the stderr drain catch up
        raise SSHWorkerStartError(f"host {host.name!r}: dask worker {worker.name} did not start; its last "
                                  f"lines:\n{_tail(worker.process.stderr_text())}") from None
    worker.wrapper_pid, worker.worker_pid = int(pids["wrapper_pid"]), int(pids["worker_pid"])


def start_ssh_workers(host: HostConfig, scheduler_address: str, *, workers: int = 1,
                      resources: dict[str, float] | None = None, python: str | None = None,
                      name_prefix: str | None = None, require: Sequence[str] = ("orchestrator",),
                      local_directory: str | None = None, death_timeout_s: float = 60.0,
                      tls: WorkerTLSPem | None = None) -> SSHWorkerGroup:
    """Start ``workers`` dask workers (one thread each) on ``host``, attached to the scheduler at
    ``scheduler_address`` (a ``tls://`` address of this machine) through one SSH connection.

    ``tls`` are the workers' credentials (:meth:`orchestrator.security.ProjectTLS.worker_pem`),
    required for a ``tls://`` scheduler, the one the SSH executor starts; a ``tcp://`` scheduler
    (tests of the forwarding itself) gets workers without TLS, open to every user of the host.

    ``resources`` become each worker's dask resources; ``python`` is the host's interpreter
    (default: the host's pilot python, else ``python3``), which must import ``distributed``
    and the modules in ``require``. Worker names are ``<name_prefix>-<i>`` (default prefix
    ``<host name>-ssh``) and must be unique within the scheduler. Call
    :meth:`SSHWorkerGroup.wait_for_workers` before relying on them.
    """
    if workers < 1:
        raise SSHWorkerError(f"host {host.name!r}: asked for {workers} workers; at least one is needed")
    protocol, scheduler_host, scheduler_port = _scheduler_endpoint(scheduler_address)
    credentials = _credentials_line(host, protocol, tls)
    interpreter = remote_python(host, python)
    prefix = name_prefix or f"{host.name}-ssh"
    conn = _connect(host)
    started: list[RemoteWorker] = []
    forwards: list[PortForward] = []
    scheduler_forward: PortForward | None = None
    try:
        try:
            scheduler_forward = conn.forward_remote(scheduler_port, local_host=scheduler_host)
        except SSHError as exc:
            raise PortForwardError(f"host {host.name!r}: workers there could not reach the scheduler: {exc}") from exc
        report = _probe(host, conn, interpreter, workers, ["distributed", *require])
        remote_ports = [int(p) for p in report["ports"]]
        forwards = _local_forwards(conn, remote_ports, {*remote_ports, scheduler_forward.port})
        for index, (remote_port, forward) in enumerate(zip(remote_ports, forwards, strict=True)):
            name = f"{prefix}-{index}"
            argv = _worker_argv(interpreter, protocol, scheduler_forward.port, name, remote_port, forward.port,
                                resources, local_directory, death_timeout_s)
            try:
                process = conn.start(_remote_shell(host, argv), idle_timeout=None)
            except SSHError as exc:
                raise SSHWorkerStartError(f"host {host.name!r}: cannot start dask worker {name}: {exc}") from exc
            started.append(RemoteWorker(name, remote_port, forward, process, protocol=protocol))
            try:
                process.write(credentials)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise SSHWorkerStartError(f"host {host.name!r}: cannot hand dask worker {name} its credentials: "
                                          f"{exc}; stderr:\n{_tail(process.stderr_text())}") from exc
        for worker in started:
            _read_pids(host, worker, timeout=60.0)
    except BaseException:
        for unused in forwards[len(started):]:
            unused.close()
        group = SSHWorkerGroup(host, conn, scheduler_forward or PortForward(0, lambda: None), started, interpreter)
        group.close(timeout=5.0)
        raise
    log.info("host %s: started %d dask workers (%s) with %s", host.name, len(started),
             ", ".join(w.address for w in started), interpreter)
    return SSHWorkerGroup(host, conn, scheduler_forward, started, interpreter)
