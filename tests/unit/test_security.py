"""The project's TLS credentials (issue 17, point 5): made once, owner-only, refused when others
could have read them, and written into each endpoint's configuration the way it needs them.
The endpoints themselves refusing strangers: tests/integration/test_tls.py."""

from __future__ import annotations

import multiprocessing
import os
import shlex
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from orchestrator.hosts.config.model import HostConfig, HostKind, PilotConfig, QueueConfig
from orchestrator.hosts.queues.pilots import pilot_spec
from orchestrator.hosts.ssh.workers import SSHWorkerError, _credentials_line
from orchestrator.security import (
    ROLES,
    TLSCredentialsError,
    load_project_tls,
    project_tls,
    tls_folder,
)

FILES = ["ca.crt", *(f"{role}.{ext}" for role in ROLES for ext in ("crt", "key"))]


def modes(folder: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in [folder, *folder.iterdir()]}


def test_made_once_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        tls = project_tls(tmp_path / "proj")
    finally:
        os.umask(old)
    assert tls.folder == tmp_path / "proj" / ".orch" / "tls" == tls_folder(tmp_path / "proj")
    assert sorted(p.name for p in tls.folder.iterdir()) == sorted(FILES)
    assert modes(tls.folder) == {"tls": 0o700, **dict.fromkeys(FILES, 0o600)}
    assert stat.S_IMODE(tls.folder.parent.stat().st_mode) == 0o700
    first = {name: (tls.folder / name).read_bytes() for name in FILES}
    again = project_tls(tmp_path / "proj")
    assert {name: (again.folder / name).read_bytes() for name in FILES} == first  # loaded, not made anew
    assert [p.name for p in tls.folder.parent.iterdir()] == ["tls"]  # no staging folder left behind


