"""The stager's retry paths, made to happen for real against a real sshd.

- resume with retries: the host's transfer helper is killed (SIGKILL) in the middle of a large
  file; within the same call the stager tries again and resumes from the partial copy (its
  prefix checked by hash), both ways and on both transports;
- a retry budget spent: the helper killed at every attempt; the file is reported failed and a
  later call resumes it;
- re-send after an interrupted batch: the helper of a batch of small files is killed after
  some files were confirmed; only the unconfirmed ones are sent again;
- fallback between transports: the ``ssh`` client refuses (a private key with loose
  permissions, which OpenSSH ignores and paramiko does not; an ``ssh`` on PATH too old for our
  key exchange list) and the stager moves the files through paramiko instead.

Each test asserts that every file arrives verified (SHA-256 of the bytes on the other side) and
that the ledger is right: one ``transfers`` row per file with its final state, the method that
really moved it, what it resumed from, and a ledger entry per file that arrived.

Uses its own sshd (tests/infra/sshd.sh with a private ORCH_CI_ROOT, on a free port): every
process below it is this module's, so killing a helper there cannot hit another test's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from infra.services import INFRA_DIR, parse_exports, require
from sqlalchemy import select

from orchestrator.hosts.ssh.client import connect
from orchestrator.hosts.ssh.openssh import ssh_argv
from orchestrator.hosts.ssh.target import SSHTarget
from orchestrator.store import ProjectStore
from orchestrator.transfer import protocol
from orchestrator.transfer import stager as stager_module
from orchestrator.transfer.errors import TransferError
from orchestrator.transfer.ledger import FILES, RECORDS
from orchestrator.transfer.progress import Progress
from orchestrator.transfer.stager import Stager

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
LARGE = 1 * MIB  # files from this size take the resumable stream in these tests


# ---------------------------------------------------------------------------------- the private sshd
@dataclass(frozen=True)
class PrivateSshd:
    root: Path  # its ORCH_CI_ROOT
    target: SSHTarget

    @property
    def master_pid(self) -> int:
        return int((self.root / "sshd" / "sshd.pid").read_text().split()[0])


def _sshd(root: Path, command: str) -> str:
    done = subprocess.run(["bash", str(INFRA_DIR / "sshd.sh"), command], env={**os.environ, "ORCH_CI_ROOT": str(root)},
                          capture_output=True, text=True, timeout=60, check=False)
    require(done.returncode == 0, f"sshd.sh {command} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def sshd() -> Iterator[PrivateSshd]:
    require(os.geteuid() == 0, "starting a private sshd needs root")
    root = Path(tempfile.mkdtemp(prefix="orch-sshd-retries-", dir="/tmp"))
    root.chmod(0o711)  # sshd reads authorized_keys below it as the test user
    try:
        _sshd(root, "start")
        env = parse_exports(_sshd(root, "env"))
        yield PrivateSshd(root, SSHTarget(env["ORCH_TEST_SSH_HOST"], int(env["ORCH_TEST_SSH_PORT"]),
                                          env["ORCH_TEST_SSH_USER"], Path(env["ORCH_TEST_SSH_KEY"]),
                                          Path(env["ORCH_TEST_SSH_KNOWN_HOSTS"])))
    finally:
        subprocess.run(["bash", str(INFRA_DIR / "sshd.sh"), "stop"], env={**os.environ, "ORCH_CI_ROOT": str(root)},
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def kill_helpers(sshd: PrivateSshd, mode: str) -> list[int]:
    """SIGKILL the transfer helpers (``python3 -c AGENT <mode> ...``) running below our sshd:
    what the OOM killer or a node's clean-up would do to them. Returns their pids."""
    killed = []
    for pid in _descendants(sshd.master_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 5 and argv[3] == b"-c" and argv[5] == mode.encode():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
    return killed


# ---------------------------------------------------------------------------------- fixtures, checks
@pytest.fixture
def remote_dir(sshd: PrivateSshd) -> Iterator[Path]:
    """The host's work dir: owned by the SSH user, only ever reached over SSH by the stager."""
    path = Path(tempfile.mkdtemp(prefix="orch-retry-work-", dir="/tmp"))
    shutil.chown(path, sshd.target.login)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProjectStore]:
    with ProjectStore.create(tmp_path / "store.sqlite", "p") as opened:
        yield opened


