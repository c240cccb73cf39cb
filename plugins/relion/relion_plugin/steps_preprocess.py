"""Step functions of relion.preprocess (per batch of stacks) and relion.import_particles.

Preprocessing fans out over the set's stacks: batch ``b`` of ``B`` takes stacks b, b+B,
b+2B... (sorted by path), runs ``relion_preprocess --operate_on STACK`` on each and records
which new stack replaces which old one in ``Preprocess/batch_b.json``; the ``collect`` step
builds the new particle set from those records. Image indices do not change.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.em.errors import EmFormatError
from orchestrator.em.mrc import read_header
from orchestrator.em.relion import star_to_particles
from orchestrator.protocol import StepContext, output_result
from relion_plugin.command import run_program
from relion_plugin.errors import RelionInputError, RelionOutputError
from relion_plugin.particle_sets import load_particles, set_properties, write_particle_set
from relion_plugin.results import check_stack


def batch_record(batch: int) -> str:
    return f"Preprocess/batch_{batch:03d}.json"


def preprocess_batch_step(
    ctx: StepContext,
    set_id: int,
    producer_dir: str,
    batch: int,
    batches: int,
    normalise: bool,
    bg_radius: int | None,
    invert_contrast: bool,
    rescale_box: int | None,
) -> dict[str, Any]:
    """relion_preprocess on this batch's stacks; checks each output stack."""
    particles = load_particles(ctx, set_id, producer_dir)
    stacks = sorted({str(p) for p in particles.columns["image_path"]})
    box_out = rescale_box or particles.box
    radius = bg_radius or round(0.375 * box_out)
    if normalise and not 0 < radius < box_out / 2:
        raise RelionInputError(f"param 'bg_radius': {radius} px does not fit a {box_out} px box (< {box_out // 2})")
    ctx.path("Preprocess").mkdir(parents=True, exist_ok=True)
    record: dict[str, str] = {}
    for index in range(batch, len(stacks), batches):
        stack = stacks[index]
        out = f"Preprocess/stack_{index + 1:05d}.mrcs"
        args = ["--operate_on", stack, "--operate_out", out]
        args += ["--norm", "--bg_radius", str(radius)] if normalise else []
        args += ["--invert_contrast"] if invert_contrast else []
        args += ["--scale", str(rescale_box)] if rescale_box else []
        run_program(["relion_preprocess", *args], cwd=ctx.run_dir, log_path=ctx.log_path)
        check_stack(ctx.path(out), read_header(stack).n_images, box_out)
        record[stack] = out
    target = ctx.path(batch_record(batch))
    target.write_text(json.dumps(record, indent=1))
    return {"stacks": len(record), "bg_radius": radius}


def collect_step(
    ctx: StepContext, set_id: int, producer_dir: str, batches: int, rescale_box: int | None
) -> dict[str, Any]:
    """The preprocessed particle set: same particles, new stacks (and pixel size if rescaled)."""
    particles = load_particles(ctx, set_id, producer_dir)
    mapping: dict[str, str] = {}
    for batch in range(batches):
        mapping.update(json.loads(ctx.path(batch_record(batch)).read_text()))
    paths = particles.columns["image_path"].astype(str)
    missing = sorted(set(paths) - set(mapping))
    if missing:
        raise RelionOutputError(f"no preprocessed stack for {missing[0]} (and {len(missing) - 1} more)")
    columns = dict(particles.columns)
    columns["image_path"] = np.array([str(ctx.path(mapping[p])) for p in paths], dtype=object)
    optics = particles.optics
    if rescale_box and rescale_box != particles.box:
        factor = rescale_box / particles.box  # new pixels per old pixel
        for name in ("shift_x", "shift_y", "shift_z"):
            columns[name] = (columns[name] * factor).astype(columns[name].dtype)
        optics = [dataclasses.replace(o, pixel_size_a=o.pixel_size_a / factor, image_size=rescale_box) for o in optics]
    props = set_properties(optics, particles.properties, source="relion.preprocess", input_set=set_id)
    new_set = write_particle_set(ctx, "preprocess.particles", columns, optics, props)
    count = len(columns["id"])
    return {"particles": count, "outputs": {"particles": output_result(None, {"set_id": new_set, "size": count})}}


def import_particles_step(
    ctx: StepContext, star_file: str, images_dir: str | None, pixel_size: float | None
) -> dict[str, Any]:
    """A RELION particle STAR file (3.1, or 3.0 with pixel_size) as a particle set.

    RELION names stacks relative to its project directory; ``images_dir`` says where that
    is, else the STAR file's folder and the two above it are tried (a job folder sits two
    levels below its project). Stacks are referenced where they are, not copied.
    """
    star = (Path(ctx.project_dir) / star_file).resolve()  # a relative path: in the project folder
    images_dir = None if images_dir is None else str(Path(ctx.project_dir) / images_dir)
    try:
        columns, optics = star_to_particles(star, pixel_size=pixel_size)
    except EmFormatError as exc:
        raise RelionInputError(f"cannot import {star}: {exc}") from None
    if len(columns["id"]) == 0:
        raise RelionInputError(f"{star} holds no particles")
    bases = [Path(images_dir)] if images_dir else [star.parent, star.parent.parent, star.parent.parent.parent]
    resolved = {}
    for name in np.unique(columns["image_path"]):
        candidates = [Path(name)] if Path(name).is_absolute() else [base / name for base in bases]
        found = next((c.resolve() for c in candidates if c.is_file()), None)
        if found is None:
            tried = ", ".join(str(c) for c in candidates)
            raise RelionInputError(f"{star}: stack {name} not found (tried {tried}); set param 'images_dir'")
        resolved[str(name)] = str(found)
    columns["image_path"] = np.array([resolved[str(p)] for p in columns["image_path"]], dtype=object)
    box = read_header(next(iter(resolved.values()))).shape[-1]
    optics = [o if o.image_size else dataclasses.replace(o, image_size=box) for o in optics]
    props = set_properties(optics, None, source="relion.import_particles", star_file=str(star.resolve()))
    new_set = write_particle_set(ctx, "import.particles", columns, optics, props)
    count = len(columns["id"])
    return {"particles": count, "outputs": {"particles": output_result(None, {"set_id": new_set, "size": count})}}
