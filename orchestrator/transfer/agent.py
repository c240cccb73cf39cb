"""The remote half of the transfer protocol: a standard-library script that the stager runs on
the host with ``python3 -c SOURCE MODE ARGS`` (a host that runs dask workers has Python).

Doing the remote work in one small process per stream, instead of ``cat``, ``sha256sum`` and
``mv`` commands, verifies every byte as it is written (OpenSSL's SHA-256, several times faster
than coreutils' ``sha256sum``) and renames into place in the same process, with no round trip.

Modes (``sys.argv[1]``):

``recv TMP DEST SIZE MTIME_NS``
    One file in, resumable. Says ``HAVE n sha256`` about the partial TMP it holds; reads
    ``FROM m`` (m = n to append, 0 to start over), then SIZE-m bytes, then ``SHA hex`` (the
    whole file's hash). Verifies size and hash, sets the mtime, renames TMP to DEST, says
    ``OK size mtime_ns``; on a bad hash says ``BAD sha256`` and deletes TMP.
``send SRC OFFSET PREFIX_SHA256``
    One file out, resumable: when the first OFFSET bytes hash to PREFIX_SHA256, sends from
    OFFSET. Says ``FROM start size mtime_ns``, then the bytes, then ``SHA hex`` (whole file).
``recv-batch``
    Many files in, one stream: per file a JSON line ``{"p": dest, "s": size, "m": mtime_ns}``,
    the bytes, a line with their SHA-256; ``{}`` ends. Each file is written to a temporary
    name (``DEST.orch-part.HOST.PID``), verified and renamed; a JSON line answers each (``ok``,
    ``m`` or ``error``). A batch killed mid-file leaves its temporary file: the next batch that
    writes into that folder removes those of this host whose process is gone.
``send-batch``
    Many files out: reads a JSON list of paths; per file a JSON header (``p``, ``s``, ``m``,
    or ``error``), the bytes, a line with their SHA-256; ``{}`` ends.
``stat``
    Reads a JSON list of paths; answers ``{"files": [[path, size, mtime_ns], ...], "missing":
    [...]}``, with every regular file below the paths that are directories.

Kept compatible with Python 3.6 (older cluster nodes): f-strings, but no walrus or newer syntax.
Exit codes: 0 done, 2 bad usage, 3 protocol error, 4 verification failed, 5 input ended early,
6 another process is writing that temporary file (``recv`` locks it).
"""

import hashlib
import json
import os
import socket
import stat
import sys
import time

CHUNK = 1 << 20
PART = ".orch-part"
EXIT_USAGE, EXIT_PROTOCOL, EXIT_VERIFY, EXIT_EOF, EXIT_BUSY = 2, 3, 4, 5, 6


def fail(code, message):
    sys.stderr.write("orch-agent: " + message + "\n")
    sys.stderr.flush()
    sys.exit(code)


def hash_prefix(handle, length):
    """(hasher, bytes hashed) of the first ``length`` bytes of an open file."""
    hasher = hashlib.sha256()
    left = length
    while left > 0:
        data = handle.read(min(CHUNK, left))
        if not data:
            break
        hasher.update(data)
        left -= len(data)
    return hasher, length - left


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


BUFFER = memoryview(bytearray(CHUNK))  # reused: no allocation (and page faults) per chunk


def copy_in(source, fd, hasher, length):
    """Copy exactly ``length`` bytes from ``source`` to ``fd``; False if the input ended first."""
    left = length
    while left > 0:
        count = source.readinto1(BUFFER[:min(CHUNK, left)])
        if not count:
            return False
        data = BUFFER[:count]
        hasher.update(data)
        write_all(fd, data)
        left -= count
    return True


def ensure_dir(path, made):
    if path and path not in made:
        os.makedirs(path, exist_ok=True)
        made.add(path)


def read_line(source):
    line = source.readline()
    if not line.endswith(b"\n"):
        fail(EXIT_EOF, "input ended early")
    return line.decode().split()


def lock_or_fail(handle, path):
    """Only one writer per temporary file, even across processes: a second one leaves at once."""
    try:
        import fcntl
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        pass
    except OSError:
        fail(EXIT_BUSY, f"another transfer is writing {path}; try again when it is done")