def test_the_ca_key_is_never_written_and_each_project_has_its_own_ca(tmp_path: Path) -> None:
    a, b = project_tls(tmp_path / "a"), project_tls(tmp_path / "b")
    ca = x509.load_pem_x509_certificate(a.ca_file.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    keys = [p for p in a.folder.iterdir() if b"PRIVATE KEY" in p.read_bytes()]
    assert sorted(p.name for p in keys) == ["client.key", "scheduler.key", "worker.key"]
    assert a.ca_file.read_bytes() != b.ca_file.read_bytes()
    with pytest.raises((ValueError, InvalidSignature)):
        x509.load_pem_x509_certificate(b.cert_file("client").read_bytes()).verify_directly_issued_by(ca)


def _make_in(path: str) -> bytes:
    return project_tls(path).ca_file.read_bytes()


def test_processes_making_them_at_once_end_up_with_one_set(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        cas = pool.map(_make_in, [str(tmp_path / "proj")] * 8)
    assert len(set(cas)) == 1
    assert [p.name for p in (tmp_path / "proj" / ".orch").iterdir()] == ["tls"]


@pytest.mark.parametrize("name", ["tls", *FILES])
@pytest.mark.parametrize("mode_bits", [0o040, 0o004, 0o010])
def test_credentials_others_could_read_are_refused(tmp_path: Path, name: str, mode_bits: int) -> None:
    tls = project_tls(tmp_path / "proj")
    path = tls.folder if name == "tls" else tls.folder / name
    path.chmod(stat.S_IMODE(path.stat().st_mode) | mode_bits)
    with pytest.raises(TLSCredentialsError) as caught:
        load_project_tls(tmp_path / "proj")
    message = str(caught.value)
    assert message.startswith(f"{path}: mode ") and "lets other users read the project's TLS credentials" in message
    assert f"remove {tls.folder}" in message and "makes new ones" in message
    with pytest.raises(TLSCredentialsError):  # the scheduler's way in refuses them too; it does not repair them
        project_tls(tmp_path / "proj")


def test_a_link_in_place_of_the_folder_or_a_file_is_refused(tmp_path: Path) -> None:
    elsewhere = project_tls(tmp_path / "elsewhere")
    target = tmp_path / "proj" / ".orch"
    target.mkdir(parents=True)
    (target / "tls").symlink_to(elsewhere.folder)
    with pytest.raises(TLSCredentialsError, match=r"tls: not a plain folder"):
        project_tls(tmp_path / "proj")
    mine = project_tls(tmp_path / "mine")
    mine.key_file("client").unlink()
    mine.key_file("client").symlink_to(elsewhere.key_file("client"))
    with pytest.raises(TLSCredentialsError, match=r"client.key: not a plain file"):
        load_project_tls(tmp_path / "mine")


def test_credentials_of_another_user_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project_tls(tmp_path / "proj")
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 4242)
    with pytest.raises(TLSCredentialsError, match=r"tls: owned by uid \d+, not by you"):
        load_project_tls(tmp_path / "proj")


def test_missing_swapped_or_foreign_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(TLSCredentialsError, match=r"the project's TLS credentials are missing"):
        load_project_tls(tmp_path / "nothing")
    other = project_tls(tmp_path / "other")
    tls = project_tls(tmp_path / "proj")
    tls.cert_file("worker").write_bytes(other.cert_file("worker").read_bytes())
    with pytest.raises(TLSCredentialsError, match=r"worker.crt: not signed by the project's CA"):
        load_project_tls(tmp_path / "proj")
    namesake = project_tls(tmp_path / "elsewhere" / "proj")  # a CA of the same name: only the signature differs
    tls = project_tls(tmp_path / "proj1" / "proj")
    tls.cert_file("client").write_bytes(namesake.cert_file("client").read_bytes())
    with pytest.raises(TLSCredentialsError, match=r"client.crt: not signed by the project's CA"):
        load_project_tls(tmp_path / "proj1" / "proj")
    tls = project_tls(tmp_path / "proj2")
    tls.key_file("worker").write_bytes(tls.key_file("client").read_bytes())
    with pytest.raises(TLSCredentialsError, match=r"worker.key: not the key of .*worker.crt"):
        load_project_tls(tmp_path / "proj2")
    tls = project_tls(tmp_path / "proj3")
    tls.key_file("scheduler").unlink()
    with pytest.raises(TLSCredentialsError, match=r"scheduler.key: missing from the project's TLS credentials"):
        load_project_tls(tmp_path / "proj3")
    tls = project_tls(tmp_path / "proj4")
    tls.ca_file.write_text("not a certificate\n")
    with pytest.raises(TLSCredentialsError, match=r"ca.crt: not a PEM certificate"):
        load_project_tls(tmp_path / "proj4")


def test_security_objects_require_tls_and_carry_only_what_each_side_needs(tmp_path: Path) -> None:
    tls = project_tls(tmp_path / "proj")
    cluster = tls.cluster_security()
    assert cluster.require_encryption
    for role in ROLES:
        assert cluster.get_tls_config_for_role(role) == {
            "ca_file": str(tls.ca_file), "ciphers": None, "cert": str(tls.cert_file(role)),
            "key": str(tls.key_file(role))}
    client = tls.client_security()
    assert client.require_encryption and client.get_tls_config_for_role("client")["key"] == str(tls.key_file("client"))
    assert client.get_tls_config_for_role("scheduler")["key"] is None
    assert client.get_tls_config_for_role("worker")["key"] is None
    pem = tls.worker_pem()
    assert pem.key == tls.key_file("worker").read_text() and "PRIVATE KEY" not in repr(pem)
    files = tls.worker_files(lambda path: path.replace(str(tmp_path), "/node"))
    assert files.key == "/node/proj/.orch/tls/worker.key" and files.ca_file == "/node/proj/.orch/tls/ca.crt"


def slurm_host() -> HostConfig:
    queue = QueueConfig(name="debug", cores=8, memory_mb=8000, walltime_s=3600)
    return HostConfig(name="cl", kind="slurm", queues={"debug": queue}, default_queue="debug",
                      pilot=PilotConfig(cores=2, memory_mb=2000, walltime_s=1800, processes=2))


def test_pilot_workers_get_their_files_as_the_node_sees_them_quoted_for_the_job_shell(tmp_path: Path) -> None:
    tls = project_tls(tmp_path / "my proj #1 'x'")
    spec = pilot_spec(slurm_host(), tls=tls, node_path=lambda p: p.replace(str(tmp_path), "/nodes see/it"))
    args = spec.kwargs["worker_extra_args"]
    node = "/nodes see/it/my proj #1 'x'/.orch/tls"
    assert args[args.index("--tls-ca-file") + 1] == shlex.quote(f"{node}/ca.crt")
    assert args[args.index("--tls-cert") + 1] == shlex.quote(f"{node}/worker.crt")
    assert args[args.index("--tls-key") + 1] == shlex.quote(f"{node}/worker.key")
    assert shlex.split(" ".join(args))[shlex.split(" ".join(args)).index("--tls-key") + 1] == f"{node}/worker.key"
    assert args[args.index("--dashboard-address") + 1] == "127.0.0.1:0"
    assert spec.kwargs["protocol"] == "tls://"
    options = spec.kwargs["scheduler_options"]
    assert options["protocol"] == "tls://" and options["dashboard_address"] == "127.0.0.1:0"
    assert options["security"].require_encryption
    assert options["security"].tls_scheduler_key == str(tls.key_file("scheduler"))
    assert "security" not in spec.kwargs  # dask-jobqueue would write this machine's paths, unquoted


def test_pilots_without_credentials_still_keep_their_http_on_loopback() -> None:
    spec = pilot_spec(slurm_host())
    assert spec.kwargs["scheduler_options"] == {"dashboard_address": "127.0.0.1:0"}
    assert "--tls-key" not in spec.kwargs["worker_extra_args"] and "protocol" not in spec.kwargs


def test_ssh_workers_get_credentials_exactly_when_their_scheduler_speaks_tls(tmp_path: Path) -> None:
    host = HostConfig(name="box", kind=HostKind.SSH)
    pem = project_tls(tmp_path / "proj").worker_pem()
    line = _credentials_line(host, "tls", pem)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line: JSON escapes the PEM's line breaks
    assert b"PRIVATE KEY" in line and _credentials_line(host, "tcp", None) == b"{}\n"
    with pytest.raises(SSHWorkerError, match=r"host 'box': the scheduler speaks TLS; the workers need"):
        _credentials_line(host, "tls", None)
    with pytest.raises(SSHWorkerError, match=r"host 'box': TLS credentials given for a plain TCP scheduler"):
        _credentials_line(host, "tcp", pem)
