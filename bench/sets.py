"""Benchmark: write and read sets of N particles carrying the full particle record.

Usage:
    .venv/bin/python bench/sets.py [--quick] [--sizes 10000,100000,1000000] [--pg URL] [--anchor]

For each N it writes a set of particles (image location, micrograph id and name, coordinate,
CTF with resolution and fit quality, 3D alignment, class, subset, optics group), then reads it
back as objects, as numpy columns, runs an indexed where-query (one micrograph: 200 matches),
and measures the bytes per particle on disk. SQLite always; PostgreSQL too when a URL is given
(``--pg``, or ``ORCH_TEST_PG_URL``). ``--anchor`` runs Scipion's own set code on the same N in
the same invocation (``../shared/anchors/scipion``) and prints the ratios.

Lines follow DESIGN.md: ``BENCH figure=<name> value=<v> unit=<u> n=<N> [anchor=<a> ratio=<r>]``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil

# bench/queue.py must not hide the standard library's queue (dask imports it): look in this
# folder last, only for our own helper modules such as anchor.py.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from anchor import run_anchor

from orchestrator.store import ProjectStore
from orchestrator.store.admin import temporary_database

PARTS_PER_MIC = 200


def bench(figure: str, value: float, unit: str, n: int, **extra: object) -> None:
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"BENCH figure={figure} value={value:.6g} unit={unit} n={n}{tail}", flush=True)


def particle_columns(n: int) -> dict[str, np.ndarray]:
    """The same record as the Scipion anchor's bench_sets.py, as columns (made outside the timing)."""
    rng = np.random.default_rng(42)
    i = np.arange(n)
    mic = i // PARTS_PER_MIC + 1
    mic_names = np.array([f"mic_{m - 1:05d}.mrc" for m in range(1, mic[-1] + 1)], dtype=object)
    stacks = np.array([f"Extract/mic_{m - 1:05d}.mrcs" for m in range(1, mic[-1] + 1)], dtype=object)
    defocus_u = rng.uniform(8000, 30000, n)
    return {
        "image_index": i % PARTS_PER_MIC + 1, "image_path": stacks[mic - 1],
        "micrograph_id": mic, "micrograph_name": mic_names[mic - 1],
        "coord_x": rng.integers(0, 4096, n), "coord_y": rng.integers(0, 4096, n),
        "defocus_u": defocus_u, "defocus_v": defocus_u - rng.uniform(0, 800, n),
        "defocus_angle": rng.uniform(0, 180, n), "ctf_resolution": np.full(n, 3.5),
        "ctf_fit_quality": np.full(n, 0.9),
        "rot": rng.uniform(-180, 180, n), "tilt": rng.uniform(0, 180, n), "psi": rng.uniform(-180, 180, n),
        "shift_x": rng.uniform(-5, 5, n), "shift_y": rng.uniform(-5, 5, n), "shift_z": rng.uniform(-5, 5, n),
        "class_id": i % 50 + 1, "subset": i % 2 + 1,
    }


def store_bytes(store: ProjectStore, path: Path | None) -> int:
    if path is not None:
        store.close()
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        return path.stat().st_size
    with store.engine.connect() as conn:
        from sqlalchemy import text

        return int(conn.execute(text(
            "SELECT pg_total_relation_size('set_columns') + pg_total_relation_size('set_index') "
            "+ pg_total_relation_size('set_strings') + pg_total_relation_size('sets')")).scalar_one())


