"""Eight processes write one project at once: no "database is locked", no lost update."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest

from orchestrator.store import ProjectStore, QueuedAttempt, RunState

pytestmark = pytest.mark.integration

WRITERS = 8
SECONDS = 4.0


def _writer(url: str, shared_set_id: int, worker: int, queue: multiprocessing.Queue) -> None:
    counts = {"worker": worker, "runs": 0, "steps": 0, "items": 0, "errors": []}
    try:
        store = ProjectStore.open(url)
        shared = store.get_set(shared_set_id)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            run = store.runs.create("testkit.noop", {"worker": worker})
            ids = store.steps.add(run.id, [{"name": f"s{i}", "func": "m:f"} for i in range(3)])
            store.lifecycle.queue_run(run.id)
            store.lifecycle.start_run(run.id)
            store.lifecycle.queue_steps([QueuedAttempt(step_id, 1, "local") for step_id in ids.values()])
            for step_id in ids.values():
                store.lifecycle.start_step(step_id, 1, worker=f"w{worker}")
                store.lifecycle.finish_step(step_id, 1, None, duration_s=0.0)
            store.lifecycle.finish_run(run.id, [])
            n = 50
            shared.append_columns({"micrograph_id": np.full(n, worker), "class_id": np.arange(n)})
            counts["runs"] += 1
            counts["steps"] += 3
            counts["items"] += n
        store.close()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test with it
        counts["errors"].append(repr(exc))
    queue.put(counts)


def test_eight_writers_lose_nothing(store_url: str) -> None:
    with ProjectStore.create(store_url, "proj") as store:
        shared = store.create_set("shared", "Particle", chunk_size=500)
        set_id = shared.id
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(store_url, set_id, w, queue)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    errors = [e for r in results for e in r["errors"]]
    assert errors == []
    total_runs = sum(r["runs"] for r in results)
    total_items = sum(r["items"] for r in results)
    assert total_runs >= WRITERS  # every writer got through at least once
    with ProjectStore.open(store_url) as store:
        runs = store.runs.list()
        assert len(runs) == total_runs
        assert all(r.run_state is RunState.FINISHED for r in runs)
        finished = sum(store.steps.counts(r.id).get("finished", 0) for r in runs)
        assert finished == sum(r["steps"] for r in results)
        events = store.events.list()
        # created/queued/running/finished per run, queued/running/finished per step
        assert len(events) == total_runs * 4 + finished * 3
        pset = store.get_set(set_id)
        assert pset.size == total_items
        data = pset.to_numpy(["id", "micrograph_id"])
        np.testing.assert_array_equal(np.sort(data["id"]), np.arange(1, total_items + 1))
        per_writer = np.bincount(data["micrograph_id"], minlength=WRITERS)
        assert per_writer.tolist() == [r["items"] for r in sorted(results, key=lambda r: r["worker"])]
