"""The transfer protocol end to end with the real agent script, run locally.

A stand-in ``ssh`` (a shell script running the remote command line with ``sh -c``) lets
:class:`OpenSSHShell` start the agent on this machine: the command line, quoting, the
agent and the local half of the protocol are all the real ones; only the network is not.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator.hosts.ssh.openssh import OpenSSHShell, ssh_argv
from orchestrator.hosts.ssh.shell import RemoteProcess
from orchestrator.hosts.ssh.target import SSHTarget
from orchestrator.transfer import protocol
from orchestrator.transfer.errors import RemoteAgentError, SourceChangedError, TransferInterrupted
from orchestrator.transfer.fingerprint import FileStat

TARGET = SSHTarget("localhost", 2222, "me", Path("/keys/id"), Path("/keys/known hosts"))


@pytest.fixture
def start(tmp_path: Path) -> protocol.Starter:
    fake = tmp_path / "fake-ssh"
    fake.write_text('#!/bin/sh\nfor last; do :; done\nexec sh -c "$last"\n')
    fake.chmod(0o755)
    return OpenSSHShell(TARGET, ssh=str(fake)).start


PY = sys.executable


def _data(path: Path, size: int) -> FileStat:
    path.write_bytes(os.urandom(size))
    return FileStat.of(path)


def test_ssh_command_line_checks_host_keys_and_never_prompts() -> None:
    argv = ssh_argv(TARGET, ["python3", "-c", "print('a b')"])
    text = " ".join(argv)
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", 'UserKnownHostsFile="/keys/known hosts"',
                   "IdentitiesOnly=yes", "-F /dev/null", "Ciphers=aes128-gcm@openssh.com"):
        assert option in text
    assert argv[-3:] == ["--", "localhost", "python3 -c 'print('\"'\"'a b'\"'\"')'"]


def test_upload_then_resume_from_a_good_prefix(start: protocol.Starter, tmp_path: Path) -> None:
    local = _data(tmp_path / "big.bin", 3_000_000)
    dest = tmp_path / "remote" / "big.bin"
    moved = protocol.upload_file(start, PY, "here", local, str(dest), lambda n: None)
    assert dest.read_bytes() == Path(local.path).read_bytes() and moved.resumed_from == 0
    assert dest.stat().st_mtime_ns == local.mtime_ns == moved.remote_mtime_ns
    # an interrupted copy left 1.2 MB under the temporary name: only the rest is sent
    dest.unlink()
    Path(str(dest) + ".orch-part").write_bytes(Path(local.path).read_bytes()[:1_200_000])
    counted: list[int] = []
    moved = protocol.upload_file(start, PY, "here", local, str(dest), counted.append)
    assert moved.resumed_from == 1_200_000 and sum(counted) == 3_000_000
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == moved.sha256 == hashlib.sha256(
        Path(local.path).read_bytes()).hexdigest()
    assert not Path(str(dest) + ".orch-part").exists()


def test_a_partial_copy_of_other_content_is_started_over(start: protocol.Starter, tmp_path: Path) -> None:
    local = _data(tmp_path / "f.bin", 500_000)
    dest = tmp_path / "f.out"
    Path(str(dest) + ".orch-part").write_bytes(os.urandom(200_000))  # the source changed since
    moved = protocol.upload_file(start, PY, "here", local, str(dest), lambda n: None)
    assert moved.resumed_from == 0 and dest.read_bytes() == Path(local.path).read_bytes()


def test_a_source_changed_during_the_transfer_is_refused(start: protocol.Starter, tmp_path: Path) -> None:
    local = _data(tmp_path / "f.bin", 300_000)
    os.utime(local.path, ns=(1, 1))  # the stat we planned with no longer holds
    with pytest.raises(SourceChangedError, match="changed while it was sent"):
        protocol.upload_file(start, PY, "here", local, str(tmp_path / "f.out"), lambda n: None)
    assert not (tmp_path / "f.out").exists()


def test_a_wrong_hash_is_refused_and_the_partial_removed(tmp_path: Path) -> None:
    tmp, dest = tmp_path / "x.orch-part", tmp_path / "x"
    agent = subprocess.run([PY, "-c", protocol.AGENT_SOURCE, "recv", str(tmp), str(dest), "3", "0"],
                           input=b"FROM 0\nabcSHA " + b"0" * 64 + b"\n", capture_output=True, check=False)
    assert agent.returncode == 4 and agent.stdout.startswith(b"HAVE 0 ") and b"BAD " in agent.stdout
    assert not tmp.exists() and not dest.exists()


def test_download_resumes_and_keeps_the_remote_mtime(start: protocol.Starter, tmp_path: Path) -> None:
    remote = tmp_path / "remote.mrc"
    remote.write_bytes(os.urandom(2_000_000))
    os.utime(remote, ns=(123_000_000_000, 123_000_000_000))
    local = tmp_path / "back" / "remote.mrc"
    local.parent.mkdir()
    Path(str(local) + ".orch-part").write_bytes(remote.read_bytes()[:700_000])
    moved = protocol.download_file(start, PY, "here", str(remote), local, lambda n: None)
    assert moved.resumed_from == 700_000 and local.read_bytes() == remote.read_bytes()
    assert local.stat().st_mtime_ns == 123_000_000_000


def test_batches_both_ways_and_listing(start: protocol.Starter, tmp_path: Path) -> None:
    sources = []
    for index in range(40):
        path = tmp_path / "src" / f"m{index}.mrc"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(1000 + index))
        sources.append(path)
    pairs = [(str(p), str(tmp_path / "remote" / "sub" / p.name)) for p in sources]
    pairs.append((str(tmp_path / "src" / "gone.mrc"), str(tmp_path / "remote" / "gone.mrc")))
    done: list[str] = []
    outcome = protocol.upload_batch(start, PY, "here", pairs, lambda n: None,
                                    lambda moved, remote, error: done.append(remote))
    assert outcome.interrupted is None and len(outcome.moved) == 40 and list(outcome.failed) == [pairs[-1][1]]
    assert len(done) == 41
    for local, remote in pairs[:-1]:
        assert Path(remote).read_bytes() == Path(local).read_bytes()
    listing, missing = protocol.remote_stat(start, PY, "here", [str(tmp_path / "remote"), "/nonexistent"])
    assert len(listing) == 40 and missing == ["/nonexistent"]
    back = [(remote, tmp_path / "back" / Path(remote).name) for _, remote in pairs[:-1]]
    outcome = protocol.download_batch(start, PY, "here", back, lambda n: None, lambda *a: None)
    assert outcome.interrupted is None and len(outcome.moved) == 40
    assert all(local.read_bytes() == Path(remote).read_bytes() for remote, local in back)


class _DeadProcess(RemoteProcess):
    """A remote process whose connection died at once (what a killed sshd looks like)."""

    def __init__(self, argv: Sequence[str], code: int, stderr: bytes = b"") -> None:
        super().__init__(argv)
        self.code = code
        self._keep_stderr(stderr)

    def _recv(self, max_bytes: int) -> bytes:
        return b""

    def write(self, data: bytes | memoryview) -> None:
        raise BrokenPipeError

    def close_stdin(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> int:
        return self.code

    def kill(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("code", "stderr", "error"), [
    (-1, b"", TransferInterrupted), (255, b"Connection reset", TransferInterrupted),
    (127, b"sh: 1: python3: not found", RemoteAgentError), (3, b"orch-agent: protocol", RemoteAgentError),
])
def test_what_a_dead_agent_means(tmp_path: Path, code: int, stderr: bytes, error: type[Exception]) -> None:
    local = _data(tmp_path / "f", 10)
    with pytest.raises(error):
        protocol.upload_file(lambda argv: _DeadProcess(argv, code, stderr), "python3", "box", local, "/r/f",
                             lambda n: None)


def test_the_agent_stays_python_3_6_compatible() -> None:
    import ast

    ast.parse(protocol.AGENT_SOURCE, feature_version=(3, 6))  # walrus, match, etc. would fail here
    assert "from __future__" not in protocol.AGENT_SOURCE


def test_two_writers_of_one_temporary_file_never_interleave(start: protocol.Starter, tmp_path: Path) -> None:
    dest = tmp_path / "ref.mrc"
    first = start(protocol.agent_argv(PY, "recv", str(dest) + ".orch-part", str(dest), "10", "0"))
    try:
        assert first.readline().startswith(b"HAVE 0 ")  # the first writer holds the lock
        local = _data(tmp_path / "src.mrc", 10)
        with pytest.raises(TransferInterrupted, match="another transfer is writing"):
            protocol.upload_file(start, PY, "here", local, str(dest), lambda n: None)
    finally:
        first.close()
    local = FileStat.of(tmp_path / "src.mrc")
    assert protocol.upload_file(start, PY, "here", local, str(dest), lambda n: None).size == 10


def test_a_batch_removes_what_killed_batches_of_this_host_left(start: protocol.Starter, tmp_path: Path) -> None:
    """A batch's helper killed mid-file (SIGKILL) leaves ``DEST.orch-part.HOST.PID``; the next batch
    into that folder removes those whose process is gone, and nothing that may still be written."""
    remote = tmp_path / "remote"
    remote.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid whose process is gone (and reaped)
    host = socket.gethostname()
    stale = remote / f"a.bin.orch-part.{host}.{dead.pid}"
    live = remote / f"b.bin.orch-part.{host}.{os.getpid()}"  # a batch still writing
    elsewhere = remote / f"c.bin.orch-part.other-node.{dead.pid}"  # another host's, on a shared scratch
    resumable = remote / "d.bin.orch-part"  # a large file's partial copy, kept for its resume
    for path in (stale, live, elsewhere, resumable):
        path.write_bytes(b"partial")
    local = _data(tmp_path / "new.bin", 1000)
    outcome = protocol.upload_batch(start, PY, "here", [(local.path, str(remote / "new.bin"))],
                                    lambda n: None, lambda moved, remote, error: None)
    assert outcome.interrupted is None and len(outcome.moved) == 1
    assert sorted(p.name for p in remote.iterdir()) == sorted(["new.bin", live.name, elsewhere.name, resumable.name])
