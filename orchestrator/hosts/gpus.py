"""GPUs of one worker, handed to steps: never one GPU to two steps unless the host allows it.

A worker's GPUs are the ones its queue allocated to it when it runs in a batch job or pilot
(``CUDA_VISIBLE_DEVICES``, else ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS`` / ``GPU_DEVICE_ORDINAL``),
or, on a plain machine, the ones the host declares (``gpus = N``) or ``nvidia-smi`` lists.
Device names are kept as the queue wrote them (indices or ``GPU-<uuid>``), and a step's
``CUDA_VISIBLE_DEVICES`` is a subset of its worker's: right whether or not the queue's cgroups
renumber the devices.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.hosts.errors import HostError

# Where queues write the GPUs they gave a job, most specific first.
ALLOCATION_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL")
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
