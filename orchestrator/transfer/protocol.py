"""The local half of the transfer protocol (see :mod:`orchestrator.transfer.agent` for the remote one).

Each function drives one remote agent process over a :class:`RemoteProcess` (an exec channel
of a paramiko connection or an ``ssh`` process) that ``start`` (a remote shell's) opens, and reports the bytes
it moves through ``on_bytes`` for progress. Every byte is hashed on both sides; a file lands
under its final name only after the hashes and the size agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from orchestrator.hosts.ssh.shell import RemoteProcess
from orchestrator.transfer.errors import (
    RemoteAgentError,
    SourceChangedError,
    TransferError,
    TransferInterrupted,
    VerificationError,
)
from orchestrator.transfer.fingerprint import FileStat, hash_prefix
from orchestrator.transfer.plan import PART_SUFFIX, resume_offset

AGENT_SOURCE = Path(__file__).with_name("agent.py").read_text()
CHUNK = 1 << 20
EXIT_VERIFY, EXIT_EOF, EXIT_BUSY = 4, 5, 6
ANSWER_TIMEOUT_S = 60.0

Starter = Callable[[Sequence[str]], RemoteProcess]
ByteCounter = Callable[[int], None]


def agent_argv(python: str, mode: str, *args: str) -> list[str]:
    """The remote command line of the agent (``-I -S``: isolated, no site packages: starts fast)."""
    return [python, "-I", "-S", "-c", AGENT_SOURCE, mode, *args]


@dataclass(frozen=True, slots=True)
class Moved:
    """One file that arrived and was verified."""

    local: str
    remote: str
    size: int
    sha256: str
    local_mtime_ns: int
    remote_mtime_ns: int
    resumed_from: int = 0
    seconds: float = 0.0


@dataclass
class BatchOutcome:
    moved: list[Moved] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # remote path -> error (the file will not do)
    interrupted: TransferError | None = None  # unanswered files may be tried again


def failure(process: RemoteProcess, where: str, what: str) -> TransferError:
    """The error to raise when the agent stopped answering: interrupted, or unable to run."""
    try:
        code: int | None = process.wait(10)
    except TimeoutError:
        code = None
    detail = process.stderr_text().strip()[-2000:] or "no message"
    program = process.argv[0] if process.argv else "python3"
    if code in (126, 127) or (code == 1 and "not found" in detail):
        return RemoteAgentError(f"{where}: cannot run the transfer helper with {program!r} ({detail}); install "
                                f"python3 on the host or set the host's python command")
    if code == EXIT_VERIFY:
        return VerificationError(f"{where}: {what}: {detail}")
    if code == EXIT_BUSY:
        return TransferInterrupted(f"{where}: {what}: {detail}")
    if code in (None, -1, 255, EXIT_EOF) or (code is not None and code < 0):
        return TransferInterrupted(f"{where}: connection lost while {what} ({detail})")
    return RemoteAgentError(f"{where}: transfer helper failed while {what} (exit {code}): {detail}")


def _words(line: bytes) -> list[str]:
    return line.decode(errors="replace").split()


def upload_file(start: Starter, python: str, where: str, local: FileStat, remote: str,
                on_bytes: ByteCounter) -> Moved:
    """Send one file to ``remote`` through ``remote.orch-part``, resuming a partial copy."""
    began = time.monotonic()
    with start(agent_argv(python, "recv", remote + PART_SUFFIX, remote, str(local.size), str(local.mtime_ns))) as proc:
        try:
            words = _words(proc.readline())
            if len(words) != 3 or words[0] != "HAVE":
                raise failure(proc, where, f"starting to send {local.path}")
            have, theirs = int(words[1]), words[2]
            hasher, offset = hashlib.sha256(), 0
            if 0 < have <= local.size:
                prefix, got = hash_prefix(local.path, have)
                offset = resume_offset(have, local.size, got == have and prefix.hexdigest() == theirs)
                if offset:
                    hasher = prefix
                    on_bytes(offset)
            proc.write(f"FROM {offset}\n".encode())
            with open(local.path, "rb", buffering=0) as handle:
                _stream_file(handle, offset, local.size, hasher, proc, on_bytes, where)
                now_info = os.fstat(handle.fileno())
            if (now_info.st_size, now_info.st_mtime_ns) != (local.size, local.mtime_ns):
                raise SourceChangedError(f"{local.path}: changed while it was sent to {where}; staging again sends it")
            digest = hasher.hexdigest()
            proc.write(f"SHA {digest}\n".encode())
            proc.close_stdin()
            words = _words(proc.readline())
        except (OSError, EOFError) as exc:
            if isinstance(exc, FileNotFoundError) and exc.filename == local.path:
                raise TransferError(f"{local.path}: vanished before it could be sent to {where}") from exc
            raise failure(proc, where, f"sending {local.path}") from exc
        if words[:1] == ["BAD"]:
            raise VerificationError(f"{where}: {remote}: arrived with hash {words[1] if len(words) > 1 else '?'}, "
                                    f"sent {digest}; the partial copy was removed")
        if len(words) != 3 or words[0] != "OK" or int(words[1]) != local.size:
            raise failure(proc, where, f"finishing {remote}")
        proc.wait(ANSWER_TIMEOUT_S)
    return Moved(local.path, remote, local.size, digest, local.mtime_ns, int(words[2]), offset,
                 time.monotonic() - began)


def _stream_file(handle: BinaryIO, offset: int, size: int, hasher: Any, proc: RemoteProcess,
                 on_bytes: ByteCounter, where: str) -> None:
    """Send bytes ``offset..size`` of an open file to the process's stdin, hashing them.

    When stdin is a pipe of ours, the kernel copies the file into it (``sendfile``) and we
    only read to hash: half the CPU of reading and writing every byte in Python."""
    buffer = memoryview(bytearray(CHUNK))  # reused: no allocation (and page faults) per chunk
    target = proc.stdin_fileno()
    position = offset
    while position < size:
        count = os.preadv(handle.fileno(), [buffer[:min(CHUNK, size - position)]], position)
        if not count:
            raise SourceChangedError(f"{handle.name}: shrank while it was sent to {where}")
        data = buffer[:count]
        hasher.update(data)
        if target is None:
            proc.write(data)
        else:
            sent = 0
            while sent < count:
                done = os.sendfile(target, handle.fileno(), position + sent, count - sent)
                if not done:
                    raise SourceChangedError(f"{handle.name}: shrank while it was sent to {where}")
                sent += done
        on_bytes(count)
        position += count


def download_file(start: Starter, python: str, where: str, remote: str, local: Path,
                  on_bytes: ByteCounter) -> Moved:
    """Fetch one file into ``local`` through ``local.orch-part``, resuming a partial copy."""
    began = time.monotonic()
    part = local.with_name(local.name + PART_SUFFIX)
    have = part.stat().st_size if part.exists() else 0
    prefix, have = hash_prefix(part, have) if have else (hashlib.sha256(), 0)
    with start(agent_argv(python, "send", remote, str(have), prefix.hexdigest())) as proc:
        try:
            words = _words(proc.readline())
            if len(words) != 4 or words[0] != "FROM":
                raise failure(proc, where, f"starting to fetch {remote}")
            offset, size, remote_mtime = (int(w) for w in words[1:])
            hasher = prefix if offset and offset == have else hashlib.sha256()
            on_bytes(offset)
            local.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, offset)
                os.lseek(fd, offset, os.SEEK_SET)
                left = size - offset
                while left > 0:
                    data = proc.read_some(min(CHUNK, left))
                    if not data:
                        raise failure(proc, where, f"fetching {remote} ({left} bytes left; kept for a resume)")
                    hasher.update(data)
                    _write_all(fd, data)
                    on_bytes(len(data))
                    left -= len(data)
            finally:
                os.close(fd)
            words = _words(proc.readline())
        except (OSError, EOFError) as exc:
            raise failure(proc, where, f"fetching {remote}") from exc
        digest = hasher.hexdigest()
        if words != ["SHA", digest]:
            part.unlink(missing_ok=True)
            if words[:1] != ["SHA"]:
                raise failure(proc, where, f"finishing {remote}")
            raise VerificationError(f"{where}: {remote}: fetched bytes hash to {digest}, the host says "
                                    f"{words[1]}; the partial copy was removed")
        os.utime(part, ns=(remote_mtime, remote_mtime))
        os.replace(part, local)
        proc.wait(ANSWER_TIMEOUT_S)
    info = local.stat()
    return Moved(str(local), remote, size, digest, info.st_mtime_ns, remote_mtime, offset,
                 time.monotonic() - began)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def upload_batch(start: Starter, python: str, where: str, files: Sequence[tuple[str, str]],
                 on_bytes: ByteCounter, on_file: Callable[[Moved | None, str, str | None], None]) -> BatchOutcome:
    """Send small files (local path, remote path) on one stream; ``on_file(moved, remote, error)``
    is called (from another thread) as the host confirms each one."""
    outcome = BatchOutcome()
    sent: dict[str, tuple[FileStat, str, float]] = {}
    lock = threading.Lock()
    with start(agent_argv(python, "recv-batch")) as proc:
        def read_answers() -> None:
            try:
                while line := proc.readline():
                    answer = json.loads(line)
                    remote = answer["p"]
                    with lock:
                        info, digest, began = sent.pop(remote)
                    if answer.get("ok"):
                        moved = Moved(info.path, remote, info.size, digest, info.mtime_ns, int(answer["m"]),
                                      seconds=time.monotonic() - began)
                        outcome.moved.append(moved)
                        on_file(moved, remote, None)
                    else:
                        outcome.failed[remote] = f"{where}: {remote}: {answer.get('error')}"
                        on_file(None, remote, outcome.failed[remote])
            except (OSError, EOFError, ValueError, KeyError):
                pass  # the writer side finds out what happened

        reader = threading.Thread(target=read_answers, daemon=True, name="orch-batch-answers")
        reader.start()
        try:
            for local, remote in files:
                try:
                    with open(local, "rb", buffering=0) as handle:
                        info = os.fstat(handle.fileno())
                        data = handle.read()
                except OSError as exc:
                    outcome.failed[remote] = f"{local}: cannot be read ({exc.strerror})"
                    on_file(None, remote, outcome.failed[remote])
                    continue
                digest = hashlib.sha256(data).hexdigest()
                with lock:
                    sent[remote] = (FileStat(local, len(data), info.st_mtime_ns), digest, time.monotonic())
                header = json.dumps({"p": remote, "s": len(data), "m": info.st_mtime_ns}) + "\n"
                proc.write(header.encode() + data + (digest + "\n").encode())
                on_bytes(len(data))
            proc.write(b"{}\n")
            proc.close_stdin()
            reader.join()
            code = proc.wait(ANSWER_TIMEOUT_S)
            if code != 0 or sent:
                outcome.interrupted = failure(proc, where, "sending a batch of files")
        except (OSError, EOFError, TimeoutError) as exc:
            reader.join(ANSWER_TIMEOUT_S)
            outcome.interrupted = failure(proc, where, f"sending a batch of files ({exc})")
    return outcome


def download_batch(start: Starter, python: str, where: str, files: Sequence[tuple[str, Path]],
                   on_bytes: ByteCounter, on_file: Callable[[Moved | None, str, str | None], None]) -> BatchOutcome:
    """Fetch small files (remote path, local path) on one stream."""
    outcome = BatchOutcome()
    targets = dict(files)
    made: set[Path] = set()
    with start(agent_argv(python, "send-batch")) as proc:
        try:
            proc.write((json.dumps(list(targets)) + "\n").encode())
            proc.close_stdin()
            began = time.monotonic()
            while True:
                line = proc.readline()
                if not line.endswith(b"\n"):
                    raise failure(proc, where, "fetching a batch of files")
                header = json.loads(line)
                if not header:
                    break
                remote = header["p"]
                if "error" in header:
                    outcome.failed[remote] = f"{where}: {remote}: {header['error']}"
                    on_file(None, remote, outcome.failed[remote])
                    continue
                data = _read_exact(proc, int(header["s"]), where, remote)
                digest = hashlib.sha256(data).hexdigest()
                if _words(proc.readline()) != [digest]:
                    raise VerificationError(f"{where}: {remote}: fetched bytes do not match the host's hash")
                local = targets[remote]
                if local.parent not in made:
                    local.parent.mkdir(parents=True, exist_ok=True)
                    made.add(local.parent)
                part = local.with_name(local.name + PART_SUFFIX)
                part.write_bytes(data)
                os.utime(part, ns=(header["m"], header["m"]))
                os.replace(part, local)
                on_bytes(len(data))
                moved = Moved(str(local), remote, len(data), digest, int(header["m"]), int(header["m"]),
                              seconds=time.monotonic() - began)
                began = time.monotonic()
                outcome.moved.append(moved)
                on_file(moved, remote, None)
            proc.wait(ANSWER_TIMEOUT_S)
        except TransferError as exc:
            outcome.interrupted = exc
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            outcome.interrupted = failure(proc, where, f"fetching a batch of files ({exc})")
    return outcome


def _read_exact(proc: RemoteProcess, size: int, where: str, remote: str) -> bytes:
    chunks, left = [], size
    while left > 0:
        data = proc.read_some(min(CHUNK, left))
        if not data:
            raise failure(proc, where, f"fetching {remote}")
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def remote_stat(start: Starter, python: str, where: str,
                paths: Sequence[str]) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """(path -> (size, mtime_ns)) of the files at or below ``paths`` on the host, and the missing ones."""
    with start(agent_argv(python, "stat")) as proc:
        try:
            proc.write((json.dumps(list(paths)) + "\n").encode())
            proc.close_stdin()
            text = proc.read_all()
            code = proc.wait(ANSWER_TIMEOUT_S)
        except (OSError, EOFError, TimeoutError) as exc:
            raise failure(proc, where, "listing files") from exc
        if code != 0 or not text:
            raise failure(proc, where, "listing files")
    answer = json.loads(text)
    return {p: (int(s), int(m)) for p, s, m in answer["files"]}, list(answer["missing"])
