"""Running a RELION program: the MPI launcher, threads, GPUs in RELION's syntax, and errors.

A step gets its MPI ranks and threads from its declared Resources (``mpi_ranks``, ``cpus``)
and the same numbers arrive in its arguments, so that the command line always asks for what
the scheduler reserved. The MPI launcher is the host's: the ``mpirun`` program of its hosts
file (``[hosts.NAME.programs]``, read with ``ctx.program``), never a run's param, so a shared
workflow file cannot choose which program its importer runs. Programs run as argument lists
(never through a shell) with the run directory as their working directory; their stdout and
stderr are the step's (the worker sends file descriptors 1 and 2 to the step log), and a
failure raises :class:`RelionRunError` with RELION's own ``ERROR`` line when it printed one.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from relion_plugin.errors import RelionInputError, RelionRunError

MPIRUN_PROGRAM = "mpirun"
"""The name a host's hosts file gives its MPI launcher: ``[hosts.NAME.programs] mpirun = [...]``."""

DEFAULT_MPIRUN = ("mpirun", "--oversubscribe")
"""The launcher where the host configures none."""

RANKS = "{ranks}"
"""A word of the launcher that stands for the number of ranks (``["srun", "-n", "{ranks}"]``);
without one, ``-np N`` follows the launcher's first word (what mpirun and mpiexec read)."""

RETIRED_MPI_COMMAND_ENV = "ORCH_MPI_COMMAND"
"""Where a host's launcher used to be set (its ``env_setup``); refused now, so that a host
whose launcher moved is not run with the default without a word."""

_LAUNCHERS = frozenset({"mpirun", "mpiexec", "orterun"})
_ERROR_LINES = 6


@functools.lru_cache(maxsize=8)
def _is_open_mpi(launcher: str) -> bool:
    """Whether ``launcher`` is Open MPI's (the only one that refuses root without a flag)."""
    try:
        done = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "open mpi" in (done.stdout + done.stderr).lower() or "open-mpi" in (done.stdout + done.stderr).lower()


def mpi_prefix(ranks: int, launcher: Sequence[str] = DEFAULT_MPIRUN, *, as_root: bool | None = None) -> list[str]:
    """The launcher words for ``ranks`` MPI ranks ([] for a single rank).

    ``launcher`` is the host's ``mpirun`` program (``ctx.program("mpirun", DEFAULT_MPIRUN)``):
    its ``{ranks}`` words become the number of ranks, and without such a word ``-np N``
    follows its first word. Open MPI refuses to run as root unless told, which is how
    containers and CI run, so ``--allow-run-as-root`` is added there (and only there: MPICH
    and srun do not know the flag).
    """
    if ranks <= 1:
        return []
    if os.environ.get(RETIRED_MPI_COMMAND_ENV):
        raise RelionInputError(
            f"${RETIRED_MPI_COMMAND_ENV} is no longer read: set the host's MPI launcher in its hosts file, "
            f'[hosts.NAME.programs] {MPIRUN_PROGRAM} = ["srun", "-n", "{RANKS}"] (for example), and remove '
            f"{RETIRED_MPI_COMMAND_ENV} from its env_setup"
        )
    words = [str(word) for word in launcher]
    if not words or not words[0]:
        raise RelionInputError(f"the host's {MPIRUN_PROGRAM} program is empty: {list(launcher)!r}")
    if any(RANKS in word for word in words):
        words = [word.replace(RANKS, str(ranks)) for word in words]
    else:
        words[1:1] = ["-np", str(ranks)]
    as_root = os.geteuid() == 0 if as_root is None else as_root
    name = Path(words[0]).name
    if as_root and name in _LAUNCHERS and "--allow-run-as-root" not in words and _is_open_mpi(words[0]):
        words.insert(1, "--allow-run-as-root")
    return words


def visible_gpu_ids(assigned: Sequence[int], environ: Mapping[str, str] | None = None) -> list[int]:
    """The device numbers RELION must be given for the GPUs the scheduler assigned.

    The worker sets ``CUDA_VISIBLE_DEVICES`` to the assigned devices, after which CUDA
    numbers them 0..k-1; without that variable the assigned numbers are used as they are.
    """
    environ = os.environ if environ is None else environ
    visible = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and visible == [str(g) for g in assigned]:
        return list(range(len(assigned)))
    return [int(g) for g in assigned]


