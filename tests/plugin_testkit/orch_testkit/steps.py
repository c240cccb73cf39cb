"""Step functions of the testkit protocols: ``def f(ctx: StepContext, **args) -> dict | None``.

Each does the least that lets a test observe the scheduler: sleeping, failing a given
number of times, writing files of a given size, summing its dependencies' results,
holding on while writing its pid so a test can kill it, making a particle set and selecting
from one. Like every plugin step, they use only the StepContext and the public modules
(``orchestrator.protocol``, ``orchestrator.objects``, ``orchestrator.em``), never the store.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.protocol import StepContext, output_result

_BLOCK = 1 << 20


class DeliberateFailure(RuntimeError):
    """Raised by ``flaky_step`` when it is told to fail."""


def noop_step(ctx: StepContext) -> None:
    """Do nothing: measures pure scheduling overhead."""
    return None


def sleep_step(ctx: StepContext, seconds: float) -> dict[str, Any]:
    """Sleep; report the GPUs the step was given and the batch job it ran in (SLURM, SGE, PBS)."""
    time.sleep(seconds)
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("JOB_ID") or os.environ.get("PBS_JOBID")
    return {"slept": seconds, "gpus": list(ctx.gpus), "job": job,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def flaky_step(ctx: StepContext, fail_times: int, fail_always: bool) -> dict[str, Any]:
    """Fail the first ``fail_times`` attempts (or always), counting attempts in the run dir.

    The counter lives in a file rather than in ``ctx.attempt`` so it also counts attempts
    the scheduler made in earlier processes (after a crash and resume).
    """
    counter = ctx.path("fail_counter.txt")
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.parent.mkdir(parents=True, exist_ok=True)
    counter.write_text(str(attempts))
    if fail_always or attempts <= fail_times:
        raise DeliberateFailure(
            f"step '{ctx.step_name}' fails on purpose: attempt {attempts}, "
            f"fail_times={fail_times}, fail_always={fail_always}"
        )
    return {"attempts": attempts}


def write_files_step(ctx: StepContext, folder: str, count: int, size: int, seed: int) -> dict[str, Any]:
    """Write ``count`` files of ``size`` bytes of seeded pseudo-random data into ``folder``."""
    names = []
    for index in range(count):
        name = f"{folder}/file_{index:04d}.bin"
        _write_pseudo_random(ctx.path(name), size, f"{seed}:{index}")
        names.append(name)
    value = {"files": names, "count": count, "bytes": count * size}
    return {"outputs": {"files": output_result(folder, value)}}


def part_step(ctx: StepContext, index: int) -> dict[str, Any]:
    """One branch of the fan-out: its value is ``index + 1``, written to ``parts/``."""
    value = index + 1
    target = ctx.path(f"parts/part_{index:04d}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"index": index, "value": value}))
    return {"index": index, "value": value}


def gather_step(ctx: StepContext, parts: list[str]) -> dict[str, Any]:
    """Sum the values the fan-out branches wrote; fails if one of them is missing."""
    total = sum(json.loads(ctx.path(part).read_text())["value"] for part in parts)
    ctx.path("total.json").write_text(json.dumps({"total": total, "parts": len(parts)}))
    return {"total": total, "outputs": {"total": output_result("total.json", {"total": total})}}


def derive_step(ctx: StepContext, sources: list[str], out: str) -> dict[str, Any]:
    """Write one line per source file (name, size, first bytes as hex): a derived product."""
    lines = []
    total = 0
    for source in sources:
        data = Path(source).read_bytes()
        total += len(data)
        lines.append(f"{Path(source).name} {len(data)} {data[:8].hex()}")
    target = ctx.path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    value = {"files": [out], "sources": len(sources), "bytes": total}
    return {"outputs": {"derived": output_result(out, value)}}


def hold_step(ctx: StepContext, seconds: float, pid_file: str) -> dict[str, Any]:
    """Write this process's pid (atomically), then sleep: a target for kill/cancel tests."""
    target = ctx.path(pid_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(str(os.getpid()))
    os.replace(partial, target)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))
    return {"pid": os.getpid(), "held_s": seconds}


def particles_step(ctx: StepContext, count: int, classes: int, seed: int) -> dict[str, Any]:
    """Register ``count`` particles: micrograph ``i // 10 + 1``, class ``i % classes + 1``, seeded defocus."""
    rng = np.random.default_rng(seed)
    index = np.arange(count)
    columns = {
        "id": index + 1,
        "micrograph_id": index // 10 + 1,
        "micrograph_name": np.array([f"mic_{i // 10 + 1:04d}.mrc" for i in index], dtype=object),
        "class_id": index % classes + 1,
        "defocus_u": rng.uniform(10000.0, 30000.0, count),
    }
    acquisition = {"voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1, "pixel_size_a": 1.2}
    particles = ctx.register_set("particles", "Particle", columns, {"acquisition": acquisition, "seed": seed})
    return {"outputs": {"particles": output_result(None, {"set_id": particles, "size": count})}}


def select_step(ctx: StepContext, particles_set: int, class_id: int) -> dict[str, Any]:
    """Read a particle set and register the particles of one class as a new set (ids kept).

    Also registers a one-row class set that the selection's properties name: a set's
    properties may hold the placeholder of a set the same step registered before it.
    """
    source = ctx.open_set(particles_set)
    chosen = source.to_numpy(class_id=class_id)
    n = len(chosen["id"])
    classes = ctx.register_set("classes", "ClassAverage", {"id": [class_id], "size": [n]})
    selected = ctx.register_set("selected", "Particle", chosen,
                                {**source.properties, "selected_from": particles_set, "classes_set_id": classes})
    ctx.log(f"{n} of {source.size} particles of set {source.name!r} are in class {class_id}")
    return {"selected": n, "outputs": {"selected": output_result(None, {"set_id": selected, "size": n}),
                                       "classes": output_result(None, {"set_id": classes, "size": 1})}}


def _write_pseudo_random(path: Path, size: int, seed: str) -> None:
    """Seeded bytes, so two runs with the same params write identical files (same hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = random.Random(seed).randbytes(min(size, _BLOCK))
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            chunk = block[:left]
            handle.write(chunk)
            left -= len(chunk)