def make_stager(store: ProjectStore, target: SSHTarget, **options: object) -> Stager:
    options.setdefault("large_file", LARGE)
    options.setdefault("retry_delay_s", 0.1)
    return Stager(store, target, host="gpu-box", **options)  # type: ignore[arg-type]


def big_file(path: Path, size: int) -> str:
    """A file of ``size`` bytes (whole MiB) that differs in every MiB; returns its SHA-256."""
    block = bytearray(os.urandom(MIB))
    hasher = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for index in range(size // MIB):
            block[:8] = index.to_bytes(8, "little")
            handle.write(block)
            hasher.update(block)
    return hasher.hexdigest()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def records(store: ProjectStore) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(RECORDS).order_by(RECORDS.c.id)).mappings()]


def ledger(store: ProjectStore) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as conn:
        return {r["remote_path"]: dict(r) for r in conn.execute(select(FILES)).mappings()}


class PartialWatcher:
    """Kills the ``mode`` helpers below our sshd (or runs ``action``) each time the partial copy
    ``partial`` has grown by ``step`` bytes since the last kill (at most ``times`` kills), from a
    thread polling every 2 ms: the kill lands mid-stream however fast or slow the machine is."""

    def __init__(self, sshd: PrivateSshd, mode: str, partial: Path, step: int, times: int = 1,
                 action: Callable[[], bool] | None = None) -> None:
        self.partial, self.step, self.times = partial, step, times
        self.action = action or (lambda: bool(kill_helpers(sshd, mode)))
        self.kills: list[int] = []  # the partial copy's size at each kill
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="partial-watcher")

    def _watch(self) -> None:
        while not self._stop.wait(0.002) and len(self.kills) < self.times:
            try:
                have = self.partial.stat().st_size
            except FileNotFoundError:
                continue
            if have >= (self.kills[-1] if self.kills else 0) + self.step and self.action():
                self.kills.append(have)

    def __enter__(self) -> PartialWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class ArrivalWatcher:
    """Kills the ``mode`` helpers below our sshd once ``threshold`` files have arrived (by their
    final names) in ``folder``, from a thread polling every 2 ms, and keeps the inode of every file
    there just after the kill (every file the first try confirmed is among them)."""

    def __init__(self, sshd: PrivateSshd, mode: str, folder: Path, threshold: int) -> None:
        self.sshd, self.mode, self.folder, self.threshold = sshd, mode, folder, threshold
        self.inodes_at_kill: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="arrival-watcher")

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            if sum(1 for _ in self.folder.glob("mic_*.mrc")) < self.threshold:
                continue
            if kill_helpers(self.sshd, self.mode):
                self.inodes_at_kill = {path.name: path.stat().st_ino for path in self.folder.glob("mic_*.mrc")}
            return

    def __enter__(self) -> ArrivalWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------------- resume with retries