def gpu_argument(devices: Sequence[int], working_ranks: int) -> str | None:
    """RELION's ``--gpu`` value: ranks separated by ``:``, devices of one rank by ``,``.

    ``working_ranks`` are the ranks that compute (for ``relion_refine_mpi`` all but the
    master). Devices are dealt out round robin: 2 GPUs for 4 ranks give ``0:1:0:1``, 2 GPUs
    for 1 rank give ``0,1``. None when there are no devices (run on CPUs).
    """
    if not devices:
        return None
    working_ranks = max(1, working_ranks)
    per_rank: list[list[int]] = [[] for _ in range(working_ranks)]
    for i, device in enumerate(devices):
        per_rank[i % working_ranks].append(device)
    for r in range(len(devices), working_ranks):  # more ranks than GPUs: share them
        per_rank[r] = [devices[r % len(devices)]]
    return ":".join(",".join(str(d) for d in rank) for rank in per_rank)


def program_command(
    program: str,
    args: Sequence[str],
    *,
    mpi_ranks: int = 1,
    launcher: Sequence[str] = DEFAULT_MPIRUN,
    extra_args: str = "",
) -> list[str]:
    """The full argument list: launcher, ``PROGRAM`` (``PROGRAM_mpi`` with several ranks), args.

    ``launcher`` is the host's MPI launcher (see :func:`mpi_prefix`). ``extra_args`` (a
    user's additional RELION options, as typed) are split shell-style and appended, so they
    can override nothing silently but add anything RELION accepts.
    """
    try:
        extra = shlex.split(extra_args) if extra_args else []
    except ValueError as exc:
        raise RelionInputError(f"param 'extra_args': {extra_args!r} cannot be split into words: {exc}") from None
    executable = f"{program}_mpi" if mpi_ranks > 1 else program
    return [*mpi_prefix(mpi_ranks, launcher), executable, *args, *extra]


def require_program(name: str) -> str:
    """The program's path; a clear error saying how to install RELION when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise RelionRunError(
            f"{name} is not on PATH: install RELION 3.1 (Debian/Ubuntu: apt-get install relion openmpi-bin) "
            "or put a RELION build's bin/ folder on PATH"
        )
    return path


def run_program(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path | None = None,
    timeout_s: float | None = None,
    capture_stdout: bool = False,
) -> str:
    """Run one RELION command in ``cwd``; raise RelionRunError if it fails.

    The command line is printed first (into the step log). ``log_path`` is where this
    process's output goes (the step log); the error message quotes RELION's ERROR lines
    from what the program added to it. With ``capture_stdout`` the program's standard
    output is returned (and still copied to ours); otherwise "" is returned.
    """
    argv = [str(a) for a in argv]
    program = next((a for a in argv if Path(a).name.startswith("relion_")), argv[0])
    for word in (argv[0], program):
        require_program(word)
    print(f"[relion plugin] in {cwd}: {shlex.join(argv)}", flush=True)
    start = _size(log_path)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else None,
            text=capture_stdout or None,
            timeout=timeout_s,
            check=False,
        )
    except OSError as exc:
        raise RelionRunError(f"{program} could not be started: {exc}") from None
    except subprocess.TimeoutExpired:
        raise RelionRunError(f"{program} did not finish within {timeout_s:.0f} s") from None
    captured = done.stdout or "" if capture_stdout else ""
    if captured:
        print(captured, flush=True)
    if done.returncode != 0:
        detail = _error_lines(log_path, start)
        raise RelionRunError(
            f"{Path(program).name} failed with exit code {done.returncode}"
            + (f": {detail}" if detail else "")
            + f" (command: {shlex.join(argv)}; working directory {cwd})"
        )
    return captured


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def _error_lines(log_path: Path | None, start: int) -> str:
    """RELION's ``ERROR`` line(s) and the few after them, from the log since ``start``."""
    if log_path is None:
        return ""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(start)
            text = handle.read(2_000_000).decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "ERROR" in line.upper() and "~~(" not in line:
            return " | ".join(lines[i : i + _ERROR_LINES])
    return " | ".join(lines[-3:])
