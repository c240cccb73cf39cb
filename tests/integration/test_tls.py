"""Nothing open (issue 17, point 5): every dask scheduler and worker we start speaks TLS with the
project's credentials, and refuses whoever does not hold them.

For each kind of scheduler, started the way the scheduler daemon starts it (the local host's
LocalCluster; the pilot clusters of the real SLURM and Grid Engine through ``QueueExecutor``;
the SSH executor's scheduler with workers on the real sshd): a plain ``distributed.Client`` is
refused, whether it asks for ``tls://`` or speaks plain TCP to the port; so is a client with
another project's credentials, and one that trusts the project's CA but shows another
project's certificate (the server's refusal, not the client's); a bare TLS handshake without a
certificate is refused by every endpoint (scheduler, workers, nannies, the SSH forwards); a
client with the project's credentials works. Every HTTP endpoint (dashboards, metrics) listens
on 127.0.0.1 only, checked on the listening sockets of the processes themselves.
"""

from __future__ import annotations

import gc
import os
import pwd
import shlex
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from distributed import Client
from distributed.security import Security
from infra.services import require_service
from test_ssh_workers import env, remote_python  # noqa: F401 - fixtures shared with the SSH worker tests

from orchestrator.hosts.config.loader import load_hosts_file
from orchestrator.hosts.config.model import HostConfig, HostKind, SshConfig
from orchestrator.hosts.local_host import LocalHostSpec
from orchestrator.project import Project
from orchestrator.scheduler.executors.local import start_local_cluster
from orchestrator.security import ProjectTLS, load_project_tls, project_tls

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SERVICE = {"ci-slurm": "slurm", "ci-sge": "sge"}


# ---------------------------------------------------------------------------------------- helpers
def endpoint(address: str) -> tuple[str, int]:
    parts = urlsplit(address)
    assert parts.hostname and parts.port, address
    return parts.hostname, parts.port


