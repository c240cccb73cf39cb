"""relion.class2d, relion.class3d, relion.autorefine: relion_refine in three steps each."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from orchestrator.protocol import (
    BoolParam,
    FloatParam,
    IntParam,
    PathParam,
    PointerParam,
    ResolvedParams,
    StepGraph,
    StrParam,
)
from relion_plugin.common import (
    BAYESIAN_CITATION,
    RELION_CITATION,
    ParallelProtocol,
    input_set,
    input_volume,
    parallel_args,
    parallel_params,
    parallel_resources,
    particles_param,
)

# Step modules (numpy, scipy, the EM formats) are imported by the methods that plan steps,
# not when the plugin is discovered: `orch plugins` and `orch run` read the declarations only.

_COMMON_FLAGS = [
    "--norm",
    "--scale",
    "--pool",
    "30",
    "--pad",
    "2",
    "--skip_gridding",
    "--dont_combine_weights_via_disc",
]


def _diameter() -> FloatParam:
    return FloatParam(
        "particle_diameter",
        optional=True,
        min=1.0,
        label="Mask diameter (Å)",
        help="RELION's --particle_diameter; empty: 75 % of the box.",
    )


def _reference_params() -> list[Any]:
    return [
        PointerParam(
            "reference",
            type_name="Volume",
            optional=True,
            label="Initial model",
            help="A Volume output (e.g. reconstruct.volume); rescaled to the particles' box and "
            "pixel size when they differ. Or give reference_file.",
        ),
        PathParam(
            "reference_file",
            optional=True,
            must_exist=True,
            path_type="file",
            label="Initial model file",
            help="An MRC map, instead of a Volume output.",
        ),
        FloatParam(
            "ini_high",
            default=60.0,
            min=1.0,
            label="Initial low-pass (Å)",
            help="RELION's --ini_high: the model is low-pass filtered to this resolution first.",
        ),
        StrParam("symmetry", default="C1", pattern=r"[CDTOIcdtoi]\d*", label="Symmetry"),
    ]


class _RelionRefine(ParallelProtocol):
    """Shared steps: export the set, run relion_refine, import its results."""

    kind: ClassVar[str] = ""
    folder: ClassVar[str] = ""
    citations = [RELION_CITATION, BAYESIAN_CITATION]

    def relion_args(self, p: ResolvedParams) -> list[str]:
        raise NotImplementedError

    def check_params(self, p: ResolvedParams) -> list[str]:
        if "reference" not in p:
            return []
        given = [name for name in ("reference", "reference_file") if p[name] is not None]
        if len(given) != 1:
            return ["param 'reference': give exactly one of reference (a Volume output) or reference_file"]
        return []

    def steps(self, p: ResolvedParams) -> StepGraph:
        from relion_plugin.steps_refine import INPUT_STAR, export_step, import_step, refine_step

        set_id, producer_dir = input_set(p)
        out = f"{self.folder}/run"
        graph = StepGraph()
        graph.add("export", export_step, {"set_id": set_id, "producer_dir": producer_dir}, outputs=[INPUT_STAR])
        args = {
            "kind": self.kind,
            "args": self.relion_args(p),
            "out": out,
            **parallel_args(p),
            "reference": self._reference(p),
            "particle_diameter": p.particle_diameter,
        }
        reference = args["reference"]
        inputs = [INPUT_STAR] + ([reference] if reference and Path(reference).is_absolute() else [])
        graph.add("refine", refine_step, args, resources=parallel_resources(p), deps=["export"], inputs=inputs)
        symmetry = p.symmetry.upper() if "symmetry" in p else "C1"
        graph.add(
            "import",
            import_step,
            {"kind": self.kind, "set_id": set_id, "producer_dir": producer_dir, "out": out, "symmetry": symmetry},
            deps=["refine"],
        )
        return graph

    def _reference(self, p: ResolvedParams) -> str | None:
        if "reference" not in p:
            return None
        ref = input_volume(p, "reference")
        if ref is not None:
            files = ref.files()
            return str(files[0]) if files else None
        # A relative file is relative to the project folder (where the run was validated);
        # the step resolves it there (see steps_refine.refine_step).
        return str(p.reference_file) if p.reference_file is not None else None


def _offset_params() -> list[FloatParam]:
    """The translational search every refinement protocol exposes."""
    return [
        FloatParam("offset_range", default=5.0, min=0.0, label="Offset search range (px)"),
        FloatParam("offset_step", default=1.0, min=0.1, label="Offset search step (px)"),
    ]


def _offset_args(p: ResolvedParams) -> list[str]:
    return ["--offset_range", f"{p.offset_range:g}", "--offset_step", f"{p.offset_step:g}"]


class Class2D(_RelionRefine):
    """Reference-free 2D classification with relion_refine (RELION 3.1).

    Outputs the particles with their class, in-plane angle and shift, and the class
    averages (one image per class in RELION's classes stack) with their sizes.
    """

    name = "relion.class2d"
    label = "RELION 2D classification"
    kind = "class2d"
    folder = "Class2D"
    params = [
        particles_param(),
        IntParam("classes", default=10, min=1, label="Classes (K)"),
        IntParam("iterations", default=25, min=1, label="Iterations"),
        FloatParam("tau2_fudge", default=2.0, min=0.1, label="Regularisation T"),
        _diameter(),
        BoolParam("ctf", default=True, label="CTF correction"),
        FloatParam("psi_step", default=10.0, min=0.5, label="In-plane angular step (°)"),
        *_offset_params(),
        IntParam("random_seed", default=1, label="Random seed"),
        *parallel_params(),
    ]
    outputs = {"particles": "SetOfParticles", "classes": "SetOfClasses2D"}

    def relion_args(self, p: ResolvedParams) -> list[str]:
        return [
            "--K",
            str(p.classes),
            "--iter",
            str(p.iterations),
            "--tau2_fudge",
            f"{p.tau2_fudge:g}",
            *(["--ctf"] if p.ctf else []),
            "--zero_mask",
            "--oversampling",
            "1",
            "--psi_step",
            f"{p.psi_step:g}",
            *_offset_args(p),
            "--random_seed",
            str(p.random_seed),
            *_COMMON_FLAGS,
        ]


class Class3D(_RelionRefine):
    """3D classification with relion_refine (RELION 3.1) from an initial model.

    Outputs the particles with their class, angles and shifts, and the classes (one map per
    class) with their sizes and estimated resolutions.
    """

    name = "relion.class3d"
    label = "RELION 3D classification"
    kind = "class3d"
    folder = "Class3D"
    params = [
        particles_param(),
        *_reference_params(),
        IntParam("classes", default=4, min=1, label="Classes (K)"),
        IntParam("iterations", default=25, min=1, label="Iterations"),
        FloatParam("tau2_fudge", default=4.0, min=0.1, label="Regularisation T"),
        _diameter(),
        BoolParam("ctf", default=True, label="CTF correction"),
        IntParam(
            "healpix_order",
            default=2,
            min=0,
            max=8,
            label="Angular sampling (HEALPix order)",
            help="0: 60°, 1: 30°, 2: 15°, 3: 7.5°, 4: 3.7°",
        ),
        *_offset_params(),
        IntParam("random_seed", default=1, label="Random seed"),
        *parallel_params(),
    ]
    outputs = {"particles": "SetOfParticles", "classes": "SetOfClasses3D"}

    def relion_args(self, p: ResolvedParams) -> list[str]:
        return [
            "--K",
            str(p.classes),
            "--iter",
            str(p.iterations),
            "--tau2_fudge",
            f"{p.tau2_fudge:g}",
            "--ini_high",
            f"{p.ini_high:g}",
            "--firstiter_cc",
            *(["--ctf"] if p.ctf else []),
            "--flatten_solvent",
            "--zero_mask",
            "--oversampling",
            "1",
            "--healpix_order",
            str(p.healpix_order),
            *_offset_args(p),
            "--sym",
            p.symmetry.upper(),
            "--random_seed",
            str(p.random_seed),
            *_COMMON_FLAGS,
        ]


class AutoRefine(_RelionRefine):
    """Gold-standard 3D auto-refinement with relion_refine_mpi --auto_refine (RELION 3.1).

    Needs at least 3 MPI ranks (a master and one per half set). Outputs the particles with
    their angles, shifts and half set, and the map (with its two unfiltered half maps) whose
    resolution is RELION's gold-standard FSC at 0.143, without masking.
    """

    name = "relion.autorefine"
    label = "RELION 3D auto-refine"
    kind = "autorefine"
    folder = "Refine3D"
    params = [
        particles_param(),
        *_reference_params(),
        _diameter(),
        BoolParam("ctf", default=True, label="CTF correction"),
        IntParam(
            "healpix_order",
            default=2,
            min=0,
            max=8,
            label="Initial angular sampling (HEALPix order)",
            help="0: 60°, 1: 30°, 2: 15°, 3: 7.5°",
        ),
        IntParam("local_healpix_order", default=4, min=0, max=8, label="Local searches from (HEALPix order)"),
        *_offset_params(),
        FloatParam("low_resol_join_halves", default=40.0, min=0.0, label="Join halves below (Å)"),
        IntParam("random_seed", default=1, label="Random seed"),
        *parallel_params(mpi_default=3, mpi_min=3),
    ]
    outputs = {"particles": "SetOfParticles", "volume": "Volume"}

    def relion_args(self, p: ResolvedParams) -> list[str]:
        return [
            "--auto_refine",
            "--split_random_halves",
            "--ini_high",
            f"{p.ini_high:g}",
            "--firstiter_cc",
            *(["--ctf"] if p.ctf else []),
            "--flatten_solvent",
            "--zero_mask",
            "--oversampling",
            "1",
            "--healpix_order",
            str(p.healpix_order),
            "--auto_local_healpix_order",
            str(p.local_healpix_order),
            *_offset_args(p),
            "--sym",
            p.symmetry.upper(),
            "--low_resol_join_halves",
            f"{p.low_resol_join_halves:g}",
            "--auto_ignore_angles",
            "--auto_resol_angles",
            "--random_seed",
            str(p.random_seed),
            *_COMMON_FLAGS,
        ]


PROTOCOLS = (Class2D, Class3D, AutoRefine)
