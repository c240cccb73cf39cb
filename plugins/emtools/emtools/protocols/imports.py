"""``emtools.import_movies``, ``import_micrographs``, ``import_particles``: data from outside a project."""

from __future__ import annotations

from orchestrator.protocol import FloatParam, Param, Protocol, ResolvedParams, StepGraph, StrParam

# Step modules (numpy, scipy, the EM formats) are imported by the methods that plan steps,
# not when the plugin is discovered: `orch plugins` and `orch run` read the declarations only.


def acquisition_params(with_dose: bool) -> list[Param]:
    """The microscope settings an import asks for (RELION's optics group, and the dose)."""
    params: list[Param] = [
        FloatParam("voltage", default=300.0, min=1.0, help="Acceleration voltage in kV."),
        FloatParam("cs", default=2.7, min=0.0, help="Spherical aberration in mm."),
        FloatParam("amplitude_contrast", default=0.1, min=0.0, max=0.99, help="Amplitude contrast (0-1)."),
        FloatParam("pixel_size", default=0.0, min=0.0,
                   help="Pixel size in Å; 0 reads it from the first file's MRC header."),
    ]
    if with_dose:
        params.append(FloatParam("dose_per_frame", default=0.0, min=0.0,
                                 help="Exposure per frame in e/Å² (needed for dose weighting; 0: unknown)."))
    return params


def _acquisition(p: ResolvedParams, with_dose: bool) -> dict[str, float]:
    acq = {"voltage_kv": p.voltage, "cs_mm": p.cs, "amplitude_contrast": p.amplitude_contrast,
           "pixel_size_a": p.pixel_size}
    if with_dose:
        acq["dose_per_frame"] = p.dose_per_frame
    return acq


class ImportMovies(Protocol):
    """Import movies (MRC stacks, one file per movie) with their acquisition settings.

    Files are not copied; their headers are checked, so a truncated or non-MRC file is
    reported by name now rather than in the middle of motion correction.
    """

    name = "emtools.import_movies"
    label = "Import movies"
    params = [StrParam("files", help="Glob pattern of the movie files, e.g. 'raw/*.mrcs' (relative to the project)."),
              *acquisition_params(with_dose=True)]
    outputs = {"movies": "SetOfMovies"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.imports import import_movies_step

        graph = StepGraph()
        graph.add("import", import_movies_step, {"pattern": p.files, "acq": _acquisition(p, True)})
        return graph


class ImportMicrographs(Protocol):
    """Import micrographs (one MRC image per file), optionally with their CTF from a STAR file
    (``rlnMicrographName`` and, when present, ``rlnDefocusU/V/Angle``, ``rlnCtfMaxResolution``)."""

    name = "emtools.import_micrographs"
    label = "Import micrographs"
    params = [StrParam("files", default="", help="Glob pattern of the micrographs (ignored with ctf_star)."),
              StrParam("ctf_star", default="", help="RELION STAR file listing the micrographs and their CTF."),
              *acquisition_params(with_dose=False)]
    outputs = {"micrographs": "SetOfMicrographs"}

    def check_params(self, p: ResolvedParams) -> list[str]:
        return [] if p.files or p.ctf_star else ["param 'files': give a glob pattern, or a STAR file as ctf_star"]

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.imports import import_micrographs_step

        graph = StepGraph()
        graph.add("import", import_micrographs_step,
                  {"pattern": p.files, "ctf_star": p.ctf_star or None, "acq": _acquisition(p, False)})
        return graph


class ImportParticles(Protocol):
    """Import particles from a RELION particle STAR file (3.1 with optics groups, or 3.0)
    with their stacks, CTF, angles, shifts and classes."""

    name = "emtools.import_particles"
    label = "Import particles"
    params = [
        StrParam("star_file", help="Particle STAR file (relative to the project, or absolute)."),
        StrParam("images_dir", default="",
                 help="Folder that relative rlnImageName paths start from (default: the STAR file's folder)."),
        FloatParam("pixel_size", default=0.0, min=0.0,
                   help="Pixel size in Å, only for RELION 3.0 files that do not give it."),
    ]
    outputs = {"particles": "SetOfParticles"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.imports import import_particles_step

        graph = StepGraph()
        graph.add("import", import_particles_step, {"star_file": p.star_file, "images_dir": p.images_dir or None,
                                                    "pixel_size_a": p.pixel_size})
        return graph
