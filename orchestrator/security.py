"""TLS for every dask endpoint of a project: credentials made for the project, checked on every load.

Why: a dask scheduler runs whatever a connected client or worker sends it, as the user who
started it, and a worker runs what its scheduler sends. A scheduler or worker that anyone
who reaches its port may talk to (a pilot's scheduler on a cluster's login node, a port
forwarded to an SSH box's loopback) lets any user there run code as the project's owner.

What: each project has its own certificate authority, made once, and three certificates it
signed (``scheduler``, ``worker``, ``client``) with their keys, in ``<project>/.orch/tls/``
(on the shared file system that pilots see). The CA's own key is never written anywhere: once
the three are signed, nothing can sign another certificate that the project's endpoints would
accept. Every endpoint requires TLS both ways (dask's :class:`~distributed.security.Security`
with ``require_encryption=True``; dask asks for and verifies the other end's certificate against
the CA): a client or worker without a certificate of this project, or with another project's,
fails the handshake before dask reads a byte from it. dask does not tell roles apart: each of
the three keys opens every endpoint of the project, so all three are equally secret.

Modes: the folder is 0700 and every file 0600, owned by the user; :func:`load_project_tls`
checks that on every load and refuses credentials that others could have read (they must be
made anew, not just ``chmod``-ed: someone may have copied them already).

How each endpoint gets them: processes on this machine by path
(:meth:`ProjectTLS.cluster_security`); pilots' workers by path on the shared file system as the
compute node sees it (:meth:`ProjectTLS.worker_files`); SSH hosts by content, through the
worker's own SSH channel, so they never lie in a file there (:meth:`ProjectTLS.worker_pem`).
"""

from __future__ import annotations

import datetime
import os
import shutil
import ssl
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from distributed.security import Security

from orchestrator.errors import OrchestratorError

ROLES = ("scheduler", "worker", "client")
CA_FILE = "ca.crt"
#: ten years: a project lives as long as its data is worked on; an expired set is refused with the fix
VALID_DAYS = 3650
#: what loopback-only dashboards and HTTP endpoints bind to (dask's own default is every interface)
LOOPBACK_HTTP = "127.0.0.1:0"


class TLSCredentialsError(OrchestratorError):
    """A project's TLS credentials are missing, damaged, expired or readable by others."""


def tls_folder(project_dir: Path | str) -> Path:
    """Where a project keeps its TLS credentials (``.orch`` is in the project's owned entries)."""
    project_dir = Path(project_dir)
    return project_dir / ".orch" / "tls"


@dataclass(frozen=True)
class WorkerTLSFiles:
    """A worker's credentials by path, as the worker's machine sees them."""

    ca_file: str
    cert: str
    key: str


@dataclass(frozen=True)
class WorkerTLSPem:
    """A worker's credentials by content (PEM), for a host that must not keep them in a file."""

    ca: str = field(repr=False)
    cert: str = field(repr=False)
    key: str = field(repr=False)

    def as_dict(self) -> dict[str, str]:
        return {"ca": self.ca, "cert": self.cert, "key": self.key}


