"""Step of ``emtools.classify2d``: reference-free 2D classification of a particle set.

Particles are phase-flipped with their own CTF first (when they carry one and were not
flipped at extraction): classes average particles of different defocus, whose contrast
reverses at different frequencies. Class averages are written to ``classes.mrcs`` in class
order; the particle set gets the class ids (1-based, as RELION's rlnClassNumber), the
in-plane angle ``psi`` and the origin of each particle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emtools.kernels import xp as xpmod
from emtools.kernels.classify2d import classify_2d, phase_flip
from emtools.steps.common import project_path
from emtools.steps.particle_io import gpu_module, load_particles, particle_columns_for_set
from orchestrator.em import mrc
from orchestrator.protocol import StepContext, output_result

CLASSES = "classes.mrcs"


def classify2d_step(ctx: StepContext, particles_set: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Classify, write the class averages, register the classes and the classified particles."""
    xp = gpu_module(ctx, settings["use_gpu"])
    source = ctx.open_set(particles_set)
    images, columns, optics = load_particles(ctx, source)
    pixel = optics.pixel_size_a
    if not source.properties.get("phase_flipped") and np.any(columns["defocus_u"] > 0):
        images = xpmod.to_numpy(phase_flip(xp.asarray(images), optics, columns["defocus_u"],
                                           columns["defocus_v"], columns["defocus_angle"], xp=xp))
    n = images.shape[-1]
    mask_radius = 0.5 * settings["mask_diameter_a"] / pixel if settings["mask_diameter_a"] else None
    result = classify_2d(xp.asarray(images), settings["n_classes"], n_iterations=settings["iterations"],
                         angle_step_deg=settings["angle_step_deg"],
                         max_shift_px=settings["max_shift_a"] / pixel, mask_radius_px=mask_radius,
                         seed=settings["seed"], xp=xp)
    for it, changed in enumerate(result.changed_fraction, 1):
        ctx.log(f"iteration {it}: {100 * changed:.1f} % of the particles changed class")
    sizes = np.bincount(result.class_ids, minlength=settings["n_classes"])
    order = np.argsort(-sizes, kind="stable")  # class 1 is the largest
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    path = ctx.path(CLASSES)
    mrc.write_stack(path, result.class_averages[order].astype(np.float32), pixel)
    class_columns = {"id": np.arange(1, len(order) + 1), "image_index": np.arange(1, len(order) + 1),
                     "image_path": np.array([project_path(ctx, path)] * len(order), dtype=object),
                     "size": sizes[order], "dimensions": np.full(len(order), 2)}
    acq = dict(source.properties.get("acquisition") or {})
    # the particles' properties name the classes set by its placeholder: it becomes the id
    classes = ctx.register_set("classes2d", "ClassAverage", class_columns,
                               {"acquisition": acq, "box_size": n, "particles_set_id": particles_set})
    updates = {"class_id": rank[result.class_ids] + 1, "psi": result.psi, "rot": np.zeros(len(result.psi)),
               "tilt": np.zeros(len(result.psi)), "shift_x": result.origins[:, 0],
               "shift_y": result.origins[:, 1]}
    particles = ctx.register_set("particles", "Particle", particle_columns_for_set(columns, updates),
                                 {**source.properties, "classes_set_id": classes})
    count = int(len(result.class_ids))
    classes_value = {"set_id": classes, "size": int(len(order)), "sizes": sizes[order].tolist(),
                     "iterations": len(result.changed_fraction)}
    particles_value = {"set_id": particles, "size": count, "classes_set_id": classes}
    return {"outputs": {"classes": output_result(CLASSES, classes_value),
                        "particles": output_result(None, particles_value)}}
