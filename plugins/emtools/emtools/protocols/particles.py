"""Particle protocols: ``emtools.classify2d``, ``reconstruct``, ``refine3d`` and ``fsc``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from emtools.protocols.citations import (
    PENCZEK_1994,
    PENCZEK_2004,
    ROSENTHAL_HENDERSON_2003,
    SCHERES_2012,
    SCHERES_CHEN_2012,
    SORZANO_2010,
    VAN_HEEL_SCHATZ_2005,
)
from orchestrator.protocol import (
    BoolParam,
    FloatParam,
    IntParam,
    OutputValue,
    PathParam,
    PointerParam,
    Protocol,
    ResolvedParams,
    Resources,
    StepGraph,
)

# Step modules (numpy, scipy, the EM formats) are imported by the methods that plan steps,
# not when the plugin is discovered: `orch plugins` and `orch run` read the declarations only.

_GPU_HELP = ("Ask the scheduler for a GPU and run the heavy kernels on it with CuPy (falls back to "
             "NumPy, with a note in the log, where CuPy cannot use the GPU).")


def _memory_mb(n_particles: int, box: int, factor: float) -> int:
    """A step's memory estimate: the particle stack (float32) and its transforms, times ``factor``."""
    return int(512 + factor * n_particles * box * box * 4 / 2**20)


def _box(ref_value: object, default: int = 64) -> int:
    value = ref_value if isinstance(ref_value, Mapping) else {}
    return int(value.get("box_size") or value.get("box") or default)


