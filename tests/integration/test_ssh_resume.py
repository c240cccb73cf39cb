"""The SSH server killed in the middle of a large transfer, restarted: the transfer resumes from
the partial copy (its prefix checked by hash on the host) and the file arrives verified.

Uses its own sshd (tests/infra/sshd.sh with a private ORCH_CI_ROOT, on a free port), so that
killing it cannot disturb other tests using the shared one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.services import INFRA_DIR, parse_exports, require
from sqlalchemy import select

from orchestrator.hosts.ssh.target import SSHTarget
from orchestrator.store import ProjectStore
from orchestrator.transfer.errors import TransferError
from orchestrator.transfer.ledger import RECORDS
from orchestrator.transfer.progress import Progress
from orchestrator.transfer.stager import Stager

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def _sshd(root: Path, command: str) -> str:
    env = {**os.environ, "ORCH_CI_ROOT": str(root)}
    done = subprocess.run(["bash", str(INFRA_DIR / "sshd.sh"), command], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    require(done.returncode == 0, f"sshd.sh {command} failed: {done.stderr.strip()}")
    return done.stdout


@pytest.fixture
def private_sshd() -> Iterator[tuple[Path, SSHTarget]]:
    require(os.geteuid() == 0, "starting a private sshd needs root")
    root = Path(tempfile.mkdtemp(prefix="orch-sshd-resume-", dir="/tmp"))
    root.chmod(0o711)  # sshd reads authorized_keys below it as the test user
    try:
        _sshd(root, "start")
        env = parse_exports(_sshd(root, "env"))
        yield root, SSHTarget(env["ORCH_TEST_SSH_HOST"], int(env["ORCH_TEST_SSH_PORT"]), env["ORCH_TEST_SSH_USER"],
                              Path(env["ORCH_TEST_SSH_KEY"]), Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"]))
    finally:
        subprocess.run(["bash", str(INFRA_DIR / "sshd.sh"), "stop"], env={**os.environ, "ORCH_CI_ROOT": str(root)},
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _kill_sshd(root: Path) -> None:
    """SIGKILL our sshd (pid file) and every process below it: its sessions and the remote helper."""
    master = int((root / "sshd" / "sshd.pid").read_text().split()[0])
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    doomed, queue = [], [master]
    while queue:
        pid = queue.pop()
        doomed.append(pid)
        queue.extend(children.get(pid, []))
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _big_file(path: Path, size: int) -> str:
    block = bytearray(os.urandom(MIB))
    hasher = hashlib.sha256()
    with path.open("wb") as handle:
        for index in range(size // MIB):
            block[:8] = index.to_bytes(8, "little")
            handle.write(block)
            hasher.update(block)
    return hasher.hexdigest()


@pytest.mark.parametrize(("bulk", "size_mb"), [("auto", 300), ("paramiko", 96)])
def test_killed_server_mid_transfer_resumes_from_the_partial_copy(private_sshd: tuple[Path, SSHTarget],
                                                                  tmp_path: Path, bulk: str, size_mb: int) -> None:
    root, target = private_sshd
    remote = root / "work"
    remote.mkdir()
    shutil.chown(remote, target.user)
    source = tmp_path / "particles.mrcs"
    digest = _big_file(source, size_mb * MIB)
    killed: list[int] = []

    def kill_midway(progress: Progress) -> None:
        if not killed and progress.bytes_done > size_mb * MIB // 3:
            killed.append(progress.bytes_done)
            _kill_sshd(root)

    with ProjectStore.create(tmp_path / "store.sqlite", "p") as store:
        run = store.runs.create("refine", {})
        with Stager(store, target, host="box", bulk=bulk, retries=0, progress=kill_midway) as stager:
            with pytest.raises(TransferError, match="connection lost"):
                stager.stage_in(run.id, [source], str(remote), base=tmp_path)
        assert killed
        partial = remote / "particles.mrcs.orch-part"
        kept = partial.stat().st_size
        assert 0 < kept < size_mb * MIB
        assert not (remote / "particles.mrcs").exists()

        _sshd(root, "start")  # same host key, same port
        with Stager(store, target, host="box", bulk=bulk) as stager:
            report = stager.stage_in(run.id, [source], str(remote), base=tmp_path)
        assert report.bytes_sent == size_mb * MIB - kept
        with store.engine.connect() as conn:
            rows = conn.execute(select(RECORDS.c.state, RECORDS.c.resumed_from, RECORDS.c.bytes_done)
                                .order_by(RECORDS.c.id)).all()
    assert [r.state for r in rows] == ["failed", "done"]
    assert rows[1].resumed_from == kept and rows[1].bytes_done == size_mb * MIB
    assert hashlib.sha256((remote / "particles.mrcs").read_bytes()).hexdigest() == digest
    assert not partial.exists()
