"""Benchmark: what a provenance record costs, and what the scheduler's loop pays for it.

Usage:
    .venv/bin/python bench/provenance.py [--quick] [--files 40] [--mb 64]

Writes ``--files`` movie stacks of ``--mb`` MB as raw data, imports them with
``emtools.import_movies`` on the real scheduler (which records provenance), then measures:

- ``record_cold_s``: building the import's record with nothing cached: every raw file read
  and hashed (SHA-256) once more, as the scheduler does when a run finishes;
- ``record_warm_s`` and ``record_cold_over_warm``: the same record again in the same process,
  where files unchanged since they were read are not read again (the raw movies are named by
  the sets of every run downstream of the import);
- ``fingerprint_mb_per_s``: the cold hashing rate;
- ``loop_blocked_s``: how long the scheduler's loop is held when a run finishes: the time
  :class:`ProvenanceRecorder.submit` takes (the record is written by its thread), against
  ``record_cold_s`` that the loop would have waited before.

Lines follow DESIGN.md: ``BENCH figure=<name> value=<number> unit=<unit> n=<files>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# bench/queue.py must not hide the standard library's queue (dask imports it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from orchestrator.em import mrc  # noqa: E402
from orchestrator.plugins import discover  # noqa: E402
from orchestrator.project import Project  # noqa: E402
from orchestrator.provenance import fingerprints  # noqa: E402
from orchestrator.provenance.record import build_record  # noqa: E402
from orchestrator.provenance.recorder import ProvenanceRecorder  # noqa: E402
from orchestrator.scheduler import daemon, planner  # noqa: E402


def bench(figure: str, value: float, unit: str, n: int) -> None:
    print(f"BENCH figure={figure} value={value:.4g} unit={unit} n={n}", flush=True)


def raw_movies(folder: Path, files: int, megabytes: int) -> None:
    """``files`` int16 stacks of about ``megabytes`` MB each (10 frames of a square image)."""
    side = int((megabytes * 2**20 / 2 / 10) ** 0.5)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 30, size=(10, side, side), dtype=np.int16)
    for index in range(files):
        frame[0, 0, 0] = index  # every file different
        mrc.write_stack(folder / f"movie_{index:04d}.mrcs", frame, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 files of 16 MB")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--mb", type=int, default=64)
    args = parser.parse_args()
    files, megabytes = (8, 16) if args.quick else (args.files, args.mb)
    with tempfile.TemporaryDirectory(prefix="bench-provenance-") as tmp:
        project = Project.create(Path(tmp) / "proj")
        raw = project.path / "raw"
        raw.mkdir()
        raw_movies(raw, files, megabytes)
        registry = discover()
        with project.open_store() as store:
            run_id = planner.create_run(store, project, registry, "emtools.import_movies",
                                        {"files": "raw/*.mrcs", "pixel_size": 1.0, "dose_per_frame": 1.0},
                                        name="imp").id
        assert daemon.serve(project, idle_exit_s=0.5, workers=1) == 0
        total_mb = sum(path.stat().st_size for path in raw.iterdir()) / 2**20
        with project.open_store() as store:
            fingerprints._KNOWN.clear()  # a fresh scheduler process
            t0 = time.perf_counter()
            build_record(store, project, registry, run_id)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            build_record(store, project, registry, run_id)
            warm = time.perf_counter() - t0
            fingerprints._KNOWN.clear()
            recorder = ProvenanceRecorder(store, project, registry)
            t0 = time.perf_counter()
            recorder.submit(run_id)
            blocked = time.perf_counter() - t0
            recorder.close()
    bench("record_cold_s", cold, "s", files)
    bench("record_warm_s", warm, "s", files)
    bench("record_cold_over_warm", cold / warm, "ratio", files)
    bench("fingerprint_mb_per_s", total_mb / cold, "MB/s", files)
    bench("loop_blocked_s", blocked, "s", files)
    bench("loop_blocked_over_record_cold", blocked / cold, "ratio", files)


if __name__ == "__main__":
    main()
