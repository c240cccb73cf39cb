"""Staging: a step's input files to a host's work dir before it runs, its outputs back after.

Only for hosts that do not share the project's file system. Each file is sent once per host:
the ledger remembers what the host holds (size, mtime, SHA-256 of the local file), so staging
the same inputs again costs a ``stat`` per file and one query; a file changed at the source is
sent again. Large files move alone on a resumable stream; small ones go in batches, one
stream per batch; several streams run in parallel. Every file moved gets a ``transfers`` row.
"""

from __future__ import annotations

import os
import posixpath
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from orchestrator.errors import UsageError
from orchestrator.hosts.ssh.client import SSHPool
from orchestrator.hosts.ssh.openssh import OpenSSHShell, ssh_binary
from orchestrator.hosts.ssh.target import SSHConnectError, SSHTarget
from orchestrator.store.project_store import ProjectStore
from orchestrator.store.transfer_tables import TransferDirection
from orchestrator.transfer import protocol
from orchestrator.transfer.errors import TransferError, TransferInterrupted, VerificationError
from orchestrator.transfer.fingerprint import FileStat, sha256_file
from orchestrator.transfer.ledger import Journal, Ledger, ensure_tables
from orchestrator.transfer.plan import (
    LARGE_FILE,
    Action,
    LedgerEntry,
    decide_download,
    decide_upload,
    expand_local,
    local_path_for,
    remote_paths_for,
    remote_still_there,
    split_work,
)
from orchestrator.transfer.progress import ProgressCallback, ProgressTracker
from orchestrator.transfer.report import StageReport, StagingJob

OPENSSH_MIN_BYTES = 16 * 1024 * 1024  # smaller streams do not pay for an ssh process (~0.15 s to start)
# What the ssh client says when it, and not the host, is the problem: refused where paramiko may get in
# (a key it will not use, e.g. one readable by others), or unable to take our options (an OpenSSH
# older than 8.5 stops at "command-line line 0: Bad SSH2 KexAlgorithms" on a key exchange it lacks).
_OPENSSH_REFUSALS = ("Permission denied", "Host key verification failed", "no matching", "Bad configuration",
                     "command-line line", "Bad SSH2", "Unsupported KEX")
_RETRYABLE = (TransferInterrupted, VerificationError, SSHConnectError)
R = TypeVar("R")


def default_streams() -> int:
    """Streams when the caller names none: each costs an ssh process here and an agent on the
    host, so more streams than cores only compete (2,000 files of 100 KB on 2 cores: 2 streams
    beat rsync, 4 did not, 8 lost by 20 %)."""
    return min(4, max(2, os.cpu_count() or 2))


