"""Micrograph protocols: ``emtools.motioncorr``, ``ctffind``, ``pick`` and ``extract``.

Each fans out over batches of micrographs (``batch_size`` per step) so the scheduler can
spread them over its workers, and registers its output set in a last ``register`` step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emtools.protocols.citations import (
    GRANT_GRIGORIEFF_2015,
    ROHOU_GRIGORIEFF_2015,
    ROSEMAN_2003,
    SCHERES_2012,
    VOSS_2009,
    ZHENG_2017,
)
from orchestrator.protocol import (
    BoolParam,
    EnumParam,
    FloatParam,
    IntParam,
    PointerParam,
    Protocol,
    ResolvedParams,
    StepGraph,
)

# Step modules (numpy, scipy, the EM formats) are imported by the methods that plan steps,
# not when the plugin is discovered: `orch plugins` and `orch run` read the declarations only.

_BATCH_HELP = "Micrographs per step: smaller batches spread better over workers, larger ones cost less overhead."


def _fan_out(graph: StepGraph, name: str, func: Callable[..., Any], n_items: int, batch_size: int,
             args: dict[str, Any]) -> list[str]:
    """One step per batch of ``n_items``; returns the batch result files, in order."""
    from emtools.steps.common import batch_file, batches

    files = []
    for index, (start, stop) in enumerate(batches(n_items, batch_size)):
        files.append(batch_file(name, index))
        graph.add(f"{name}_{index:04d}", func, {"batch": index, "start": start, "stop": stop, **args},
                  outputs=[files[-1]])
    return files


class MotionCorr(Protocol):
    """Whole-frame motion correction: each frame is aligned by cross-correlation against the
    sum of the others, iteratively, and the aligned frames are summed with Grant &
    Grigorieff's exposure weights (dose weighting) into one micrograph per movie."""

    name = "emtools.motioncorr"
    label = "Motion correction"
    citations = [GRANT_GRIGORIEFF_2015, ZHENG_2017]
    params = [
        PointerParam("movies", type_name="SetOfMovies", help="Movies to align, e.g. simulate.movies."),
        BoolParam("dose_weighting", default=True, help="Weight frequencies by exposure (needs the dose per frame)."),
        FloatParam("bfactor", default=1500.0, min=0.0, help="B-factor (Å²) of the filter applied before correlating."),
        FloatParam("max_shift_px", default=40.0, min=1.0, help="Largest frame shift searched, in pixels."),
        IntParam("max_iterations", default=10, min=1, help="Alignment iterations at most."),
        IntParam("batch_size", default=2, min=1, help=_BATCH_HELP),
    ]
    outputs = {"micrographs": "SetOfMicrographs"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.common import set_id_of, size_of
        from emtools.steps.micrographs import motioncorr_batch_step, motioncorr_register_step

        movies = p.input("movies")
        graph = StepGraph()
        settings = {"dose_weighting": p.dose_weighting, "bfactor_a2": p.bfactor, "max_shift_px": p.max_shift_px,
                    "max_iterations": p.max_iterations}
        files = _fan_out(graph, "motioncorr", motioncorr_batch_step, size_of(movies), p.batch_size,
                         {"movies_set": set_id_of(movies), "settings": settings})
        graph.add("register", motioncorr_register_step, {"files": files, "movies_set": set_id_of(movies)},
                  deps=[f"motioncorr_{i:04d}" for i in range(len(files))], inputs=files)
        return graph


class CtfFind(Protocol):
    """CTF estimation (CTFFIND4-like): the amplitude spectrum averaged over tiles, its
    background removed, is fitted with defocus U, V and astigmatism angle by a grid search
    then a simplex on the normalised cross-correlation; the fit resolution is where the
    local agreement drops below 0.3."""

    name = "emtools.ctffind"
    label = "CTF estimation"
    citations = [ROHOU_GRIGORIEFF_2015]
    params = [
        PointerParam("micrographs", type_name="SetOfMicrographs", help="Micrographs, e.g. motioncorr.micrographs."),
        IntParam("tile_size", default=256, min=64, help="Tile (px) of the averaged power spectrum."),
        FloatParam("min_resolution", default=30.0, min=1.0, help="Lowest resolution fitted, in Å."),
        FloatParam("max_resolution", default=5.0, min=0.5, help="Highest resolution fitted, in Å (at most Nyquist)."),
        FloatParam("defocus_min", default=3000.0, min=0.0, help="Lowest defocus searched, in Å."),
        FloatParam("defocus_max", default=50000.0, min=0.0, help="Highest defocus searched, in Å."),
        FloatParam("max_astigmatism", default=3000.0, min=0.0, help="Largest astigmatism (U - V) searched, in Å."),
        IntParam("batch_size", default=4, min=1, help=_BATCH_HELP),
    ]
    outputs = {"micrographs": "SetOfMicrographs"}

    def check_params(self, p: ResolvedParams) -> list[str]:
        problems = []
        if p.max_resolution >= p.min_resolution:
            problems.append(f"param 'max_resolution': {p.max_resolution} Å must be finer than min_resolution")
        if p.defocus_max <= p.defocus_min:
            problems.append(f"param 'defocus_max': {p.defocus_max} must exceed defocus_min {p.defocus_min}")
        return problems

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.common import set_id_of, size_of
        from emtools.steps.micrographs import ctffind_batch_step, ctffind_register_step

        mics = p.input("micrographs")
        graph = StepGraph()
        settings = {"tile_size": p.tile_size, "min_resolution_a": p.min_resolution,
                    "max_resolution_a": p.max_resolution, "defocus_min_a": p.defocus_min,
                    "defocus_max_a": p.defocus_max, "max_astigmatism_a": p.max_astigmatism}
        files = _fan_out(graph, "ctffind", ctffind_batch_step, size_of(mics), p.batch_size,
                         {"micrographs_set": set_id_of(mics), "settings": settings})
        graph.add("register", ctffind_register_step, {"files": files, "micrographs_set": set_id_of(mics)},
                  deps=[f"ctffind_{i:04d}" for i in range(len(files))], inputs=files)
        return graph


class Pick(Protocol):
    """Particle picking. ``blob``: Laplacian-of-Gaussian at the particle's radius, peaks
    above ``threshold_sigma`` robust standard deviations. ``template``: locally normalised
    cross-correlation with in-plane rotations of 2D class averages (CTF applied)."""

    name = "emtools.pick"
    label = "Particle picking"
    citations = [VOSS_2009, ROSEMAN_2003]
    params = [
        PointerParam("micrographs", type_name="SetOfMicrographs", help="Micrographs, e.g. ctffind.micrographs."),
        EnumParam("method", choices=("blob", "template"), default="blob", help="Picker.", section="Picker"),
        FloatParam("particle_diameter", default=150.0, min=1.0, help="Particle diameter in Å.", section="Picker",
                   wizard="particle_diameter"),
        PointerParam("templates", type_name="SetOfClasses2D", condition="method == 'template'",
                     help="2D class averages to use as templates, e.g. classify2d.classes.", section="Picker"),
        FloatParam("angle_step", default=15.0, min=1.0, condition="method == 'template'",
                   help="In-plane rotation step of the templates, in degrees.", section="Picker"),
        FloatParam("threshold_sigma", default=3.0, help="Score threshold in robust standard deviations.",
                   section="Selection", wizard="pick_threshold"),
        FloatParam("min_distance", default=0.0, min=0.0,
                   help="Smallest distance between picks in Å (0: the particle diameter).", section="Selection"),
        IntParam("max_picks", default=0, min=0, help="Keep at most this many picks per micrograph (0: all).",
                 section="Selection"),
        IntParam("batch_size", default=4, min=1, help=_BATCH_HELP, section="Compute"),
    ]
    outputs = {"coordinates": "SetOfCoordinates"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.common import set_id_of, size_of
        from emtools.steps.particles_from_micrographs import pick_batch_step, pick_register_step

        mics = p.input("micrographs")
        settings = {"method": p.method, "particle_diameter_a": p.particle_diameter,
                    "templates_set": set_id_of(p.input("templates")) if p.method == "template" else None,
                    "angle_step_deg": p.angle_step, "threshold_sigma": p.threshold_sigma,
                    "min_distance_a": p.min_distance, "max_picks": p.max_picks}
        graph = StepGraph()
        files = _fan_out(graph, "pick", pick_batch_step, size_of(mics), p.batch_size,
                         {"micrographs_set": set_id_of(mics), "settings": settings})
        graph.add("register", pick_register_step,
                  {"files": files, "micrographs_set": set_id_of(mics), "n_micrographs": size_of(mics),
                   "particle_diameter_a": p.particle_diameter},
                  deps=[f"pick_{i:04d}" for i in range(len(files))], inputs=files)
        return graph


class Extract(Protocol):
    """Particle extraction (RELION-style preprocessing): a box around each coordinate, optional
    phase flipping and Fourier binning, contrast inversion (dark particles become white)
    and normalisation of the background (mean 0, standard deviation 1 outside a circle).
    Each particle takes its micrograph's CTF. One stack per micrograph."""

    name = "emtools.extract"
    label = "Particle extraction"
    citations = [SCHERES_2012]
    params = [
        PointerParam("coordinates", type_name="SetOfCoordinates", help="Picks, e.g. pick.coordinates."),
        PointerParam("micrographs", type_name="SetOfMicrographs", optional=True,
                     help="Micrographs to extract from (default: the ones the coordinates were picked on)."),
        IntParam("box_size", default=64, min=8, help="Box in micrograph pixels (a multiple of bin_factor).",
                 wizard="box_size"),
        IntParam("bin_factor", default=1, min=1, help="Fourier binning of the boxes."),
        BoolParam("invert_contrast", default=True, help="Make dark particles white (as references are)."),
        BoolParam("normalize", default=True, help="Background mean 0, standard deviation 1."),
        FloatParam("background_radius", default=0.0, min=0.0,
                   help="Radius (output px) outside which the background is measured (0: 75 % of half the box)."),
        BoolParam("phase_flip", default=False, help="Multiply by the sign of the CTF (refinement prefers not)."),
        IntParam("batch_size", default=4, min=1, help=_BATCH_HELP),
    ]
    outputs = {"particles": "SetOfParticles"}

    def check_params(self, p: ResolvedParams) -> list[str]:
        if p.box_size % p.bin_factor:
            return [f"param 'box_size': {p.box_size} is not a multiple of bin_factor {p.bin_factor}"]
        return []

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.common import set_id_of, size_of
        from emtools.steps.particles_from_micrographs import extract_batch_step, extract_register_step

        coords = p.input("coordinates")
        value = coords.value if isinstance(coords.value, dict) else {}
        if p.is_active("micrographs") and p.micrographs is not None:
            mics_set, n_mics = set_id_of(p.input("micrographs")), size_of(p.input("micrographs"))
        else:
            mics_set, n_mics = int(value["micrographs_set_id"]), int(value["n_micrographs"])
        settings = {"box_size": p.box_size, "bin_factor": p.bin_factor, "invert_contrast": p.invert_contrast,
                    "normalize": p.normalize, "background_radius_px": p.background_radius,
                    "phase_flip": p.phase_flip}
        graph = StepGraph()
        files = _fan_out(graph, "extract", extract_batch_step, n_mics, p.batch_size,
                         {"coordinates_set": set_id_of(coords), "micrographs_set": mics_set, "settings": settings})
        graph.add("register", extract_register_step,
                  {"files": files, "micrographs_set": mics_set, "settings": settings},
                  deps=[f"extract_{i:04d}" for i in range(len(files))], inputs=files)
        return graph
