"""The per-worker GPU pool: one GPU per step unless sharing is allowed; the queue's allocation."""

from __future__ import annotations

import threading

import pytest
from waiting import CountingCondition, wait_until

from orchestrator.hosts.gpus import GpuPool, GpuUnavailable, allocated_gpus


def test_no_gpu_goes_to_two_steps_without_sharing() -> None:
    pool = GpuPool(["0", "1", "2", "3"])
    a = pool.acquire(2, "refine")
    b = pool.acquire(1, "ctf")
    assert a.devices == ("0", "1") and a.cuda_visible_devices == "0,1" and a.indices == (0, 1)
    assert b.devices == ("2",) and b.env() == {"CUDA_VISIBLE_DEVICES": "2"}
    with pytest.raises(GpuUnavailable, match="no 2 free GPU"):
        pool.acquire(2, "class2d", timeout_s=0.05)
    pool.release(a)
    c = pool.acquire(2, "class2d", timeout_s=0.05)
    assert set(c.devices).isdisjoint(b.devices)
    with pytest.raises(GpuUnavailable, match="asks for 5 GPU"):
        pool.acquire(5, "huge")


def test_acquire_waits_for_a_release() -> None:
    pool = GpuPool(["0"])
    pool._cond = waiting = CountingCondition()
    first = pool.acquire(1, "a")
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.extend(pool.acquire(1, "b", timeout_s=60).devices))
    waiter.start()
    wait_until(lambda: waiting.waiting == 1, "the second acquire to wait for the GPU")
    assert not got  # it found the GPU taken and waits: nothing wakes it but a release
    pool.release(first)
    waiter.join(60)
    assert got == ["0"]


def test_sharing_spreads_steps_over_the_least_used_gpus() -> None:
    pool = GpuPool(["0", "1"], sharing=True)
    leases = [pool.acquire(1, f"s{i}") for i in range(4)]
    assert [lease.devices for lease in leases] == [("0",), ("1",), ("0",), ("1",)]
    both = pool.acquire(2, "two")
    assert both.devices == ("0", "1")  # distinct within one lease
    assert pool.holders() == {"0": ["s0", "s2", "two"], "1": ["s1", "s3", "two"]}


def test_queue_allocation_is_read_from_the_environment() -> None:
    # the job script copies the queue's own variable into ORCH_JOB_GPUS (hosts/job_env.py)
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "2,3", "ORCH_JOB_GPUS": "0,1"}) == ["2", "3"]
    assert allocated_gpus({"ORCH_JOB_GPUS": "0,1"}) == ["0", "1"]
    assert allocated_gpus({"ORCH_JOB_GPUS": ""}) == []
    assert allocated_gpus({"SLURM_JOB_GPUS": "0,1"}) is None  # a queue's own name is not read here
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}) == []
    assert allocated_gpus({}) is None
    pool = GpuPool.for_worker(4, env={"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"})
    lease = pool.acquire(1, "x")
    assert lease.cuda_visible_devices == "GPU-aa" and lease.indices == (0,)
    assert GpuPool.for_worker(2, env={}).devices == ["0", "1"]
