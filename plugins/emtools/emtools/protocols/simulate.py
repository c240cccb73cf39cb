"""``emtools.simulate``: a synthetic data set with known answers, from movies to ground truth."""

from __future__ import annotations

from collections.abc import Mapping

from emtools.protocols.citations import GRANT_GRIGORIEFF_2015, VULOVIC_2013
from orchestrator.protocol import (
    FloatParam,
    IntParam,
    OutputValue,
    Protocol,
    ResolvedParams,
    Resources,
    StepGraph,
)

# Step modules (numpy, scipy, the EM formats) are imported by the methods that plan steps,
# not when the plugin is discovered: `orch plugins` and `orch run` read the declarations only.


class Simulate(Protocol):
    """Simulate a single-particle data set: a protein-like phantom, and dose-fractionated
    movies of it with drift, radiation damage, per-micrograph CTF, an ice background and
    Poisson shot noise. The ground truth (volume, particle positions and angles, drift,
    defocus) is kept in ``ground_truth/`` to check every later step against.

    ``snr`` is the variance of a CTF-modulated particle projection over its box divided by
    the shot-noise variance of the whole exposure, per pixel. Movies are simulated in
    batches of ``batch_size``, one step per batch.
    """

    name = "emtools.simulate"
    label = "Simulate movies"
    citations = [VULOVIC_2013, GRANT_GRIGORIEFF_2015]
    params = [
        IntParam("n_micrographs", default=12, min=1, help="Number of movies (exposures)."),
        IntParam("particles_per_micrograph", default=100, min=1,
                 help="Particles in each exposure; the micrograph is sized to hold them one box apart."),
        IntParam("box", default=48, min=16, max=512, help="Box of the phantom and of one particle, in pixels."),
        FloatParam("pixel_size", default=3.0, min=0.1, help="Pixel size in Å."),
        FloatParam("snr", default=0.1, min=1e-4, help="Signal-to-noise ratio of a particle (see the help)."),
        IntParam("frames", default=10, min=2, help="Frames per movie."),
        FloatParam("dose", default=40.0, min=0.1, help="Total exposure in e/Å², spread evenly over the frames."),
        FloatParam("drift_px", default=8.0, min=0.0, help="Length of the beam-induced drift path, in pixels."),
        FloatParam("defocus_min", default=8000.0, min=0.0, help="Lowest mean defocus in Å (underfocus > 0)."),
        FloatParam("defocus_max", default=16000.0, min=0.0, help="Highest mean defocus in Å."),
        FloatParam("astigmatism", default=1000.0, min=0.0, help="Largest defocus U - V in Å (drawn uniformly)."),
        FloatParam("background", default=1.0, min=0.0,
                   help="Ice/carbon background: its standard deviation relative to the particle projections'."),
        FloatParam("voltage", default=300.0, min=1.0, help="Acceleration voltage in kV."),
        FloatParam("cs", default=2.7, min=0.0, help="Spherical aberration in mm."),
        FloatParam("amplitude_contrast", default=0.1, min=0.0, max=0.99, help="Amplitude contrast (0-1)."),
        IntParam("seed", default=0, help="Seed of every random draw (same seed, same data)."),
        IntParam("batch_size", default=2, min=1, help="Movies simulated per step."),
    ]
    outputs = {"movies": "SetOfMovies", "volume": "Volume", "ground_truth": "Files"}

    def check_params(self, p: ResolvedParams) -> list[str]:
        if p.defocus_max < p.defocus_min:
            return [f"param 'defocus_max': {p.defocus_max} is below defocus_min {p.defocus_min}"]
        return []

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.common import batch_file, batches
        from emtools.steps.simulate import VOLUME, micrograph_side, movies_step, phantom_step, register_step

        graph = StepGraph()
        phantom = graph.add("phantom", phantom_step, {"box": p.box, "pixel_size_a": p.pixel_size, "seed": p.seed},
                            outputs=[VOLUME])
        sim = {"snr": p.snr, "frames": p.frames, "dose": p.dose, "drift_px": p.drift_px, "seed": p.seed,
               "defocus_min_a": p.defocus_min, "defocus_max_a": p.defocus_max, "astigmatism_a": p.astigmatism,
               "background": p.background, "voltage_kv": p.voltage, "cs_mm": p.cs,
               "amplitude_contrast": p.amplitude_contrast}
        side = micrograph_side(p.particles_per_micrograph, p.box)
        frame_mb = 8 * side * side * p.frames // 2**20  # a few copies of the float32 frames
        files = []
        steps = []
        for index, (first, stop) in enumerate(batches(p.n_micrographs, p.batch_size)):
            files.append(batch_file("movies", index))
            args = {"batch": index, "first": first, "stop": stop, "box": p.box, "pixel_size_a": p.pixel_size,
                    "particles": p.particles_per_micrograph, "sim": sim}
            steps.append(graph.add(f"movies_{index:04d}", movies_step, args, deps=[phantom], inputs=[VOLUME],
                                   outputs=[files[-1]], resources=Resources(memory_mb=256 + frame_mb)))
        graph.add("register", register_step, {"files": files, "box": p.box, "pixel_size_a": p.pixel_size,
                                              "sim": sim}, deps=steps, inputs=files)
        return graph

    def summary(self, params: ResolvedParams, outputs: Mapping[str, OutputValue]) -> list[str]:
        movies = outputs.get("movies")
        if movies is None or not isinstance(movies.value, dict):
            return super().summary(params, outputs)
        return [f"{movies.value.get('size')} movies, {movies.value.get('particles')} particles, "
                f"{params.box} px at {params.pixel_size} Å/px, SNR {params.snr}"]