class Stager:
    """Moves files between the project and one SSH host's work dir (see the module docstring).

    ``host`` names the host in the ledger (its name in the hosts configuration); ``bulk``
    chooses the stream for large payloads: ``auto`` (the ``ssh`` binary when there is one),
    ``openssh`` or ``paramiko``. ``verify_remote`` checks, with one listing per call, that the
    files the ledger says the host holds are still there (a scratch clean-up removes them).
    Thread-safe: calls from several threads run one after the other. ``parallel`` streams
    (default: one per core, 2 to 4; see :func:`default_streams`).

    Both kinds of stream come from the same target through the same client API
    (:class:`~orchestrator.hosts.ssh.shell.RemoteShell`): :attr:`shell`, a pool of paramiko
    connections (one per parallel stream; also the host's commands), and, for payloads of
    :data:`OPENSSH_MIN_BYTES` or more, an :class:`~orchestrator.hosts.ssh.openssh.OpenSSHShell`.
    """

    def __init__(self, store: ProjectStore, target: SSHTarget, *, host: str | None = None, parallel: int | None = None,
                 python: str = "python3", bulk: str = "auto", retries: int = 2, retry_delay_s: float = 1.0,
                 verify_remote: bool = True, progress: ProgressCallback | None = None,
                 large_file: int = LARGE_FILE) -> None:
        if bulk not in ("auto", "openssh", "paramiko"):
            raise UsageError(f"bulk={bulk!r}: choose auto, openssh or paramiko")
        self.store = store
        self.target = target
        self.host = host or target.label
        self.parallel = max(1, parallel if parallel is not None else default_streams())
        self.shell = SSHPool(target, self.parallel)
        self.python = python
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.verify_remote = verify_remote
        self.progress = progress
        self.large_file = large_file
        binary = ssh_binary() if bulk != "paramiko" else None
        if bulk == "openssh" and binary is None:
            raise UsageError("bulk='openssh' but there is no ssh client on PATH (install openssh-client)")
        self._bulk = OpenSSHShell(target, ssh=binary) if binary is not None else None
        ensure_tables(store.engine)
        self.ledger = Ledger(store.engine)
        # Calls run one at a time (each uses `parallel` streams already): a second call for the same
        # inputs then finds them in the ledger instead of sending them again beside the first.
        self._one_call_at_a_time = threading.Lock()

    # ------------------------------------------------------------------ public API
    def stage_in(self, run_id: int | None, paths: Sequence[Path | str], remote_dir: str | PurePosixPath, *,
                 base: Path | None = None, step_id: int | None = None) -> StageReport:
        """Make the host hold ``paths`` (files, or directories: every file below) under ``remote_dir``,
        each at ``remote_dir/<its path relative to base>``; return local -> remote paths."""
        root = PurePosixPath(remote_dir)
        if not root.is_absolute():
            raise UsageError(f"{self.host}: the remote work dir {remote_dir!r} must be an absolute path")
        with self._one_call_at_a_time:
            return self._stage_in(run_id, expand_local(paths), root, base, step_id)

    def _stage_in(self, run_id: int | None, files: list[Path], remote_dir: PurePosixPath, base: Path | None,
                  step_id: int | None) -> StageReport:
        began = time.monotonic()
        remotes = remote_paths_for(files, base, remote_dir)
        with ThreadPoolExecutor(1, thread_name_prefix="orch-listing") as background:
            # The host's listing (one exec) runs while we stat and read the ledger here.
            listing = background.submit(self._listing, remotes) if self.verify_remote and files else None
            entries = self.ledger.lookup(self.host, remotes)
            to_send: list[tuple[FileStat, str]] = []
            kept: list[tuple[FileStat, LedgerEntry]] = []
            for local, remote in zip(files, remotes, strict=True):
                info, entry = FileStat.of(local), entries.get(remote)
                action = decide_upload(info, entry)
                if action is Action.CHECK_HASH and entry is not None and sha256_file(local) == entry.sha256:
                    kept.append((info, replace(entry, local_path=info.path, mtime_ns=info.mtime_ns)))
                elif action is Action.SKIP and entry is not None:
                    kept.append((info, entry))
                else:
                    to_send.append((info, remote))
            if listing is not None and kept:
                there = listing.result()
                gone = {e.remote_path for _, e in kept if not remote_still_there(e, there.get(e.remote_path))}
                to_send += [(info, entry.remote_path) for info, entry in kept if entry.remote_path in gone]
                kept = [(info, entry) for info, entry in kept if entry.remote_path not in gone]
            elif listing is not None:
                listing.cancel()
        self.ledger.record([entry for _, entry in kept if entry != entries.get(entry.remote_path)])
        job = self._run(run_id, step_id, TransferDirection.IN,
                        [(info.path, remote, info.size) for info, remote in to_send],
                        lambda job, work: self._upload(job, {r: i for i, r in to_send}, work))
        return self._report(TransferDirection.IN, run_id, step_id,
                            {f: PurePosixPath(r) for f, r in zip(files, remotes, strict=True)}, job,
                            len(files) - len(to_send), began)

    def stage_out(self, run_id: int | None, remote_paths: Sequence[str | PurePosixPath], local_dir: Path | str, *,
                  remote_base: str | PurePosixPath | None = None, step_id: int | None = None) -> StageReport:
        """Bring the files at (or below) ``remote_paths`` into ``local_dir``, each at
        ``local_dir/<its path relative to remote_base>`` (default: the parent of the path asked
        for); return remote -> local paths. Files the project already has are not fetched."""
        asked = [posixpath.normpath(str(p)) for p in remote_paths]
        with self._one_call_at_a_time:
            return self._stage_out(run_id, asked, Path(local_dir),
                                   None if remote_base is None else posixpath.normpath(str(remote_base)), step_id)

    def _stage_out(self, run_id: int | None, asked: list[str], local_dir: Path, remote_base: str | None,
                   step_id: int | None) -> StageReport:
        began = time.monotonic()
        listing, missing = self._with_connection(
            lambda start: protocol.remote_stat(start, self.python, self.host, asked), payload=0)
        if missing:
            raise TransferError(f"{self.host}: not on the host, cannot stage out: {', '.join(missing[:10])}")
        wanted = set(asked)
        mapping: dict[str, Path] = {}
        for remote in listing:
            path = remote
            while path not in wanted and path not in ("/", ""):
                path = posixpath.dirname(path)  # up to the path asked for that holds it
            root = remote_base if remote_base is not None else posixpath.dirname(path)
            mapping[remote] = local_path_for(remote, root, local_dir)
        entries = self.ledger.lookup(self.host, list(mapping))
        to_fetch: list[tuple[str, Path, int]] = []
        for remote, local in mapping.items():
            size, mtime = listing[remote]
            local_info = FileStat.of(local) if local.exists() else None
            if decide_download(size, mtime, local_info, entries.get(remote)) is not Action.SKIP:
                to_fetch.append((remote, local, size))
        job = self._run(run_id, step_id, TransferDirection.OUT,
                        [(str(local), remote, size) for remote, local, size in to_fetch],
                        lambda job, work: self._download(job, work))
        return self._report(TransferDirection.OUT, run_id, step_id, dict(mapping), job,
                            len(mapping) - len(to_fetch), began)

    def close(self) -> None:
        self.shell.close()

    def __enter__(self) -> Stager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ streams and retries
    def _use_openssh(self, payload: int) -> bool:
        return self._bulk is not None and payload >= OPENSSH_MIN_BYTES

    def _with_connection(self, work: Callable[[protocol.Starter], R], payload: int,
                         on_transport: Callable[[str], None] | None = None) -> R:
        """Run ``work`` with a way to start remote processes: an ``ssh`` process for large payloads,
        else an exec channel on a pooled paramiko connection. ``on_transport`` hears which one
        (``openssh``, ``paramiko``) before each try: after a refused ``ssh``, paramiko moves the files."""
        bulk = self._bulk
        if bulk is not None and self._use_openssh(payload):
            if on_transport is not None:
                on_transport("openssh")
            try:
                return work(bulk.start)
            except TransferInterrupted as exc:
                if not self._openssh_refused(exc, payload):
                    raise
        if on_transport is not None:
            on_transport("paramiko")
        return work(self.shell.start)

    def _openssh_refused(self, problem: Exception, payload: int) -> bool:
        """True (and paramiko only from now on) when the ssh client was refused where paramiko was not."""
        if not self._use_openssh(payload) or not any(reason in str(problem) for reason in _OPENSSH_REFUSALS):
            return False
        self._bulk = None
        return True

    def _retrying(self, attempt: Callable[[], R], on_retry: Callable[[], None]) -> R:
        for number in range(self.retries + 1):
            try:
                return attempt()
            except _RETRYABLE:
                if number == self.retries:
                    raise
                on_retry()
                time.sleep(self.retry_delay_s * 2 ** number)
        raise AssertionError("unreachable")

    def _run(self, run_id: int | None, step_id: int | None, direction: TransferDirection,
             files: list[tuple[str, str, int]],
             start: Callable[[StagingJob, list[tuple[Any, int]]], Sequence[Callable[[], None]]]) -> StagingJob:
        """Journal the files, split them into streams, run the streams in parallel."""
        journal = Journal(self.store.engine, self.host, run_id, step_id, direction, self.ledger)
        ids = journal.begin(files)
        tracker = ProgressTracker(direction.value, sum(size for *_, size in files), len(files), self.progress)
        job = StagingJob(journal, tracker, {remote: rid for (_, remote, _), rid in zip(files, ids, strict=True)})
        try:
            if files:
                tasks = start(job, [((local, remote), size) for local, remote, size in files])
                with ThreadPoolExecutor(min(self.parallel, len(tasks)), thread_name_prefix="orch-stage") as pool:
                    for future in [pool.submit(task) for task in tasks]:
                        future.result()
        finally:
            journal.flush()
            tracker.finish()
        return job

    def _split(self, work: list[tuple[Any, int]]) -> tuple[list[Any], list[list[Any]]]:
        return split_work(work, self.parallel, self.large_file)

    # ------------------------------------------------------------------ stage-in
    def _upload(self, job: StagingJob, infos: dict[str, FileStat],
                work: list[tuple[Any, int]]) -> Sequence[Callable[[], None]]:
        large, batches = self._split(work)
        return ([partial(self._upload_one, job, infos[remote], remote) for _, remote in large]
                + [partial(self._batch, job, [(infos[r], r) for _, r in batch], sum(infos[r].size for _, r in batch),
                           upload=True) for batch in batches])

    def _upload_one(self, job: StagingJob, info: FileStat, remote: str) -> None:
        record = job.record_ids[remote]
        counted = [0]

        def on_bytes(count: int) -> None:
            counted[0] += count
            job.tracker.add_bytes(count, info.path)
            job.journal.progress(record, counted[0])

        def undo() -> None:
            job.tracker.add_bytes(-counted[0])
            counted[0] = 0

        try:
            moved = self._retrying(lambda: self._with_connection(
                lambda start: protocol.upload_file(start, self.python, self.host, info, remote, on_bytes),
                info.size, _running(job, [record], "stream")), undo)
        except (TransferError, SSHConnectError) as exc:
            job.journal.failed(record, str(exc), final=True)
            job.errors.append(str(exc))
            return
        self._file_done(job, moved, TransferDirection.IN)

    def _file_done(self, job: StagingJob, moved: protocol.Moved, direction: TransferDirection) -> None:
        entry = LedgerEntry(self.host, moved.remote, moved.local, moved.size, moved.local_mtime_ns, moved.sha256,
                            moved.remote_mtime_ns, direction.value)
        job.journal.done(job.record_ids[moved.remote], bytes_done=moved.size, seconds=moved.seconds,
                         sha256=moved.sha256, resumed_from=moved.resumed_from, entry=entry)
        job.tracker.file_done()
        with job.lock:
            job.sent.append(moved.local if direction is TransferDirection.IN else moved.remote)
            job.bytes_sent += moved.size - moved.resumed_from

    # ------------------------------------------------------------------ stage-out
    def _download(self, job: StagingJob, work: list[tuple[Any, int]]) -> Sequence[Callable[[], None]]:
        large, batches = self._split([((remote, Path(local)), size) for (local, remote), size in work])
        sizes = {remote: size for (_, remote), size in work}
        return ([partial(self._download_one, job, remote, local, sizes[remote]) for remote, local in large]
                + [partial(self._batch, job, batch, sum(sizes[r] for r, _ in batch), upload=False)
                   for batch in batches])

    def _download_one(self, job: StagingJob, remote: str, local: Path, size: int) -> None:
        record = job.record_ids[remote]
        counted = [0]

        def on_bytes(count: int) -> None:
            counted[0] += count
            job.tracker.add_bytes(count, remote)
            job.journal.progress(record, counted[0])

        def undo() -> None:
            job.tracker.add_bytes(-counted[0])
            counted[0] = 0

        try:
            moved = self._retrying(lambda: self._with_connection(
                lambda start: protocol.download_file(start, self.python, self.host, remote, local, on_bytes), size,
                _running(job, [record], "stream")), undo)
        except (TransferError, SSHConnectError) as exc:
            job.journal.failed(record, str(exc), final=True)
            job.errors.append(str(exc))
            return
        self._file_done(job, moved, TransferDirection.OUT)

    # ------------------------------------------------------------------ batches, both ways
    def _batch(self, job: StagingJob, files: list[tuple[Any, Any]], payload: int, *, upload: bool) -> None:
        """Small files on one stream; after an interruption, the unconfirmed ones are tried again."""
        pending = {(pair[1] if upload else pair[0]): pair for pair in files}  # by remote path
        direction = TransferDirection.IN if upload else TransferDirection.OUT
        counted = [0, 0]  # bytes streamed, bytes confirmed (this attempt)

        def on_bytes(count: int) -> None:
            counted[0] += count
            job.tracker.add_bytes(count)

        def on_file(moved: protocol.Moved | None, remote: str, error: str | None) -> None:
            pending.pop(remote, None)
            if moved is not None:
                counted[1] += moved.size
                self._file_done(job, moved, direction)
            else:
                job.journal.failed(job.record_ids[remote], error or "failed", final=True)
                job.errors.append(error or f"{remote}: failed")

        def attempt(start: protocol.Starter) -> protocol.BatchOutcome:
            todo = list(pending.values())
            if upload:
                return protocol.upload_batch(start, self.python, self.host,
                                             [(info.path, remote) for info, remote in todo], on_bytes, on_file)
            return protocol.download_batch(start, self.python, self.host, todo, on_bytes, on_file)

        problem: Exception | None = None
        number = 0
        while True:
            counted[:] = [0, 0]
            try:
                unconfirmed = [job.record_ids[r] for r in pending]
                problem = self._with_connection(attempt, payload, _running(job, unconfirmed, "batch")).interrupted
            except (TransferError, SSHConnectError) as exc:
                problem = exc
            job.tracker.add_bytes(counted[1] - counted[0])  # streamed but unconfirmed: not done
            if problem is None or not pending or not isinstance(problem, _RETRYABLE):
                break
            if self._openssh_refused(problem, payload):
                continue
            if number == self.retries:
                break
            time.sleep(self.retry_delay_s * 2 ** number)
            number += 1
        for remote in list(pending):
            job.journal.failed(job.record_ids[remote], str(problem), final=True)
            job.errors.append(f"{remote}: {problem}")

    def _listing(self, remote_paths: list[str]) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of those of ``remote_paths`` the host holds (one remote call)."""
        found, _missing = self._with_connection(lambda start: protocol.remote_stat(
            start, self.python, self.host, remote_paths), payload=0)
        return found

    def _report(self, direction: TransferDirection, run_id: int | None, step_id: int | None,
                paths: dict[Any, Any], job: StagingJob, skipped: int, began: float) -> StageReport:
        seconds = time.monotonic() - began
        moved = len(job.sent)
        if moved or job.errors:
            verb = "staged in to" if direction is TransferDirection.IN else "staged out from"
            self.store.events.append(
                "transfer", run_id=run_id, step_id=step_id, host=self.host,
                message=f"{verb} {self.host}: {moved} files ({job.bytes_sent} bytes) in {seconds:.1f} s, "
                        f"{skipped} already there, {len(job.errors)} failed")
        if job.errors:
            shown = "\n  ".join(job.errors[:20])
            more = f"\n  ... and {len(job.errors) - 20} more" if len(job.errors) > 20 else ""
            raise TransferError(f"{self.host}: {len(job.errors)} of {len(job.record_ids)} files could not be "
                                f"moved ({moved} were, and are recorded):\n  {shown}{more}")
        return StageReport(direction.value, paths, tuple(job.sent), skipped, job.bytes_sent, seconds)


def _running(job: StagingJob, record_ids: list[int], kind: str) -> Callable[[str], None]:
    """Mark rows as moving by ``kind/transport`` as each try starts: the row names the transport
    that really moved the file (paramiko, after a refused ``ssh``)."""
    return lambda transport: job.journal.running(record_ids, f"{kind}/{transport}")
