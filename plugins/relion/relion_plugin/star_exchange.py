"""Our particle sets -> the STAR file RELION reads, and RELION's STAR -> our particle columns.

Export writes RELION 3.1's layout (``data_optics`` + ``data_particles``) with absolute stack
paths, so the file is valid whatever RELION's working directory. Import matches RELION's
rows to the exported particles by image name (``000012@/abs/stack.mrcs``), which RELION
copies through unchanged, and takes from RELION only the fields that the program computed
(angles, shifts, classes, half sets): CTF values, coordinates and ids come from our set,
so nothing is lost to RELION's text formatting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from orchestrator.em.errors import EmFormatError
from orchestrator.em.image_names import image_names
from orchestrator.em.relion import particles_to_star, star_to_particles
from relion_plugin.errors import RelionOutputError
from relion_plugin.particle_sets import LoadedParticles

POSE_3D = ("rot", "tilt", "psi", "shift_x", "shift_y")
"""What a 3D refinement or classification determines for each particle."""
POSE_2D = ("psi", "shift_x", "shift_y")


def export_particles(particles: LoadedParticles, path: Path) -> Path:
    """Write the particles (absolute image paths) as a RELION 3.1 particle STAR file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = dict(particles.columns)
    columns["image_path"] = np.asarray(columns["image_path"], dtype=str)
    columns["micrograph_name"] = np.asarray(columns["micrograph_name"], dtype=str)
    return particles_to_star(columns, particles.optics, path)


def read_relion_particles(path: Path, expected_rows: int | None = None) -> dict[str, np.ndarray]:
    """Particle columns of a STAR file RELION wrote; RelionOutputError when it is unusable.

    Checks the row count (RELION exits 0 after writing an empty or partial table) and that
    angles and shifts are finite numbers.
    """
    if not path.is_file():
        raise RelionOutputError(f"RELION did not write {path}")
    try:
        columns, _optics = star_to_particles(path)
    except EmFormatError as exc:
        raise RelionOutputError(f"RELION wrote an unreadable particle file: {exc}") from None
    rows = len(columns["id"])
    if expected_rows is not None and rows != expected_rows:
        raise RelionOutputError(f"{path}: RELION wrote {rows} particle rows, expected {expected_rows}")
    for name in ("rot", "tilt", "psi", "shift_x", "shift_y"):
        if not np.isfinite(columns[name]).all():
            raise RelionOutputError(f"{path}: column {name} holds NaN or infinite values")
    return columns


def merge_relion_particles(
    ours: dict[str, np.ndarray],
    relion: dict[str, np.ndarray],
    fields: Sequence[str],
    *,
    where: str,
) -> dict[str, np.ndarray]:
    """Our columns, in RELION's row order, with ``fields`` replaced by RELION's values.

    Every RELION row must name an image that we exported (an error naming it otherwise).
    """
    our_keys = image_names(ours["image_index"], np.asarray(ours["image_path"], dtype=str))
    their_keys = image_names(relion["image_index"], np.asarray(relion["image_path"], dtype=str))
    order = np.argsort(our_keys, kind="stable")
    sorted_keys = our_keys[order]
    pos = np.searchsorted(sorted_keys, their_keys).clip(max=max(len(sorted_keys) - 1, 0))
    index = order[pos]
    found = sorted_keys[pos] == their_keys
    if not found.all():
        missing = their_keys[~found][0]
        raise RelionOutputError(f"{where}: RELION's row for image {missing} matches no exported particle")
    merged = {name: values[index] for name, values in ours.items()}
    for name in fields:
        merged[name] = np.asarray(relion[name]).astype(ours[name].dtype if name in ours else relion[name].dtype)
    return merged