class Classify2D(Protocol):
    """Reference-free 2D classification by iterative multi-reference alignment (CL2D-like,
    hard assignments): classes seeded from random subsets, every particle aligned
    (in-plane rotation and shift) to every class each iteration. Particles are phase-flipped
    with their CTF first. Class 1 is the largest."""

    name = "emtools.classify2d"
    label = "2D classification"
    citations = [SORZANO_2010, SCHERES_2012]
    params = [
        PointerParam("particles", type_name="SetOfParticles", help="Particles, e.g. extract.particles."),
        IntParam("n_classes", default=10, min=1, help="Number of classes."),
        IntParam("iterations", default=10, min=1, help="Iterations at most (stops earlier once stable)."),
        FloatParam("angle_step", default=15.0, min=1.0, help="In-plane angular step in degrees."),
        FloatParam("max_shift", default=12.0, min=0.0, help="Largest translation searched, in Å."),
        FloatParam("mask_diameter", default=0.0, min=0.0, help="Circular mask in Å (0: 84 % of the box).",
                   wizard="mask_diameter"),
        IntParam("seed", default=0, help="Seed of the initial random classes."),
        BoolParam("use_gpu", default=False, help=_GPU_HELP),
    ]
    outputs = {"classes": "SetOfClasses2D", "particles": "SetOfParticles"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.classify import CLASSES, classify2d_step
        from emtools.steps.common import set_id_of, size_of

        particles = p.input("particles")
        settings = {"n_classes": p.n_classes, "iterations": p.iterations, "angle_step_deg": p.angle_step,
                    "max_shift_a": p.max_shift, "mask_diameter_a": p.mask_diameter, "seed": p.seed,
                    "use_gpu": p.use_gpu}
        resources = Resources(cpus=1, gpus=1 if p.use_gpu else 0,
                              memory_mb=_memory_mb(size_of(particles), _box(particles.value), 6))
        graph = StepGraph()
        graph.add("classify", classify2d_step, {"particles_set": set_id_of(particles), "settings": settings},
                  resources=resources, outputs=[CLASSES])
        return graph

    def summary(self, params: ResolvedParams, outputs: Mapping[str, OutputValue]) -> list[str]:
        classes = outputs.get("classes")
        sizes = classes.value.get("sizes") if classes and isinstance(classes.value, dict) else None
        return [f"{len(sizes)} classes of {sum(sizes)} particles, largest {sizes[:3]}"] if sizes else []


class Reconstruct(Protocol):
    """Direct Fourier inversion from known orientations: each particle's transform,
    origin-corrected and multiplied by its CTF, is inserted into the 3D transform by
    trilinear gridding, one step per batch of particles; a last step sums the batches and
    divides by the summed CTF² (Wiener-like), for each half set and for all particles."""

    name = "emtools.reconstruct"
    label = "3D reconstruction"
    citations = [PENCZEK_2004]
    params = [
        PointerParam("particles", type_name="SetOfParticles", help="Particles with angles, e.g. refine3d.particles."),
        FloatParam("regularisation", default=0.01, min=0.0, help="Wiener term, relative to each shell's mean weight."),
        FloatParam("mask_diameter", default=0.0, min=0.0, help="Mask of the half-map FSC in Å (0: 84 % of the box).",
                   wizard="mask_diameter"),
        IntParam("seed", default=0, help="Seed of the half sets when the particles have none."),
        IntParam("batch_size", default=500, min=1, help="Particles per insertion step."),
        BoolParam("use_gpu", default=False, help=_GPU_HELP),
    ]
    outputs = {"volume": "Volume", "fsc": "FSC"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.common import batches, set_id_of, size_of
        from emtools.steps.maps import FSC_FILE, HALVES, MAP, reconstruct_batch_step, reconstruct_combine_step

        particles = p.input("particles")
        value = particles.value if isinstance(particles.value, Mapping) else {}
        box, pixel = _box(value, 0), float(value.get("pixel_size_a") or 0.0)
        settings = {"regularisation": p.regularisation, "mask_diameter_a": p.mask_diameter, "seed": p.seed,
                    "use_gpu": p.use_gpu}
        graph = StepGraph()
        files, names = [], []
        grid_mb = int(48 * (2 * max(box, 1)) ** 3 / 2**20)  # two halves of complex128 + float64 sums
        for index, (start, stop) in enumerate(batches(size_of(particles), p.batch_size)):
            files.append(f"batches/reconstruct_{index:04d}.npz")
            names.append(f"insert_{index:04d}")
            graph.add(names[-1], reconstruct_batch_step,
                      {"batch": index, "particles_set": set_id_of(particles), "start": start, "stop": stop,
                       "settings": settings}, outputs=[files[-1]],
                      resources=Resources(gpus=1 if p.use_gpu else 0,
                                          memory_mb=grid_mb + _memory_mb(stop - start, box, 4)))
        graph.add("combine", reconstruct_combine_step,
                  {"files": files, "box": box, "pixel_size_a": pixel, "settings": settings},
                  deps=names, inputs=files, outputs=[MAP, *HALVES, FSC_FILE],
                  resources=Resources(memory_mb=512 + 3 * grid_mb))
        return graph


class Refine3D(Protocol):
    """Gold-standard 3D refinement by projection matching, RELION auto-refine style with hard
    assignments: the particles are split into two halves refined independently from the
    initial model low-passed to ``initial_lowpass``; a global search on a grid of
    ``global_step`` for ``global_iterations`` iterations, then local searches with the step
    halved each iteration down to ``min_step``; each half's reference is its half map,
    FSC-weighted and low-passed at the FSC-0.143 resolution; stops when that resolution
    no longer improves."""

    name = "emtools.refine3d"
    label = "3D refinement"
    citations = [PENCZEK_1994, SCHERES_2012, SCHERES_CHEN_2012]
    params = [
        PointerParam("particles", type_name="SetOfParticles", help="Particles, e.g. extract.particles."),
        PointerParam("initial_model", type_name="Volume", help="Starting map at the particles' box and pixel size."),
        FloatParam("initial_lowpass", default=30.0, min=1.0, help="Low-pass of the initial model, in Å.",
                   wizard="lowpass"),
        FloatParam("global_step", default=15.0, min=0.5, help="Angular step of the global search, in degrees."),
        IntParam("global_iterations", default=2, min=0, help="Iterations of global search before local ones."),
        FloatParam("min_step", default=1.875, min=0.1, help="Finest angular step of the local search, in degrees."),
        FloatParam("max_shift", default=12.0, min=0.0, help="Largest origin searched, in Å."),
        IntParam("max_iterations", default=10, min=1, help="Iterations at most."),
        FloatParam("mask_diameter", default=0.0, min=0.0, help="Spherical mask in Å (0: 84 % of the box).",
                   wizard="mask_diameter"),
        IntParam("seed", default=0, help="Seed of the random split into half sets."),
        BoolParam("use_gpu", default=False, help=_GPU_HELP),
    ]
    outputs = {"volume": "Volume", "particles": "SetOfParticles", "fsc": "FSC"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.common import set_id_of, size_of
        from emtools.steps.maps import FSC_FILE, HALVES, MAP, refine3d_step, volume_files

        particles, model = p.input("particles"), p.input("initial_model")
        model_path, _ = volume_files(model.run_dir, model.path, model.value)
        settings = {"initial_lowpass_a": p.initial_lowpass, "global_step_deg": p.global_step,
                    "global_iterations": p.global_iterations, "min_step_deg": p.min_step,
                    "max_shift_a": p.max_shift, "max_iterations": p.max_iterations,
                    "mask_diameter_a": p.mask_diameter, "seed": p.seed, "use_gpu": p.use_gpu}
        resources = Resources(cpus=1, gpus=1 if p.use_gpu else 0,
                              memory_mb=_memory_mb(size_of(particles), _box(particles.value), 8))
        graph = StepGraph()
        graph.add("refine", refine3d_step, {"particles_set": set_id_of(particles), "initial_model": model_path,
                                            "settings": settings},
                  inputs=[model_path], outputs=[MAP, *HALVES, FSC_FILE], resources=resources)
        return graph

    def summary(self, params: ResolvedParams, outputs: Mapping[str, OutputValue]) -> list[str]:
        volume = outputs.get("volume")
        value = volume.value if volume and isinstance(volume.value, dict) else {}
        if value.get("resolution_a") is None:
            return super().summary(params, outputs)
        return [f"{value.get('particles')} particles, {value.get('iterations')} iterations, "
                f"gold-standard FSC 0.143 at {value['resolution_a']:.2f} Å"]


class Fsc(Protocol):
    """Fourier shell correlation: of a map's half maps (resolution at 0.143, the
    gold-standard criterion) and, given a reference such as the ground truth, of the map
    against it (at 0.5, and 0.143). Both maps are masked with the same soft sphere."""

    name = "emtools.fsc"
    label = "FSC and resolution"
    citations = [ROSENTHAL_HENDERSON_2003, VAN_HEEL_SCHATZ_2005]
    params = [
        PointerParam("volume", type_name="Volume", help="Map to assess, e.g. refine3d.volume (with its half maps)."),
        PointerParam("reference", type_name="Volume", optional=True,
                     help="Map to compare with, e.g. simulate.volume (the ground truth)."),
        PathParam("reference_file", optional=True, must_exist=True, path_type="file",
                  help="An MRC map to compare with (relative to the project), when it is no run's output."),
        FloatParam("mask_diameter", default=0.0, min=0.0, help="Soft spherical mask in Å (0: 84 % of the box).",
                   wizard="mask_diameter"),
        FloatParam("pixel_size", default=0.0, min=0.0, help="Pixel size in Å when the map header lacks it."),
    ]
    outputs = {"fsc": "FSC"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.maps import FSC_FILE, fsc_step, volume_files

        volume = p.input("volume")
        path, halves = volume_files(volume.run_dir, volume.path, volume.value)
        reference = None
        if p.reference is not None:
            ref = p.input("reference")
            reference, _ = volume_files(ref.run_dir, ref.path, ref.value)
        elif p.reference_file is not None:
            # relative paths are relative to the project folder, the parent of its runs/ folder
            project_dir = Path(volume.run_dir).parent.parent
            reference = str(p.reference_file if p.reference_file.is_absolute() else project_dir / p.reference_file)
        settings = {"mask_diameter_a": p.mask_diameter, "pixel_size_a": p.pixel_size}
        graph = StepGraph()
        graph.add("fsc", fsc_step, {"volume": path, "half_maps": halves, "reference": reference,
                                    "settings": settings},
                  inputs=[path, *halves, *([reference] if reference else [])], outputs=[FSC_FILE])
        return graph

    def summary(self, params: ResolvedParams, outputs: Mapping[str, OutputValue]) -> list[str]:
        fsc = outputs.get("fsc")
        value = fsc.value if fsc and isinstance(fsc.value, dict) else {}
        parts = []
        if value.get("resolution_0143") is not None:
            parts.append(f"half maps: {value['resolution_0143']:.2f} Å (FSC 0.143)")
        if value.get("vs_reference_05") is not None:
            parts.append(f"against the reference: {value['vs_reference_05']:.2f} Å (FSC 0.5)")
        return ["; ".join(parts)] if parts else []
