"""A step that needs GPUs, run inside a dask worker: lease them from the worker's pool first.

dask's resource accounting keeps a worker from taking more GPU steps than it has GPUs, but
it does not say *which* GPUs a step may use. The worker's :class:`GpuPool` does: it hands
out distinct devices (the queue's own allocation when the worker runs inside a batch job,
else ``0..N-1`` of what the host declares), the step runs with exactly those in
``CUDA_VISIBLE_DEVICES``, and its record says which ones it had.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from orchestrator.hosts.gpus import worker_gpu_pool
from orchestrator.worker.runtime import StepPayload, run_step_task

#: a GPU step waits this long for its worker's GPUs before failing (dask should never make it wait)
LEASE_TIMEOUT_S = 600.0


@contextmanager
def gpus_leased(payload: StepPayload, gpus: int, declared: int, sharing: bool = False) -> Iterator[StepPayload]:
    """The payload with ``gpus`` devices of this worker's pool, held until the block ends."""
    pool = worker_gpu_pool(declared, sharing=sharing)
    lease = pool.acquire(gpus, owner=f"step {payload.step_id} attempt {payload.attempt}", timeout_s=LEASE_TIMEOUT_S)
    try:
        devices: list[Any] = [int(d) if d.isdigit() else d for d in lease.devices]
        yield replace(payload, gpus=devices)
    finally:
        pool.release(lease)


def run_gpu_step_task(payload: StepPayload, gpus: int, declared: int, sharing: bool = False) -> dict[str, Any] | None:
    """Lease ``gpus`` devices of this worker, run the step with them, give them back."""
    with gpus_leased(payload, gpus, declared, sharing) as leased:
        return run_step_task(leased)

