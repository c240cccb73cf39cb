"""Checks of a pipeline's results against the ground truth that ``emtools.simulate`` kept.

Used by the demo's summary, the end-to-end tests and the benchmark, so that all three
state the same numbers the same way:

* drift: RMS over frames of the difference between the estimated and simulated shifts
  (both with zero mean over the frames), per movie;
* defocus: estimated minus simulated mean defocus ((U + V) / 2), per micrograph;
* picking: picks matched one-to-one to true particle positions within ``tolerance_px``
  (recall = matched / true particles, precision = matched / picks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from emtools.steps.common import read_json
from emtools.steps.simulate import TRUTH_MOVIES, TRUTH_STAR
from orchestrator.em.star import read_star
from orchestrator.protocol import SetReader


class SetLookup(Protocol):
    """Whatever gives sets by id: a project store (``ProjectStore``) in the demo and the tests."""

    def get_set(self, set_id: int) -> SetReader: ...


@dataclass
class TruthComparison:
    """How far a pipeline's estimates are from the simulated truth (see module doc)."""

    drift_rms_px: list[float]
    defocus_error_a: list[float]
    pick_recall: float
    pick_precision: float

    @property
    def max_drift_rms_px(self) -> float:
        return max(self.drift_rms_px) if self.drift_rms_px else float("nan")

    @property
    def max_defocus_error_a(self) -> float:
        return float(np.max(np.abs(self.defocus_error_a))) if self.defocus_error_a else float("nan")


def _stem(path: str) -> str:
    return Path(path).stem


def drift_errors(simulate_dir: Path, motioncorr_dir: Path, store: SetLookup, micrographs_set: int) -> list[float]:
    """RMS drift error (px) per movie, in the motion-corrected set's order."""
    truth = {m["name"]: np.asarray(m["shifts"]) for m in read_json(Path(simulate_dir) / TRUTH_MOVIES)}
    shifts = read_json(Path(motioncorr_dir) / "shifts.json")
    rows = store.get_set(micrographs_set).to_numpy(["id", "path"])
    errors = []
    for mic_id, path in zip(rows["id"], rows["path"], strict=True):
        true = truth[_stem(str(path))]
        est = np.asarray(shifts[str(int(mic_id))])
        errors.append(float(np.sqrt((((est - est.mean(0)) - (true - true.mean(0))) ** 2).sum(1).mean())))
    return errors


def defocus_errors(simulate_dir: Path, store: SetLookup, micrographs_set: int) -> list[float]:
    """Estimated minus true mean defocus (Å) per micrograph."""
    truth = {m["name"]: 0.5 * (m["defocus_u"] + m["defocus_v"]) for m in read_json(Path(simulate_dir) / TRUTH_MOVIES)}
    rows = store.get_set(micrographs_set).to_numpy(["path", "defocus_u", "defocus_v"])
    return [float(0.5 * (u + v) - truth[_stem(str(p))])
            for p, u, v in zip(rows["path"], rows["defocus_u"], rows["defocus_v"], strict=True)]


def pick_scores(simulate_dir: Path, store: SetLookup, coordinates_set: int, micrographs_set: int,
                tolerance_px: float) -> tuple[float, float]:
    """(recall, precision) of the picks against the true positions in the aligned sums."""
    star = read_star(Path(simulate_dir) / TRUTH_STAR)
    rows = star.loop("particles")
    true_mic = rows["rlnMicrographName"].astype(str)
    true_xy = np.stack([rows["rlnCoordinateX"], rows["rlnCoordinateY"]], axis=1)
    mics = store.get_set(micrographs_set).to_numpy(["id", "path"])
    picks = store.get_set(coordinates_set).to_numpy(["x", "y", "micrograph_id"])
    from scipy.optimize import linear_sum_assignment  # here: see emtools/kernels/__init__.py

    matched = 0
    for mic_id, path in zip(mics["id"], mics["path"], strict=True):
        truth = true_xy[true_mic == f"{_stem(str(path))}.mrc"]
        mine = picks["micrograph_id"] == mic_id
        found = np.stack([picks["x"][mine], picks["y"][mine]], axis=1)
        if len(truth) == 0 or len(found) == 0:
            continue
        d = np.linalg.norm(found[:, None] - truth[None], axis=2)
        r, c = linear_sum_assignment(d)
        matched += int((d[r, c] <= tolerance_px).sum())
    return matched / max(len(true_xy), 1), matched / max(len(picks["x"]), 1)


def compare(store: SetLookup, simulate_dir: Path, motioncorr_dir: Path, micrographs_set: int,
            ctf_set: int, coordinates_set: int, tolerance_px: float = 4.0) -> TruthComparison:
    """All three comparisons for one pipeline (see the module docstring)."""
    recall, precision = pick_scores(simulate_dir, store, coordinates_set, ctf_set, tolerance_px)
    return TruthComparison(drift_errors(simulate_dir, motioncorr_dir, store, micrographs_set),
                           defocus_errors(simulate_dir, store, ctf_set), recall, precision)