def run_one(n: int, url: str, sqlite_file: Path | None, suffix: str) -> dict[str, float]:
    cols = particle_columns(n)
    store = ProjectStore.create(url, f"bench-{uuid.uuid4().hex[:8]}")
    t0 = time.perf_counter()
    pset = store.create_set("particles", "Particle",
                            properties={"acquisition": {"voltage_kv": 300, "cs_mm": 2.7,
                                                        "amplitude_contrast": 0.1, "pixel_size_a": 1.35}})
    pset.append_columns(cols)
    pset.close()
    t_write = time.perf_counter() - t0
    del cols

    rss_before = psutil.Process().memory_info().rss
    peak = rss_before
    t0 = time.perf_counter()
    count, acc = 0, 0.0
    for p in pset:  # same touch as the anchor: CTF, coordinate, shift, location
        count += 1
        acc += p.ctf.defocus_u + p.coordinate.x + p.alignment.shift_x
        p.location  # noqa: B018 - touched as the anchor does
        if count % 65536 == 0:
            peak = max(peak, psutil.Process().memory_info().rss)
    t_iter = time.perf_counter() - t0
    assert count == n, (count, n)

    t0 = time.perf_counter()
    columns = pset.to_numpy()
    t_numpy = time.perf_counter() - t0
    assert len(columns["id"]) == n
    del columns

    n_mics = n // PARTS_PER_MIC
    mics = np.linspace(1, n_mics, num=min(20, n_mics), dtype=int)
    timings = []
    for mic in mics:
        t0 = time.perf_counter()
        found = pset.where(micrograph_id=int(mic))
        timings.append(time.perf_counter() - t0)
        assert len(found) == PARTS_PER_MIC, len(found)
    t_query_ms = float(np.median(timings)) * 1e3
    size = store_bytes(store, sqlite_file)
    store.close()

    bench(f"set_write_s{suffix}", t_write, "s", n)
    bench(f"set_write_items_per_s{suffix}", n / t_write, "items/s", n)
    bench(f"set_iterate_s{suffix}", t_iter, "s", n)
    bench(f"set_iterate_items_per_s{suffix}", n / t_iter, "items/s", n)
    bench(f"set_iterate_rss_growth_mb{suffix}", (peak - rss_before) / 2**20, "MB", n)
    bench(f"set_numpy_s{suffix}", t_numpy, "s", n)
    bench(f"set_numpy_items_per_s{suffix}", n / t_numpy, "items/s", n)
    bench(f"set_query_ms{suffix}", t_query_ms, "ms", n, matches=PARTS_PER_MIC, first_ms=f"{timings[0] * 1e3:.3f}")
    bench(f"set_bytes_per_item{suffix}", size / n, "bytes", n)
    return {"write": t_write, "iterate": t_iter, "query_ms": t_query_ms, "bytes": size / n}


def scipion_sets(n: int) -> dict[str, float] | None:
    """Scipion's bench_sets.py at the same N: seconds per metric, and bytes per item."""
    out = run_anchor("bench_sets.py", [str(n)])
    if out is None:
        return None
    figures: dict[str, float] = {}
    for line in out.splitlines():
        match = re.match(r"scipion (\S+) n=\d+ seconds=(\S+)(.*)", line)
        if not match:
            continue
        figures[match.group(1)] = float(match.group(2))
        per_item = re.search(r"bytes_per_item=(\S+)", match.group(3))
        if per_item:
            figures["bytes"] = float(per_item.group(1))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="stop at 100k items")
    parser.add_argument("--sizes", help="comma-separated N (default 10000,100000,1000000)")
    parser.add_argument("--pg", default=os.environ.get("ORCH_TEST_PG_URL"), help="PostgreSQL URL")
    parser.add_argument("--anchor", action="store_true", help="also run Scipion's set code on the same N")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [10_000, 100_000, 1_000_000]
    if args.quick:
        sizes = [s for s in sizes if s <= 100_000]
    print(f"# load1={os.getloadavg()[0]:.2f} cpus={os.cpu_count()} maxrss_mb="
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-sets-"))
    try:
        for n in sizes:
            path = workdir / f"sets-{n}.sqlite"
            ours = run_one(n, str(path), path, "")
            if args.pg:
                with temporary_database(args.pg, "orch_bench") as url:
                    run_one(n, url, None, "_postgresql")
            if args.anchor:
                theirs = scipion_sets(n)
                if theirs:
                    for figure, key, ours_value in (("set_write_speedup_vs_scipion", "set_write", ours["write"]),
                                                    ("set_iterate_speedup_vs_scipion", "set_iterate",
                                                     ours["iterate"]),
                                                    ("set_query_speedup_vs_scipion", "set_where_indexed",
                                                     ours["query_ms"] / 1e3)):
                        if key in theirs:
                            ratio = theirs[key] / ours_value
                            bench(figure, ratio, "x", n, anchor=f"{theirs[key]:.4f}", ratio=f"{ratio:.2f}")
                    if "bytes" in theirs:
                        ratio = theirs["bytes"] / ours["bytes"]
                        bench("set_bytes_smaller_vs_scipion", ratio, "x", n, anchor=theirs["bytes"],
                              ratio=f"{ratio:.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