def recv(tmp, dest, size, mtime_ns):
    source, out = sys.stdin.buffer, sys.stdout.buffer
    ensure_dir(os.path.dirname(tmp), set())
    handle = os.fdopen(os.open(tmp, os.O_RDWR | os.O_CREAT, 0o644), "r+b", buffering=0)
    lock_or_fail(handle, tmp)
    have = os.fstat(handle.fileno()).st_size
    hasher = hashlib.sha256()
    if 0 < have <= size:
        hasher, have = hash_prefix(handle, have)
    else:
        have = 0
    out.write(f"HAVE {have} {hasher.hexdigest()}\n".encode())
    out.flush()
    words = read_line(source)
    if len(words) != 2 or words[0] != "FROM" or int(words[1]) not in (0, have):
        fail(EXIT_PROTOCOL, f"expected FROM 0 or FROM {have}, got {words!r}")
    start = int(words[1])
    if start == 0:
        hasher = hashlib.sha256()
    handle.truncate(start)
    handle.seek(start)
    complete = copy_in(source, handle.fileno(), hasher, size - start)
    if not complete:
        fail(EXIT_EOF, f"input ended early: {tmp} kept for a later resume")
    words = read_line(source)
    if words[:1] != ["SHA"] or len(words) != 2:
        fail(EXIT_PROTOCOL, f"expected SHA, got {words!r}")
    got = hasher.hexdigest()
    if got != words[1] or os.fstat(handle.fileno()).st_size != size:
        os.unlink(tmp)
        out.write(f"BAD {got}\n".encode())
        out.flush()
        fail(EXIT_VERIFY, f"{dest}: hash {got}, expected {words[1]}: removed")
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, dest)
    handle.close()
    done = os.stat(dest)
    out.write(f"OK {done.st_size} {done.st_mtime_ns}\n".encode())
    out.flush()


def read_at(handle, position, length):
    """Read into BUFFER at ``position`` without moving the file offset (seek on Python < 3.7)."""
    if hasattr(os, "preadv"):
        return os.preadv(handle.fileno(), [BUFFER[:length]], position)
    handle.seek(position)
    return handle.readinto(BUFFER[:length])


def send_range(handle, start, end, hasher, out):
    """Bytes start..end of an open file to stdout: the kernel copies them (sendfile), we read
    them once to hash; plain writes where sendfile is refused."""
    fd, position, direct = handle.fileno(), start, True
    while position < end:
        count = read_at(handle, position, min(CHUNK, end - position))
        if not count:
            fail(EXIT_PROTOCOL, "the file shrank while it was sent")
        data = BUFFER[:count]
        hasher.update(data)
        sent = 0
        while direct and sent < count:
            try:
                done = os.sendfile(1, fd, position + sent, count - sent)
            except OSError:
                direct = False
                break
            if not done:
                fail(EXIT_PROTOCOL, "the file shrank while it was sent")
            sent += done
        if sent < count:
            out.write(data[sent:])
            out.flush()
        position += count


def send(src, offset, prefix_sha):
    out = sys.stdout.buffer
    with open(src, "rb") as handle:
        info = os.fstat(handle.fileno())
        size = info.st_size
        hasher, start = hashlib.sha256(), 0
        if 0 < offset <= size:
            prefix, got = hash_prefix(handle, offset)
            if got == offset and prefix.hexdigest() == prefix_sha:
                hasher, start = prefix, offset
        out.write(f"FROM {start} {size} {info.st_mtime_ns}\n".encode())
        out.flush()
        send_range(handle, start, size, hasher, out)
    out.write(f"SHA {hasher.hexdigest()}\n".encode())
    out.flush()


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: alive
    return True