@pytest.mark.parametrize("bulk", ["paramiko", "openssh"])
def test_a_helper_killed_mid_upload_is_resumed_by_the_retry(sshd: PrivateSshd, store: ProjectStore,
                                                             remote_dir: Path, tmp_path: Path, bulk: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stager_module, "OPENSSH_MIN_BYTES", LARGE)
    size = 128 * MIB
    source = tmp_path / "proj" / "particles.mrcs"
    expected = big_file(source, size)
    seen: list[Progress] = []
    run = store.runs.create("refine", {})
    with make_stager(store, sshd.target, bulk=bulk, retries=2, progress=seen.append) as stager, \
            PartialWatcher(sshd, "recv", remote_dir / "particles.mrcs.orch-part", size // 3) as watcher:
        report = stager.stage_in(run.id, [source], str(remote_dir), base=source.parent, step_id=3)
    assert watcher.kills, "the helper was never killed: the test did not interrupt anything"
    arrived = remote_dir / "particles.mrcs"
    assert digest(arrived) == expected and arrived.stat().st_size == size
    assert not list(remote_dir.glob("*.orch-part*"))
    (row,) = records(store)  # one row per file, whatever the attempts
    assert row["state"] == "done" and row["bytes_done"] == size and row["error"] is None
    assert watcher.kills[0] <= row["resumed_from"] < size  # the retry went on from the partial copy
    assert row["method"] == f"stream/{bulk}" and row["sha256"] == expected
    assert report.sent == (str(source),) and report.bytes_sent == size - row["resumed_from"]
    entry = ledger(store)[str(arrived)]
    assert entry["sha256"] == expected and entry["size"] == size and entry["local_path"] == str(source)
    assert seen[-1].finished and seen[-1].bytes_done == seen[-1].bytes_total == size  # nothing counted twice


@pytest.mark.parametrize("bulk", ["paramiko", "openssh"])
def test_a_helper_killed_mid_download_is_resumed_by_the_retry(sshd: PrivateSshd, store: ProjectStore,
                                                               remote_dir: Path, tmp_path: Path, bulk: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stager_module, "OPENSSH_MIN_BYTES", LARGE)
    size = 128 * MIB
    produced = remote_dir / "out" / "volume.mrc"
    expected = big_file(produced, size)
    shutil.chown(produced.parent, sshd.target.login)
    shutil.chown(produced, sshd.target.login)
    seen: list[Progress] = []
    back = tmp_path / "back"
    with make_stager(store, sshd.target, bulk=bulk, retries=2, progress=seen.append) as stager, \
            PartialWatcher(sshd, "send", back / "volume.mrc.orch-part", size // 3) as watcher:
        report = stager.stage_out(None, [str(produced)], back)
    assert watcher.kills, "the helper was never killed: the test did not interrupt anything"
    assert digest(back / "volume.mrc") == expected and not list(back.glob("*.orch-part*"))
    (row,) = records(store)
    assert row["state"] == "done" and row["direction"] == "out" and watcher.kills[0] <= row["resumed_from"] < size
    assert row["method"] == f"stream/{bulk}" and row["bytes_done"] == size and row["sha256"] == expected
    assert report.sent == (str(produced),) and report.bytes_sent == size - row["resumed_from"]
    assert ledger(store)[str(produced)]["sha256"] == expected
    assert seen[-1].finished and seen[-1].bytes_done == size


@pytest.mark.parametrize("bulk", ["paramiko", "openssh"])
def test_a_server_restarted_mid_upload_is_reconnected_and_resumed(sshd: PrivateSshd, store: ProjectStore,
                                                                  remote_dir: Path, tmp_path: Path, bulk: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole sshd (and every session) killed mid-stream and started again, as after a host's
    reboot or a network cut: the retries of the same call reconnect (a fresh pooled connection,
    a new ``ssh``) and resume from the partial copy."""
    monkeypatch.setattr(stager_module, "OPENSSH_MIN_BYTES", LARGE)
    size = 128 * MIB
    source = tmp_path / "proj" / "particles.mrcs"
    expected = big_file(source, size)

    def restart_the_server() -> bool:
        for pid in [sshd.master_pid, *_descendants(sshd.master_pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        _sshd(sshd.root, "start")  # same host key, same port
        return True

    with make_stager(store, sshd.target, bulk=bulk, retries=4, retry_delay_s=0.5) as stager, \
            PartialWatcher(sshd, "recv", remote_dir / "particles.mrcs.orch-part", size // 3,
                           action=restart_the_server) as watcher:
        report = stager.stage_in(None, [source], str(remote_dir), base=source.parent)
    assert watcher.kills, "the server was never killed: the test did not interrupt anything"
    assert digest(remote_dir / "particles.mrcs") == expected
    (row,) = records(store)
    assert row["state"] == "done" and watcher.kills[0] <= row["resumed_from"] < size
    assert row["method"] == f"stream/{bulk}" and report.bytes_sent == size - row["resumed_from"]
    assert ledger(store)[str(remote_dir / "particles.mrcs")]["sha256"] == expected


def test_a_spent_retry_budget_fails_the_file_and_a_later_call_resumes_it(sshd: PrivateSshd, store: ProjectStore,
                                                                         remote_dir: Path, tmp_path: Path) -> None:
    size = 128 * MIB
    source = tmp_path / "proj" / "stack.mrcs"
    expected = big_file(source, size)
    partial = remote_dir / "stack.mrcs.orch-part"
    with make_stager(store, sshd.target, bulk="paramiko", retries=1) as stager, \
            PartialWatcher(sshd, "recv", partial, 16 * MIB, times=2) as watcher:
        with pytest.raises(TransferError) as caught:
            stager.stage_in(None, [source], str(remote_dir), base=source.parent)
    assert len(watcher.kills) == 2  # the first attempt and its one retry, each killed mid-stream
    assert "1 of 1 files could not be moved" in str(caught.value) and "connection lost" in str(caught.value)
    (failed,) = records(store)
    assert failed["state"] == "failed" and "connection lost" in str(failed["error"])
    assert ledger(store) == {}  # nothing the host holds unverified
    assert not (remote_dir / "stack.mrcs").exists()
    kept = partial.stat().st_size
    assert watcher.kills[1] <= kept < size

    with make_stager(store, sshd.target, bulk="paramiko") as stager:
        report = stager.stage_in(None, [source], str(remote_dir), base=source.parent)
    assert digest(remote_dir / "stack.mrcs") == expected
    assert report.bytes_sent == size - kept
    assert [(r["state"], r["resumed_from"]) for r in records(store)] == [("failed", 0), ("done", kept)]
    assert ledger(store)[str(remote_dir / "stack.mrcs")]["sha256"] == expected


# ---------------------------------------------------------------------------------- re-send after an interrupted batch
def small_files(folder: Path, count: int, size: int) -> dict[str, str]:
    """``count`` files of ``size`` random bytes; name -> SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for index in range(count):
        data = os.urandom(size)
        (folder / f"mic_{index:04d}.mrc").write_bytes(data)
        sums[f"mic_{index:04d}.mrc"] = hashlib.sha256(data).hexdigest()
    return sums


@dataclass
class BatchTry:
    asked: set[str]  # remote paths this try was given
    confirmed: set[str]  # those the other side confirmed (verified)
    interrupted: bool


class BatchTries:
    """Records each try of a batch (the real protocol function runs): which files it was given
    and which it moved, to show that a retry is given exactly what the last try left."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.tries: list[BatchTry] = []
        real = getattr(protocol, name)
        upload = name == "upload_batch"

        def spy(start: protocol.Starter, python: str, where: str, files: list[tuple[Any, Any]],
                *rest: Any) -> protocol.BatchOutcome:
            outcome = real(start, python, where, files, *rest)
            self.tries.append(BatchTry({str(pair[1] if upload else pair[0]) for pair in files},
                                       {m.remote for m in outcome.moved}, outcome.interrupted is not None))
            return outcome

        monkeypatch.setattr(protocol, name, spy)


@pytest.mark.parametrize("bulk", ["paramiko", "openssh"])
def test_an_interrupted_batch_sends_only_the_unconfirmed_files_again(sshd: PrivateSshd, store: ProjectStore,
                                                                     remote_dir: Path, tmp_path: Path, bulk: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stager_module, "OPENSSH_MIN_BYTES", 0)  # the batch through `ssh` in the openssh case
    count, size = 1000, 20_000
    movies = tmp_path / "proj" / "movies"
    sums = small_files(movies, count, size)
    seen: list[Progress] = []
    batches = BatchTries(monkeypatch, "upload_batch")
    # Killed from what has arrived on the host, not from the progress this side reads back: the
    # host's confirmations may be read only after it has written every file (and exited).
    with make_stager(store, sshd.target, bulk=bulk, parallel=1, retries=2, progress=seen.append) as stager, \
            ArrivalWatcher(sshd, "recv-batch", remote_dir / "movies", 100) as watcher:
        report = stager.stage_in(None, [movies], str(remote_dir), base=movies.parent)
    assert watcher.inodes_at_kill, "the batch's helper was never killed: the test did not interrupt anything"
    first, again = batches.tries  # the interrupted try, and one retry
    assert first.interrupted and not again.interrupted and len(first.asked) == count
    assert len(first.confirmed) < count
    assert again.asked == first.asked - first.confirmed == again.confirmed  # exactly what was not confirmed

    arrived = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (remote_dir / "movies").iterdir()}
    assert arrived == sums  # every file, verified, and no temporary file left behind
    # A file the host confirmed before the kill was not sent again: the same file (inode) is there.
    kept = [name for name, inode in watcher.inodes_at_kill.items()
            if (remote_dir / "movies" / name).stat().st_ino == inode]
    assert len(kept) >= len(first.confirmed)
    assert len(kept) < count  # and the rest was sent again, not assumed to be there

    rows = records(store)
    assert len(rows) == count and {r["state"] for r in rows} == {"done"}  # one row per file, no duplicates
    assert {r["method"] for r in rows} == {f"batch/{bulk}"} and all(r["error"] is None for r in rows)
    assert sorted(report.sent) == sorted(str(movies / name) for name in sums) and report.bytes_sent == count * size
    entries = ledger(store)
    assert {Path(p).name: e["sha256"] for p, e in entries.items()} == sums
    assert seen[-1].finished and seen[-1].files_done == count and seen[-1].bytes_done == count * size


@pytest.mark.parametrize("bulk", ["paramiko", "openssh"])
def test_an_interrupted_batch_of_outputs_fetches_only_the_missing_ones_again(
        sshd: PrivateSshd, store: ProjectStore, remote_dir: Path, tmp_path: Path, bulk: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stager_module, "OPENSSH_MIN_BYTES", 0)
    count, size = 1000, 20_000
    outputs = remote_dir / "out"
    sums = small_files(outputs, count, size)
    for path in [outputs, *outputs.iterdir()]:
        shutil.chown(path, sshd.target.login)
    back = tmp_path / "back"
    back.mkdir()
    seen: list[Progress] = []
    batches = BatchTries(monkeypatch, "download_batch")
    # Killed from what has arrived here: the progress reports come in coarse steps (0, then 899),
    # while what arrives can be at most a channel's window ahead of what the host has sent.
    with make_stager(store, sshd.target, bulk=bulk, parallel=1, retries=2, progress=seen.append) as stager, \
            ArrivalWatcher(sshd, "send-batch", back, 100) as watcher:
        report = stager.stage_out(None, [str(outputs)], back, remote_base=str(outputs))
    assert watcher.inodes_at_kill, "the batch's helper was never killed: the test did not interrupt anything"
    first, again = batches.tries  # the interrupted try, and one retry
    assert first.interrupted and not again.interrupted and len(first.asked) == count
    assert len(first.confirmed) < count
    assert again.asked == first.asked - first.confirmed == again.confirmed  # exactly what was not fetched
    assert {p.name: digest(p) for p in back.iterdir()} == sums  # every file, verified, nothing else
    kept = [name for name, inode in watcher.inodes_at_kill.items() if (back / name).stat().st_ino == inode]
    assert len(kept) == len(watcher.inodes_at_kill) < count  # what had arrived was not fetched again; the rest was
    rows = records(store)
    assert len(rows) == count and {r["state"] for r in rows} == {"done"} and {r["direction"] for r in rows} == {"out"}
    assert {r["method"] for r in rows} == {f"batch/{bulk}"}
    assert len(report.sent) == count and report.bytes_sent == count * size
    assert {Path(p).name: e["sha256"] for p, e in ledger(store).items()} == sums
    assert seen[-1].files_done == count and seen[-1].bytes_done == count * size


# ---------------------------------------------------------------------------------- fallback between transports
@pytest.fixture
def loose_key_target(sshd: PrivateSshd, tmp_path: Path) -> SSHTarget:
    """The same login with a copy of the key readable by all: OpenSSH ignores such a key ("bad
    permissions") and is refused; paramiko uses it. A real refusal of the ssh client alone."""
    assert sshd.target.key_path is not None
    key = tmp_path / "keys" / "id_ed25519"
    key.parent.mkdir()
    shutil.copy(sshd.target.key_path, key)
    key.chmod(0o644)
    target = SSHTarget(sshd.target.host, sshd.target.port, sshd.target.user, key, sshd.target.known_hosts)
    refused = subprocess.run(ssh_argv(target, ["true"]), capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    with connect(target) as conn:  # paramiko gets in with the same key
        assert conn.run(["true"]).ok
    return target


@pytest.fixture
def old_ssh_on_path(sshd: PrivateSshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SSHTarget:
    """An ``ssh`` first on PATH that, like an OpenSSH older than 8.5, does not know one of the key
    exchanges we list: the real client, which then stops with "Bad SSH2 KexAlgorithms"."""
    real = shutil.which("ssh")
    require(real is not None, "no ssh client (tests/infra/system-deps.sh ssh)")
    folder = tmp_path / "old-openssh"
    folder.mkdir()
    wrapper = folder / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {real} -o KexAlgorithms=sntrup4591761x25519-sha512@tinyssh.org "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    refused = subprocess.run(ssh_argv(sshd.target, ["true"], str(wrapper)), capture_output=True, text=True,
                             timeout=60, check=False)
    assert refused.returncode == 255 and "KexAlgorithms" in refused.stderr, refused.stderr
    return sshd.target


@pytest.mark.parametrize("refusal", ["loose_key_target", "old_ssh_on_path"])
def test_a_refused_ssh_client_falls_back_to_paramiko(refusal: str, sshd: PrivateSshd, store: ProjectStore,
                                                     remote_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     request: pytest.FixtureRequest) -> None:
    target: SSHTarget = request.getfixturevalue(refusal)
    monkeypatch.setattr(stager_module, "OPENSSH_MIN_BYTES", 0)  # every stream would take `ssh`
    project = tmp_path / "proj"
    sums = small_files(project / "movies", 40, 10_000)
    large = big_file(project / "stack.mrcs", 4 * MIB)
    # verify_remote off: no listing goes first, the refusal meets the streams and the batches themselves
    with make_stager(store, target, bulk="openssh", parallel=2, verify_remote=False) as stager:
        staged = stager.stage_in(None, [project], str(remote_dir), base=project)
        assert len(staged.sent) == 41
        outputs = remote_dir / "out"
        (outputs / "extra").mkdir(parents=True)
        for index in range(5):
            (outputs / "extra" / f"ctf_{index}.star").write_text(f"data_ {index}\n" * 40)
        volume = big_file(outputs / "volume.mrc", 2 * MIB)
        for path in [outputs, *outputs.rglob("*")]:
            shutil.chown(path, target.login)
        fetched = stager.stage_out(None, [str(outputs)], tmp_path / "back", remote_base=str(outputs))
        assert len(fetched.sent) == 6
    assert {p.name: digest(p) for p in (remote_dir / "movies").iterdir()} == sums
    assert digest(remote_dir / "stack.mrcs") == large and digest(tmp_path / "back" / "volume.mrc") == volume
    for index in range(5):
        assert (tmp_path / "back" / "extra" / f"ctf_{index}.star").read_text() == f"data_ {index}\n" * 40
    rows = records(store)
    assert len(rows) == 47 and {r["state"] for r in rows} == {"done"}
    # the ledger says how each file really moved: through paramiko, never the refused client
    assert {r["method"].split("/")[1] for r in rows} == {"paramiko"}, {r["method"] for r in rows}
    assert {r["method"] for r in rows if r["local_path"].endswith(("stack.mrcs", "volume.mrc"))} == {"stream/paramiko"}
    assert len(ledger(store)) == 47
