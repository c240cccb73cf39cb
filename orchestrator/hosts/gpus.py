"""GPUs of one worker, handed to steps: never one GPU to two steps unless the host allows it.

A worker's GPUs are the ones its queue allocated to it when it runs in a batch job or pilot
(``CUDA_VISIBLE_DEVICES``, else ``ORCH_JOB_GPUS``, which every job script of ours copies from
the queue's own variables: see :mod:`orchestrator.hosts.job_env`), or, on a plain machine, the
ones the host declares (``gpus = N``) or ``nvidia-smi`` lists. On the local host the scheduler
deals the machine's GPUs to its worker processes (:func:`deal_gpus`) and gives each worker its
share in ``CUDA_VISIBLE_DEVICES``: its pool is then that share.
Device names are kept as the queue wrote them (indices or ``GPU-<uuid>``), and a step's
``CUDA_VISIBLE_DEVICES`` is a subset of its worker's: right whether or not the queue's cgroups
renumber the devices.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.hosts import job_env
from orchestrator.hosts.errors import HostError

# Where a job finds the GPUs its queue gave it, most specific first.
ALLOCATION_VARIABLES = ("CUDA_VISIBLE_DEVICES", job_env.JOB_GPUS)
_NO_DEVICES = {"", "NoDevFiles", "none", "-1"}


class GpuUnavailable(HostError):
    """A step asks for more GPUs than its worker has, or none came free in time."""


@dataclass(frozen=True)
class GpuLease:
    """The GPUs one step holds until it gives them back."""

    devices: tuple[str, ...]
    indices: tuple[int, ...]
    owner: str

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(self.devices)

    def env(self) -> dict[str, str]:
        """Environment for the step's processes."""
        return {"CUDA_VISIBLE_DEVICES": self.cuda_visible_devices}


def allocated_gpus(env: Mapping[str, str] | None = None) -> list[str] | None:
    """The GPUs the queue allocated to this process (None: no allocation variable is set)."""
    env = os.environ if env is None else env
    for name in ALLOCATION_VARIABLES:
        if name in env:
            value = env[name].strip()
            if value in _NO_DEVICES:
                return []
            return [d.strip() for d in value.split(",") if d.strip()]
    return None