def remove_stale_temps(folder, marker):
    """Remove the temporary files of batches on this host that were killed mid-file (SIGKILL
    leaves them): those named ``*<marker><pid>`` whose process is gone. Other hosts' (a shared
    scratch) and live batches' are left alone."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        at = name.rfind(marker)
        pid = name[at + len(marker):] if at > 0 else ""
        if pid.isdigit() and not process_alive(int(pid)):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass  # another batch cleaned it up first


def recv_batch():
    source, out = sys.stdin.buffer, sys.stdout.buffer
    marker = PART + "." + socket.gethostname() + "."
    made = set()
    last_flush = time.time()
    while True:
        line = source.readline()
        if not line.endswith(b"\n"):
            fail(EXIT_EOF, "input ended early")
        record = json.loads(line.decode())
        if not record:
            break
        dest, size, mtime_ns = record["p"], record["s"], record["m"]
        tmp = dest + marker + str(os.getpid())  # two batches writing one file never share a temp file
        answer = {"p": dest}
        try:
            folder = os.path.dirname(dest)
            if folder not in made:
                ensure_dir(folder, made)
                remove_stale_temps(folder, marker)  # once per folder and batch
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            fd, answer["error"] = -1, str(exc)
        hasher = hashlib.sha256()
        if fd >= 0:
            try:
                complete = copy_in(source, fd, hasher, size)
            finally:
                os.close(fd)
        else:  # still read the bytes, to stay in step with the stream
            complete = len(source.read(size)) == size
        if not complete:
            fail(EXIT_EOF, "input ended early")
        expected = read_line(source)
        if fd >= 0:
            if expected != [hasher.hexdigest()]:
                os.unlink(tmp)
                answer["error"] = f"hash mismatch: got {hasher.hexdigest()}, expected {expected}"
            else:
                os.utime(tmp, ns=(mtime_ns, mtime_ns))
                os.replace(tmp, dest)
                # what the file system kept (coarser clocks round it): the ledger compares with it later
                answer["ok"], answer["m"] = True, os.stat(dest).st_mtime_ns
        out.write((json.dumps(answer) + "\n").encode())
        if time.time() - last_flush > 0.2:
            out.flush()
            last_flush = time.time()
    out.flush()


def send_batch():
    out = sys.stdout.buffer
    paths = json.loads(sys.stdin.buffer.readline().decode())
    for path in paths:
        try:
            handle = open(path, "rb")
        except OSError as exc:
            out.write((json.dumps({"p": path, "error": str(exc)}) + "\n").encode())
            continue
        with handle:
            info = os.fstat(handle.fileno())
            data = handle.read(info.st_size)
        out.write((json.dumps({"p": path, "s": len(data), "m": info.st_mtime_ns}) + "\n").encode())
        out.write(data)
        out.write((hashlib.sha256(data).hexdigest() + "\n").encode())
    out.write(b"{}\n")
    out.flush()


def stat_paths():
    paths = json.loads(sys.stdin.buffer.readline().decode())
    files, missing = [], []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        if not stat.S_ISDIR(info.st_mode):
            files.append([path, info.st_size, info.st_mtime_ns])
            continue
        for folder, _dirs, names in os.walk(path):
            for name in sorted(names):
                if PART in name:
                    continue
                full = os.path.join(folder, name)
                try:
                    entry = os.stat(full)
                except OSError:
                    continue
                if stat.S_ISREG(entry.st_mode):
                    files.append([full, entry.st_size, entry.st_mtime_ns])
    sys.stdout.write(json.dumps({"files": files, "missing": missing}) + "\n")


def widen_pipes():
    """1 MiB pipes to sshd instead of 64 KiB: fewer wake-ups on bulk data (Linux; else a no-op)."""
    for fd in (0, 1):
        try:
            import fcntl
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except (ImportError, OSError):
            pass


def main(argv):
    widen_pipes()
    mode, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if mode == "recv" and len(args) == 4:
        recv(args[0], args[1], int(args[2]), int(args[3]))
    elif mode == "send" and len(args) == 3:
        send(args[0], int(args[1]), args[2])
    elif mode == "recv-batch" and not args:
        recv_batch()
    elif mode == "send-batch" and not args:
        send_batch()
    elif mode == "stat" and not args:
        stat_paths()
    else:
        fail(EXIT_USAGE, "usage: recv TMP DEST SIZE MTIME_NS | send SRC OFFSET SHA | recv-batch | send-batch | stat")


if __name__ == "__main__":
    main(sys.argv)
