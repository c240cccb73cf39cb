"""Step functions of the relion_refine protocols: export, refine, import.

Three steps per run so that each can be retried on its own: a failed import (a bug in a
conversion) does not throw away a refinement that took an hour.

* ``export_step``: the input set as ``Input/particles.star`` (RELION 3.1, absolute stacks);
* ``refine_step``: ``relion_refine`` / ``relion_refine_mpi`` with the run's args, then checks
  that the final data STAR has a row per particle and that the maps are sound;
* ``import_step``: RELION's angles, shifts, classes and half sets into a new particle set,
  class averages into a class set, the map into a Volume output with its resolution.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.em.image_names import parse_image_name
from orchestrator.em.mrc import read_header
from orchestrator.em.relion import star_to_optics
from orchestrator.em.star import read_star
from orchestrator.protocol import StepContext, output_result
from relion_plugin.command import (
    DEFAULT_MPIRUN,
    MPIRUN_PROGRAM,
    gpu_argument,
    program_command,
    run_program,
    visible_gpu_ids,
)
from relion_plugin.errors import RelionInputError, RelionOutputError
from relion_plugin.particle_sets import load_particles, portable_paths, set_properties, write_particle_set
from relion_plugin.results import check_map, check_stack, model_classes, model_resolution, volume_value
from relion_plugin.star_exchange import (
    POSE_2D,
    POSE_3D,
    export_particles,
    merge_relion_particles,
    read_relion_particles,
)

INPUT_STAR = "Input/particles.star"

# What each kind of run determines per particle, and where its final files are.
_FIELDS = {
    "class2d": (*POSE_2D, "class_id"),
    "class3d": (*POSE_3D, "class_id"),
    "autorefine": (*POSE_3D, "subset"),
}
_ITERATION = re.compile(r"_it(\d{3})_data\.star$")


def export_step(ctx: StepContext, set_id: int, producer_dir: str, star: str = INPUT_STAR) -> dict[str, Any]:
    """Write the input particle set as the STAR file RELION reads."""
    particles = load_particles(ctx, set_id, producer_dir)
    export_particles(particles, ctx.path(star))
    ctx.log(
        f"{particles.count} particles of {particles.box} px at {particles.pixel_size:g} Å/px "
        f"(set {set_id}, {len(particles.optics)} optics group(s)) -> {star}"
    )
    return {"particles": particles.count, "box": particles.box, "pixel_size_a": particles.pixel_size}


def _input_geometry(star_path: Path) -> tuple[int, int, float]:
    """(rows, box, pixel size) of the exported STAR file."""
    star = read_star(star_path)
    optics = star_to_optics(star)
    rows = len(next(iter(star.loop("particles").values())))
    return rows, optics[0].image_size, optics[0].pixel_size_a


def prepare_reference(ctx: StepContext, reference: str, box: int, pixel_size: float) -> str:
    """The initial model at the particles' box and pixel size (rescaled by RELION if needed)."""
    try:
        info = read_header(reference)
    except Exception as exc:  # noqa: BLE001 - MrcFormatError or OSError: both mean "unusable reference"
        raise RelionInputError(f"reference map {reference} cannot be used: {exc}") from None
    ref_pixel = info.voxel_size[0]
    same_pixel = ref_pixel <= 0 or abs(ref_pixel - pixel_size) <= 0.01 * pixel_size
    if info.shape == (box, box, box) and same_pixel:
        return reference
    target = ctx.path("Input/reference.mrc")
    target.parent.mkdir(parents=True, exist_ok=True)
    args = ["--i", reference, "--o", str(target), "--new_box", str(box)]
    if not same_pixel:
        args[4:4] = ["--angpix", f"{ref_pixel:g}", "--rescale_angpix", f"{pixel_size:g}"]
    run_program(["relion_image_handler", *args], cwd=ctx.run_dir, log_path=ctx.log_path)
    check_map(target, box)
    return str(target)