def detect_gpus(timeout_s: float = 10.0) -> list[str]:
    """Indices of the GPUs ``nvidia-smi`` sees ([] when it is missing or fails)."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def host_gpu_devices(declared: int | None, env: Mapping[str, str] | None = None,
                     detect: Callable[[], list[str]] = detect_gpus) -> tuple[list[str], str]:
    """The GPUs of this machine for a host that declares ``declared`` of them (None: not
    declared), and where they came from (for messages).

    An allocation (``CUDA_VISIBLE_DEVICES``, ``ORCH_JOB_GPUS``) bounds what the host may use:
    declared GPUs are the first ``declared`` of it (an error when it holds fewer), undeclared
    ones are all of it; without one, declared GPUs are ``0..N-1`` (no device needed: the count
    is trusted) and undeclared ones are what ``nvidia-smi`` lists.
    """
    env = os.environ if env is None else env
    allocated = allocated_gpus(env)
    variable = next((name for name in ALLOCATION_VARIABLES if name in env), "")
    if declared is not None:
        if allocated is None:
            return [str(i) for i in range(declared)], f"gpus = {declared}"
        if len(allocated) < declared:
            raise GpuUnavailable(f"gpus = {declared}, but {variable}={env[variable]!r} leaves this process "
                                 f"{len(allocated)} GPU(s)")
        return allocated[:declared], f"gpus = {declared}, of {variable}={env[variable]}"
    if allocated is not None:
        return allocated, f"{variable}={env[variable]}"
    found = detect()
    return found, "found by nvidia-smi" if found else "no gpus key, CUDA_VISIBLE_DEVICES unset, nvidia-smi lists none"


def deal_gpus(devices: Sequence[str], workers: int, *, sharing: bool = False) -> tuple[tuple[str, ...], ...]:
    """The GPUs of each of ``workers`` worker processes of one machine.

    Without sharing, each GPU goes to one worker (dealt in turn: with 2 GPUs and 8 workers,
    workers 0 and 1 hold one each and the others none; with 4 GPUs and 2 workers, two each).
    With sharing every worker holds every GPU, starting from a different one, so that one-GPU
    steps on different workers spread over the GPUs while a step may still take them all.
    """
    devices = [str(d) for d in devices]
    if not devices:
        return tuple(() for _ in range(workers))
    if sharing:
        return tuple(tuple(devices[(i + k) % len(devices)] for k in range(len(devices))) for i in range(workers))
    return tuple(tuple(d for j, d in enumerate(devices) if j % workers == i) for i in range(workers))


class GpuPool:
    """Thread-safe pool of one worker's GPUs.

    Without sharing, a GPU has at most one holder and ``acquire`` waits for free ones; with
    sharing, ``acquire`` never waits and picks the least-used GPUs (still distinct within one
    lease).
    """

    def __init__(self, devices: Sequence[str], *, sharing: bool = False) -> None:
        self.devices = [str(d) for d in devices]
        if len(set(self.devices)) != len(self.devices):
            raise HostError(f"GPU list has duplicates: {self.devices}")
        self.sharing = sharing
        self._holders: dict[str, list[str]] = {d: [] for d in self.devices}
        self._cond = threading.Condition()

    @classmethod
    def for_worker(cls, declared: int = 0, *, sharing: bool = False,
                   env: Mapping[str, str] | None = None) -> GpuPool:
        """The queue's allocation when there is one, else ``declared`` GPUs (0..N-1)."""
        allocated = allocated_gpus(env)
        if allocated is not None:
            return cls(allocated, sharing=sharing)
        return cls([str(i) for i in range(declared)], sharing=sharing)

    def __len__(self) -> int:
        return len(self.devices)

    def _index(self, device: str) -> int:
        return int(device) if device.isdigit() else self.devices.index(device)

    def acquire(self, count: int, owner: str, timeout_s: float | None = None) -> GpuLease:
        """``count`` GPUs for ``owner``; waits (without sharing) until they are free."""
        if count < 0 or count > len(self.devices):
            raise GpuUnavailable(f"{owner} asks for {count} GPU(s); this worker has {len(self.devices)} "
                                 f"({self.cuda_visible_devices or 'none'})")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self.sharing:
                    chosen = sorted(self.devices, key=lambda d: (len(self._holders[d]), self.devices.index(d)))[:count]
                else:
                    free = [d for d in self.devices if not self._holders[d]]
                    chosen = free[:count] if len(free) >= count else []
                if len(chosen) == count:
                    for device in chosen:
                        self._holders[device].append(owner)
                    chosen.sort(key=self.devices.index)
                    return GpuLease(tuple(chosen), tuple(self._index(d) for d in chosen), owner)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise GpuUnavailable(f"{owner}: no {count} free GPU(s) within {timeout_s} s "
                                         f"(held: {self.holders()})")
                self._cond.wait(remaining)

    def release(self, lease: GpuLease) -> None:
        with self._cond:
            for device in lease.devices:
                holders = self._holders.get(device, [])
                if lease.owner in holders:
                    holders.remove(lease.owner)
            self._cond.notify_all()

    def holders(self) -> dict[str, list[str]]:
        with self._cond:
            return {d: list(h) for d, h in self._holders.items() if h}

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(self.devices)


_worker_pool: GpuPool | None = None
_worker_pool_lock = threading.Lock()


def worker_gpu_pool(declared: int = 0, *, sharing: bool = False) -> GpuPool:
    """The pool of this worker process (made on first use from its environment)."""
    global _worker_pool
    with _worker_pool_lock:
        if _worker_pool is None:
            _worker_pool = GpuPool.for_worker(declared, sharing=sharing)
        return _worker_pool