@dataclass(frozen=True)
class ProjectTLS:
    """A project's checked TLS credentials (see the module docstring)."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / CA_FILE

    def cert_file(self, role: str) -> Path:
        return self.folder / f"{_role(role)}.crt"

    def key_file(self, role: str) -> Path:
        return self.folder / f"{_role(role)}.key"

    def cluster_security(self) -> Security:
        """For processes on this machine that start a cluster: its scheduler, its local workers,
        and the client that talks to it (every role, by path)."""
        paths: dict[str, str] = {}
        for role in ROLES:
            paths[f"tls_{role}_cert"] = str(self.cert_file(role))
            paths[f"tls_{role}_key"] = str(self.key_file(role))
        return Security(require_encryption=True, tls_ca_file=str(self.ca_file), **paths)

    def client_security(self) -> Security:
        """For a client of one of the project's schedulers (tests, a user's own session)."""
        return Security(require_encryption=True, tls_ca_file=str(self.ca_file),
                        tls_client_cert=str(self.cert_file("client")), tls_client_key=str(self.key_file("client")))

    def worker_files(self, as_seen: Callable[[str], str] | None = None) -> WorkerTLSFiles:
        """The worker's files; ``as_seen`` turns a path here into the path on the worker's machine
        (a host's ``path_map``)."""
        see = as_seen or (lambda path: path)
        return WorkerTLSFiles(see(str(self.ca_file)), see(str(self.cert_file("worker"))),
                              see(str(self.key_file("worker"))))

    def worker_pem(self) -> WorkerTLSPem:
        """The worker's credentials by content."""
        return WorkerTLSPem(self.ca_file.read_text(), self.cert_file("worker").read_text(),
                            self.key_file("worker").read_text())


def project_tls(project_dir: Path | str) -> ProjectTLS:
    """The project's credentials, made on first use (atomically: two processes making them at
    once end up with the same set), then checked as :func:`load_project_tls` does."""
    folder = tls_folder(project_dir)
    if not os.path.lexists(folder):
        _make(folder, Path(project_dir).name)
    return load_project_tls(project_dir)


def load_project_tls(project_dir: Path | str) -> ProjectTLS:
    """The project's credentials, refused (naming the file) when missing, not the user's, readable
    by others, damaged or expired."""
    folder = tls_folder(project_dir)
    remake = (f"remove {folder} (with the project's scheduler stopped) and the next start of the scheduler "
              f"makes new ones")
    if not os.path.lexists(folder):
        raise TLSCredentialsError(f"{folder}: the project's TLS credentials are missing; the project's scheduler "
                                  "makes them when it starts")
    _check_private(folder, remake, directory=True)
    tls = ProjectTLS(folder)
    files = [tls.ca_file, *(path for role in ROLES for path in (tls.cert_file(role), tls.key_file(role)))]
    for path in files:
        if not os.path.lexists(path):
            raise TLSCredentialsError(f"{path}: missing from the project's TLS credentials; {remake}")
        _check_private(path, remake, directory=False)
    _check_certificates(tls, remake)
    return tls


def _role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"TLS role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def _check_private(path: Path, remake: str, *, directory: bool) -> None:
    """Owned by this user, not a link, and nothing for group or others (not even to list)."""
    info = os.lstat(path)
    kind = "folder" if directory else "file"
    if stat.S_ISLNK(info.st_mode) or (stat.S_ISDIR(info.st_mode) != directory) \
            or not (directory or stat.S_ISREG(info.st_mode)):
        raise TLSCredentialsError(f"{path}: not a plain {kind} (a link or something else is where the project's "
                                  f"TLS credentials should be); refused; {remake}")
    if info.st_uid != os.geteuid():
        raise TLSCredentialsError(f"{path}: owned by uid {info.st_uid}, not by you (uid {os.geteuid()}); the "
                                  f"project's TLS credentials must be yours alone; refused; {remake}")
    if info.st_mode & 0o077:
        wanted = "0700" if directory else "0600"
        raise TLSCredentialsError(
            f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read the project's TLS credentials "
            f"(it must be {wanted}); whoever copied them can run programs as you through the project's dask "
            f"schedulers and workers, so they are refused rather than trusted; {remake}")


def _check_certificates(tls: ProjectTLS, remake: str) -> None:
    """Each certificate signed by the CA and valid now; each key the one of its certificate."""
    now = datetime.datetime.now(datetime.UTC)
    try:
        ca = x509.load_pem_x509_certificate(tls.ca_file.read_bytes())
    except ValueError as exc:
        raise TLSCredentialsError(f"{tls.ca_file}: not a PEM certificate ({exc}); {remake}") from None
    for role in ROLES:
        path = tls.cert_file(role)
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError as exc:
            raise TLSCredentialsError(f"{path}: not a PEM certificate ({exc}); {remake}") from None
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, InvalidSignature):  # another issuer's name, or its signature
            raise TLSCredentialsError(f"{path}: not signed by the project's CA ({tls.ca_file}); {remake}") from None
        for checked, name in ((cert, path), (ca, tls.ca_file)):
            if not checked.not_valid_before_utc <= now <= checked.not_valid_after_utc:
                raise TLSCredentialsError(f"{name}: valid from {checked.not_valid_before_utc:%Y-%m-%d} to "
                                          f"{checked.not_valid_after_utc:%Y-%m-%d}, not now; {remake}")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(path, tls.key_file(role))
        except ssl.SSLError as exc:
            raise TLSCredentialsError(f"{tls.key_file(role)}: not the key of {path} ({exc.reason or exc}); "
                                      f"{remake}") from None


def _make(folder: Path, project_name: str) -> None:
    """Write a fresh set into a private temporary folder beside ``folder``, then rename it into place.

    A folder made meanwhile by another process wins (the rename fails on it), and ours goes."""
    parent = folder.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tls-", dir=parent))  # 0700, whatever the umask
    try:
        for name, content in _generate(project_name).items():
            _write_private(staging / name, content)
        try:
            os.rename(staging, folder)
        except OSError:
            if not os.path.lexists(folder):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _write_private(path: Path, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)


def _generate(project_name: str) -> dict[str, bytes]:
    """The CA certificate and the three signed certificates with their keys (P-256: quick
    handshakes); the CA key stays in memory and is dropped."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "em-orchestrator"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"project {project_name[:40]} CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(VALID_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    files = {CA_FILE: ca.public_bytes(serialization.Encoding.PEM)}
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        # Every endpoint both listens and connects, so each certificate serves both ends.
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "em-orchestrator"),
                                         x509.NameAttribute(NameOID.COMMON_NAME, f"dask-{role}")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"dask-{role}")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        files[f"{role}.crt"] = cert.public_bytes(serialization.Encoding.PEM)
        files[f"{role}.key"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())
    return files