def handshake(host: str, port: int, tls: ProjectTLS, certificate: ProjectTLS | None) -> str:
    """A bare TLS connection that trusts ``tls``'s CA and shows ``certificate``'s client certificate
    (or none): "accepted" if the server keeps it open, else the server's refusal."""
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.check_hostname = False
    if certificate is not None:
        context.load_cert_chain(certificate.cert_file("client"), certificate.key_file("client"))
    with socket.create_connection((host, port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as conn:
                # TLS 1.3: the server checks the client's certificate after the client's side of the
                # handshake is done, and says no on the first read.
                conn.settimeout(1.5)
                data = conn.recv(1)
        except TimeoutError:
            return "accepted"  # dask waits for our first message: we are in
        except (ssl.SSLError, ConnectionError) as exc:
            return f"refused: {exc}"
    return "refused: closed" if not data else "accepted"


def assert_endpoint_private(address: str, tls: ProjectTLS, other: ProjectTLS) -> None:
    """Any dask endpoint: no certificate, or another project's, is refused; the project's gets in."""
    host, port = endpoint(address)
    assert handshake(host, port, tls, None).startswith("refused"), address
    assert handshake(host, port, tls, other).startswith("refused"), address
    assert handshake(host, port, tls, tls) == "accepted", address


def client_refused(address: str, security: Security | None = None) -> str:
    """A dask client that must not get in: the error it got (the test fails if it connected)."""
    error = ""
    try:
        Client(address, security=security, timeout=10, set_as_default=False).close()
    except (OSError, TypeError) as exc:  # dask's comm errors are OSErrors; TypeError: nothing to speak TLS with
        error = f"{type(exc).__name__}: {exc}"
    # A Client that failed to start closes itself when collected; collected at a random moment (inside
    # dask's loop lock) that can deadlock: let it happen now, with nothing held.
    gc.collect()
    assert error, f"{address}: a client without the project's credentials got in"
    return error


def assert_scheduler_private(address: str, tls: ProjectTLS, other: ProjectTLS) -> Client:
    """A scheduler: refused to plain and foreign dask clients; the returned client has the project's credentials."""
    assert address.startswith("tls://"), address
    client_refused(address)  # no credentials: dask has nothing to speak TLS with
    # plain TCP to the port: the server wants a TLS handshake and hangs up
    assert "closed" in client_refused(address.replace("tls://", "tcp://")).lower()
    client_refused(address, other.client_security())  # another project's credentials
    ours_ca_their_cert = Security(require_encryption=True, tls_ca_file=str(tls.ca_file),
                                  tls_client_cert=str(other.cert_file("client")),
                                  tls_client_key=str(other.key_file("client")))
    client_refused(address, ours_ca_their_cert)  # trusts the scheduler, but the scheduler does not trust it
    assert_endpoint_private(address, tls, other)
    return Client(address, security=tls.client_security(), timeout=30, set_as_default=False)


def listening(pids: Iterable[int]) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of these processes."""
    found = set()
    for pid in pids:
        for conn in psutil.Process(pid).net_connections("inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture
def other(tmp_path: Path) -> ProjectTLS:
    """Another project's credentials: a user with a project of their own."""
    return project_tls(tmp_path / "someone-elses-project")


# ---------------------------------------------------------------------------------------- local host
def test_local_cluster_refuses_strangers_and_listens_on_loopback_only(tmp_path: Path, other: ProjectTLS) -> None:
    tls = project_tls(tmp_path / "proj")
    me = psutil.Process()
    before = listening([me.pid])
    cluster, client = start_local_cluster(LocalHostSpec(workers=2), tls.cluster_security())
    try:
        with assert_scheduler_private(cluster.scheduler_address, tls, other) as ours:
            assert sorted(ours.run(os.getpid).values()) == sorted(client.run(os.getpid).values())
            assert ours.submit(sum, [1, 2, 3], pure=False).result(timeout=30) == 6
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
        for address, info in workers.items():
            assert address.startswith("tls://127.0.0.1:") and info["nanny"].startswith("tls://127.0.0.1:")
            assert_endpoint_private(address, tls, other)
            assert_endpoint_private(info["nanny"], tls, other)
        worker_pids = list(client.run(os.getpid).values())
        opened = (listening([me.pid]) - before) | listening(worker_pids)
        assert {ip for ip, _port in opened} == {"127.0.0.1"}, opened
        dashboard = urlsplit(cluster.dashboard_link)
        assert dashboard.hostname == "127.0.0.1" and ("127.0.0.1", dashboard.port) in opened
    finally:
        client.close()
        cluster.close()


def test_a_local_cluster_without_project_credentials_still_speaks_tls(other: ProjectTLS) -> None:
    """Tools and tests that start one without a project get credentials made for that cluster alone."""
    cluster, client = start_local_cluster(LocalHostSpec(workers=1))
    try:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        client_refused(cluster.scheduler_address.replace("tls://", "tcp://"))
        client_refused(cluster.scheduler_address, other.client_security())
        assert client.submit(sum, [2, 2], pure=False).result(timeout=30) == 4
    finally:
        client.close()
        cluster.close()


# ---------------------------------------------------------------------------------------- pilots
def routable_interface() -> tuple[str, str]:
    """A network interface other than loopback, with its IPv4 address: there, an HTTP endpoint
    that did not ask for 127.0.0.1 would show (the test cluster's hosts file says ``lo``)."""
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return name, address.address
    raise AssertionError(f"no network interface but loopback on this machine: {sorted(psutil.net_if_addrs())}")


@pytest.mark.parametrize("host_name", ["ci-slurm", "ci-sge"])
def test_pilot_cluster_refuses_strangers_and_its_http_listens_on_loopback_only(
        host_name: str, tmp_path: Path, other: ProjectTLS, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.scheduler.executors.queue import QueueExecutor

    for key, value in require_service(SERVICE[host_name]).items():
        monkeypatch.setenv(key, value)
    # The job script must quote the credentials' paths, and give them as the compute node sees them
    # (path_map): the project folder holds a space, a '#' and a quote, and the nodes see it elsewhere.
    project = Project.create(tmp_path / "my proj #1 'x'", name="tlsproj")
    node_view = tmp_path / "the node's view"
    node_view.symlink_to(project.path)
    interface, ip = routable_interface()
    base = load_hosts_file(REPO / "hosts" / "ci-test.toml")[host_name]
    host = replace(base, path_map=((str(project.path), str(node_view)),),
                   pilot=replace(base.pilot, interface=interface, min_pilots=0))
    me = psutil.Process()
    before = listening([me.pid])
    with project.open_store() as store:
        executor = QueueExecutor(host, project.path, store)
        try:
            tls = load_project_tls(project.path)
            script = executor.cluster.job_script()
            assert f"--tls-key {shlex.quote(f'{node_view}/.orch/tls/worker.key')} " in script, script
            assert "--dashboard-address 127.0.0.1:0" in script and "--protocol tls://" in script
            executor.cluster.scale(jobs=1)
            executor.client.wait_for_workers(1, timeout=180)
            address = executor.cluster.scheduler_address
            assert address.startswith(f"tls://{ip}:"), address
            with assert_scheduler_private(address, tls, other) as ours:
                assert ours.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
            (worker, info), = executor.client.scheduler_info()["workers"].items()
            assert_endpoint_private(worker, tls, other)
            assert_endpoint_private(info["nanny"], tls, other)
            worker_pid = executor.client.run(os.getpid)[worker]
            assert {"SLURM_JOB_ID", "JOB_ID"} & set(psutil.Process(worker_pid).environ())  # inside the queue's job
            nanny_pid = psutil.Process(worker_pid).ppid()
            # dask (TLS) on the interface the nodes use; every HTTP endpoint (dashboard, metrics) on loopback
            http_here = listening([me.pid]) - before - {(ip, endpoint(address)[1])}
            assert http_here and {a for a, _ in http_here} == {"127.0.0.1"}, http_here
            # (the worker process is forked from its nanny, and so holds the nanny's socket too)
            dask_there = {(ip, endpoint(worker)[1]), (ip, endpoint(info["nanny"])[1])}
            http_there = listening([worker_pid]) - dask_there
            assert http_there and {a for a, _ in http_there} == {"127.0.0.1"}, http_there
            assert listening([nanny_pid]) == {(ip, endpoint(info["nanny"])[1])}
        finally:
            executor.close()


# ---------------------------------------------------------------------------------------- SSH workers
def files_holding(text: str, owner: str, roots: Iterable[Path]) -> list[Path]:
    """Files of ``owner`` under ``roots`` whose content holds ``text``."""
    uid = pwd.getpwnam(owner).pw_uid
    found = []
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                try:
                    info = path.lstat()
                    if info.st_uid == uid and path.is_file() and info.st_size < 1 << 20 \
                            and text in path.read_text(errors="replace"):
                        found.append(path)
                except OSError:
                    continue  # gone meanwhile, or a socket
    return found


@pytest.fixture
def ssh_project(tmp_path: Path) -> Iterator[Project]:
    yield Project.create(tmp_path / "proj")


def test_ssh_workers_scheduler_refuses_strangers_end_to_end(
        env: dict[str, str], remote_python: str, ssh_project: Project, other: ProjectTLS) -> None:  # noqa: F811
    from orchestrator.scheduler.executors.ssh import SSHExecutor

    ssh = SshConfig(env["ORCH_TEST_SSH_HOST"], int(env["ORCH_TEST_SSH_PORT"]), env["ORCH_TEST_SSH_USER"],
                    Path(env["ORCH_TEST_SSH_KEY"]), Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"]))
    host = HostConfig(name="tlsbox", kind=HostKind.SSH, ssh=ssh, shared_fs=True, cores=2, workers=2,
                      python=remote_python)
    user = env["ORCH_TEST_SSH_USER"]
    home = Path(pwd.getpwnam(user).pw_dir)
    me = psutil.Process()
    before = listening([me.pid])
    with ssh_project.open_store() as store:
        executor = SSHExecutor(host, ssh_project.path, store)
        try:
            tls = load_project_tls(ssh_project.path)
            group = executor.workers
            assert group is not None
            address = executor.cluster.scheduler_address
            with assert_scheduler_private(address, tls, other) as ours:
                pids = ours.run(os.getpid)
            # The remote forward: any user of the SSH host can reach it on the host's loopback.
            forwarded = f"tls://127.0.0.1:{group.scheduler_forward.port}"
            with assert_scheduler_private(forwarded, tls, other) as through_the_host:
                assert through_the_host.run(os.getpid) == pids
            key = tls.key_file("worker").read_text().strip().splitlines()[1]  # a line of the secret itself
            for worker in group.workers:
                assert worker.address.startswith("tls://127.0.0.1:")
                assert_endpoint_private(worker.address, tls, other)  # the local forward, here
                assert_endpoint_private(f"tls://127.0.0.1:{worker.remote_port}", tls, other)  # the worker, there
                assert executor.client.submit(os.getpid, resources={"cpus": 1}, workers=[worker.address],
                                              pure=False).result(timeout=60) == worker.worker_pid
                process = psutil.Process(worker.worker_pid)
                assert process.username() == user
                # its credentials are in no argument list, no environment (programs a step starts inherit it)
                assert key not in " ".join(process.cmdline()) and key not in str(process.environ())
                wrapper = psutil.Process(worker.wrapper_pid)
                assert key not in " ".join(wrapper.cmdline()) and key not in str(wrapper.environ())
                opened = listening([worker.worker_pid])
                assert {ip for ip, _ in opened} == {"127.0.0.1"} and ("127.0.0.1", worker.remote_port) in opened
                assert len(opened) >= 2  # its dask port and its HTTP endpoint, both on the host's loopback
            roots = [home, Path("/tmp"), Path("/dev/shm")]
            assert files_holding(key, user, roots) == [], "the worker's key was written on the host"
            remote_pids = group.remote_pids()
            opened_here = listening([me.pid]) - before
            assert {ip for ip, _ in opened_here} == {"127.0.0.1"}, opened_here
        finally:
            executor.close()
        wait_for(lambda: not any(psutil.pid_exists(p) for p in remote_pids), 30, "the remote workers outlived close")
        assert files_holding(key, user, roots) == []