def refine_step(
    ctx: StepContext,
    kind: str,
    args: list[str],
    out: str,
    mpi: int,
    threads: int,
    extra_args: str = "",
    reference: str | None = None,
    particle_diameter: float | None = None,
    star: str = INPUT_STAR,
) -> dict[str, Any]:
    """Run relion_refine(_mpi) and check its final outputs; returns where they are."""
    rows, box, pixel = _input_geometry(ctx.path(star))
    diameter = particle_diameter or round(0.75 * box * pixel, 1)
    if diameter > box * pixel:
        raise RelionInputError(
            f"param 'particle_diameter': {diameter} Å is larger than the box ({box} px x {pixel} Å = {box * pixel} Å)"
        )
    prefix = ctx.path(out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for stale in prefix.parent.glob(f"{prefix.name}_*"):  # an earlier attempt's files would pass for ours
        stale.unlink()
    full = [*args, "--i", star, "--o", out, "--particle_diameter", f"{diameter:g}", "--j", str(threads)]
    if reference:
        reference = str(Path(ctx.project_dir) / reference)  # a relative file: in the project folder
        full += ["--ref", prepare_reference(ctx, reference, box, pixel)]
    gpus = gpu_argument(visible_gpu_ids(ctx.gpus), mpi - 1 if mpi > 1 else 1)
    if gpus:
        full += ["--gpu", gpus]
    launcher = ctx.program(MPIRUN_PROGRAM, list(DEFAULT_MPIRUN))
    argv = program_command("relion_refine", full, mpi_ranks=mpi, launcher=launcher, extra_args=extra_args)
    run_program(argv, cwd=ctx.run_dir, log_path=ctx.log_path)
    data_star, model_star = final_files(ctx.path(out), kind)
    read_relion_particles(data_star, expected_rows=rows)
    classes = model_classes(model_star)
    images = {parse_image_name(c["reference"])[1]: c["distribution"] for c in classes}
    for image, share in images.items():
        if kind == "class2d":
            check_stack(ctx.run_dir / image, len(classes), box)
        elif share > 0:  # an empty 3D class may legitimately be a blank map
            check_map(ctx.run_dir / image, box)
    if kind == "autorefine":
        for half in (1, 2):
            check_map(ctx.path(f"{out}_half{half}_class001_unfil.mrc"), box)
    return {
        "data_star": str(data_star.relative_to(ctx.run_dir)),
        "model_star": str(model_star.relative_to(ctx.run_dir)),
        "resolution_a": model_resolution(model_star),
        "particles": rows,
        "box": box,
        "pixel_size_a": pixel,
        "particle_diameter": diameter,
    }


def final_files(prefix: Path, kind: str) -> tuple[Path, Path]:
    """The final data and model STAR files of a run (``PREFIX_data.star`` or the last iteration)."""
    if kind == "autorefine":
        data, model = Path(f"{prefix}_data.star"), Path(f"{prefix}_model.star")
        if not data.is_file():
            raise RelionOutputError(
                f"relion_refine_mpi --auto_refine ended without {data.name}: it did not converge or "
                f"stopped early (see the step log and {prefix.parent})"
            )
        return data, model
    found = sorted(
        (int(m.group(1)), path)
        for path in prefix.parent.glob(f"{prefix.name}_it*_data.star")
        if (m := _ITERATION.search(path.name))
    )
    if not found:
        raise RelionOutputError(f"relion_refine wrote no {prefix.name}_itNNN_data.star in {prefix.parent}")
    iteration, data = found[-1]
    return data, Path(f"{prefix}_it{iteration:03d}_model.star")


def import_step(
    ctx: StepContext,
    kind: str,
    set_id: int,
    producer_dir: str,
    out: str,
    symmetry: str = "C1",
) -> dict[str, Any]:
    """Turn RELION's final files into this run's outputs (sets and, for 3D, volumes)."""
    ours = load_particles(ctx, set_id, producer_dir)
    data_star, model_star = final_files(ctx.path(out), kind)
    relion = read_relion_particles(data_star, expected_rows=ours.count)
    merged = merge_relion_particles(ours.columns, relion, _FIELDS[kind], where=str(data_star))
    if kind == "class2d":
        merged["rot"] = np.zeros_like(merged["rot"])
        merged["tilt"] = np.zeros_like(merged["tilt"])
    resolution = model_resolution(model_star)
    props = set_properties(
        ours.optics, ours.properties, source=f"relion.{kind}", input_set=set_id, resolution_a=resolution
    )
    particles_set = write_particle_set(ctx, f"{kind}.particles", merged, ours.optics, props)
    outputs: dict[str, Any] = {"particles": output_result(None, {"set_id": particles_set, "size": ours.count})}
    if kind == "autorefine":
        halves = (ctx.path(f"{out}_half1_class001_unfil.mrc"), ctx.path(f"{out}_half2_class001_unfil.mrc"))
        value = volume_value(
            ctx.run_dir,
            ctx.path(f"{out}_class001.mrc"),
            ours.pixel_size,
            ours.box,
            resolution=resolution,
            half_maps=halves,
            symmetry=symmetry,
            model_star=str(model_star.relative_to(ctx.run_dir)),
        )
        outputs["volume"] = output_result(value["files"][0], value)
    else:
        classes_set = _write_classes(ctx, kind, model_star, merged["class_id"], ours)
        outputs["classes"] = output_result(None, {"set_id": classes_set, "size": len(model_classes(model_star))})
    return {"resolution_a": resolution, "particles": ours.count, "outputs": outputs}


def _write_classes(ctx: StepContext, kind: str, model_star: Path, class_ids: np.ndarray,
                   ours: Any) -> dict[str, str]:
    """A ClassAverage set: one row per class with its image, size and resolution (its placeholder)."""
    classes = model_classes(model_star)
    sizes = np.bincount(class_ids.astype(np.int64), minlength=len(classes) + 1)
    index_path = [parse_image_name(c["reference"]) for c in classes]
    columns = {
        "id": np.arange(1, len(classes) + 1, dtype=np.int64),
        "image_index": np.array([i for i, _ in index_path], dtype=np.int32),
        "image_path": portable_paths(np.array([str(ctx.run_dir / p) for _, p in index_path]), ctx.project_dir),
        "size": sizes[1 : len(classes) + 1].astype(np.int64),
        "resolution": np.array([c["resolution"] for c in classes], dtype=np.float32),
        "dimensions": np.full(len(classes), 2 if kind == "class2d" else 3, dtype=np.int8),
    }
    props = {"pixel_size_a": ours.pixel_size, "box": ours.box, "distribution": [c["distribution"] for c in classes]}
    return ctx.register_set(f"{kind}.classes", "ClassAverage", columns, props)
