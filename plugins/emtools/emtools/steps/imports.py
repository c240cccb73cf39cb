"""Steps of ``emtools.import_movies``, ``import_micrographs`` and ``import_particles``.

Nothing is copied: the sets point at the files where they are (absolute paths), after
every header has been read, so a truncated or foreign file is reported by name at import
time rather than in the middle of a later run.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import numpy as np

from emtools.steps.common import EmtoolsStepError, acquisition
from orchestrator.em import mrc
from orchestrator.em.relion import star_to_particles
from orchestrator.em.star import read_star
from orchestrator.protocol import StepContext, output_result


def _files(pattern: str, base: Path) -> list[Path]:
    full = pattern if Path(pattern).is_absolute() else str(base / pattern)
    found = sorted(Path(p) for p in glob.glob(full) if Path(p).is_file())
    if not found:
        raise EmtoolsStepError(f"no file matches {full!r}")
    return found


def _pixel_size(given: float, info: mrc.MrcInfo) -> float:
    if given > 0:
        return given
    if info.voxel_size[0] > 0:
        return info.voxel_size[0]
    raise EmtoolsStepError(f"{info.path}: the header gives no pixel size; set pixel_size_a")


def import_movies_step(ctx: StepContext, pattern: str, acq: dict[str, Any]) -> dict[str, Any]:
    """Check the headers of the movies matching ``pattern`` and register them."""
    files = _files(pattern, ctx.project_dir)
    infos = [mrc.read_header(path) for path in files]
    pixel = _pixel_size(acq["pixel_size_a"], infos[0])
    frames = {info.n_images for info in infos}
    shapes = {info.shape[1:] for info in infos}
    if len(shapes) > 1:
        raise EmtoolsStepError(f"movies of {pattern!r} have several frame sizes: {sorted(shapes)}")
    columns = {"path": np.array([str(p.resolve()) for p in files], dtype=object),
               "n_frames": np.array([info.n_images for info in infos], dtype=np.int32)}
    record = acquisition(acq["voltage_kv"], acq["cs_mm"], acq["amplitude_contrast"], pixel,
                         acq["dose_per_frame"] or None)
    set_id = ctx.register_set("movies", "Movie", columns, {"acquisition": record})
    ctx.log(f"{len(files)} movies of {min(frames)}-{max(frames)} frames, {pixel:.3f} Å/px")
    return {"outputs": {"movies": output_result(None, {"set_id": set_id, "size": len(files)})}}


def import_micrographs_step(ctx: StepContext, pattern: str, ctf_star: str | None,
                            acq: dict[str, Any]) -> dict[str, Any]:
    """Register micrographs (and, from a STAR file with rlnDefocusU/V/Angle, their CTF)."""
    columns: dict[str, Any]
    if ctf_star:
        star_path = Path(ctf_star) if Path(ctf_star).is_absolute() else ctx.project_dir / ctf_star
        star = read_star(star_path)
        block = "micrographs" if "micrographs" in star else next(iter(star.loops), "")
        names = star.column(block, "rlnMicrographName").astype(str)
        files = [Path(n) if Path(n).is_absolute() else star_path.parent / n for n in names]
        rows = star.loop(block)
        columns = {}
        if "rlnDefocusU" in rows:
            columns = {"has_ctf": np.ones(len(files), dtype=bool),
                       "defocus_u": star.column(block, "rlnDefocusU"),
                       "defocus_v": rows.get("rlnDefocusV", star.column(block, "rlnDefocusU")),
                       "defocus_angle": rows.get("rlnDefocusAngle", np.zeros(len(files))),
                       "ctf_resolution": rows.get("rlnCtfMaxResolution", np.full(len(files), np.nan)),
                       "ctf_fit_quality": rows.get("rlnCtfFigureOfMerit", np.full(len(files), np.nan))}
    else:
        files = _files(pattern, ctx.project_dir)
        columns = {}
    infos = [mrc.read_header(path) for path in files]
    stacks = [info.path.name for info in infos if info.n_images > 1]
    if stacks:
        raise EmtoolsStepError(f"{stacks[0]} holds {len(stacks)} image(s) per file: import movies instead")
    pixel = _pixel_size(acq["pixel_size_a"], infos[0])
    columns["path"] = np.array([str(Path(p).resolve()) for p in files], dtype=object)
    record = acquisition(acq["voltage_kv"], acq["cs_mm"], acq["amplitude_contrast"], pixel)
    set_id = ctx.register_set("micrographs", "Micrograph", columns, {"acquisition": record})
    return {"outputs": {"micrographs": output_result(None, {"set_id": set_id, "size": len(files)})}}


def import_particles_step(ctx: StepContext, star_file: str, images_dir: str | None,
                          pixel_size_a: float) -> dict[str, Any]:
    """Register the particles of a RELION STAR file (3.1 with optics groups, or 3.0)."""
    star_path = Path(star_file) if Path(star_file).is_absolute() else ctx.project_dir / star_file
    columns, optics = star_to_particles(star_path, pixel_size=pixel_size_a or None)
    base = Path(images_dir) if images_dir else star_path.parent
    if not base.is_absolute():
        base = ctx.project_dir / base
    paths = columns["image_path"].astype(str)
    resolved = {}
    for name in dict.fromkeys(paths.tolist()):
        full = Path(name) if Path(name).is_absolute() else base / name
        info = mrc.read_header(full)
        wanted = columns["image_index"][paths == name]
        if wanted.max(initial=0) > info.n_images:
            raise EmtoolsStepError(f"{star_path}: image {int(wanted.max())} of {full} requested, "
                                   f"but the stack holds {info.n_images}")
        resolved[name] = str(full.resolve())
    columns["image_path"] = np.array([resolved[p] for p in paths], dtype=object)
    columns["micrograph_name"] = columns["micrograph_name"].astype(object)
    pixel_sizes = {round(o.pixel_size_a, 4) for o in optics}
    if len(pixel_sizes) > 1:
        raise EmtoolsStepError(f"{star_path}: optics groups with different pixel sizes {sorted(pixel_sizes)}; "
                               "import them as separate sets")
    first = optics[0]
    record = acquisition(first.voltage_kv, first.cs_mm, first.amplitude_contrast, first.pixel_size_a)
    box = first.image_size or mrc.read_header(next(iter(resolved.values()))).shape[-1]
    properties = {"acquisition": record, "box_size": int(box),
                  "optics": [{"group": o.group, "name": o.name, "voltage_kv": o.voltage_kv, "cs_mm": o.cs_mm,
                              "amplitude_contrast": o.amplitude_contrast, "pixel_size_a": o.pixel_size_a,
                              "image_size": o.image_size} for o in optics],
                  "source": str(star_path)}
    set_id = ctx.register_set("particles", "Particle", columns, properties)
    n = len(columns["id"])
    ctx.log(f"{n} particles from {star_path.name} in {len(resolved)} stack(s), {len(optics)} optics group(s)")
    return {"outputs": {"particles": output_result(None, {"set_id": set_id, "size": n, "box_size": int(box),
                                                          "pixel_size_a": first.pixel_size_a})}}
