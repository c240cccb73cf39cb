"""relion.reconstruct and relion.postprocess: maps from known angles, and their sharpening."""

from __future__ import annotations

from orchestrator.protocol import (
    BoolParam,
    FloatParam,
    IntParam,
    PointerParam,
    Protocol,
    ProtocolError,
    ResolvedParams,
    StepGraph,
    StrParam,
)
from relion_plugin.common import (
    RELION_CITATION,
    ParallelProtocol,
    input_set,
    parallel_args,
    parallel_params,
    parallel_resources,
    particles_param,
)

# Step modules (numpy, scipy, the EM formats) are imported by the methods that plan steps,
# not when the plugin is discovered: `orch plugins` and `orch run` read the declarations only.

_STAR = "Input/particles.star"


class Reconstruct(ParallelProtocol):
    """Reconstruct a map from particles with known angles (relion_reconstruct, RELION 3.1).

    Reconstructs the full map and the two half maps in parallel (particles without a half
    set are split at random, for this run only) and reports the resolution where the
    half-map FSC (relion_image_handler --fsc, unmasked) falls below 0.143.
    """

    name = "relion.reconstruct"
    label = "RELION reconstruct"
    citations = [RELION_CITATION]
    params = [
        particles_param("Particles with angles, e.g. autorefine.particles or simulate.particles."),
        BoolParam("ctf", default=True, label="CTF correction"),
        StrParam("symmetry", default="C1", pattern=r"[CDTOIcdtoi]\d*", label="Symmetry"),
        FloatParam(
            "maxres",
            optional=True,
            min=0.1,
            label="Maximum resolution (Å)",
            help="Leave out higher frequencies (empty: up to Nyquist).",
        ),
        IntParam("random_seed", default=1, label="Seed of the half-set split"),
        *parallel_params(threads=False, gpus=False),
    ]
    outputs = {"volume": "Volume"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from relion_plugin.steps_maps import export_halves_step, fsc_step, reconstruct_step

        set_id, producer_dir = input_set(p)
        symmetry = p.symmetry.upper()
        graph = StepGraph()
        graph.add(
            "export",
            export_halves_step,
            {"set_id": set_id, "producer_dir": producer_dir, "star": _STAR, "seed": p.random_seed},
            outputs=[_STAR],
        )
        maps = {
            "full": (0, "Reconstruct/full.mrc"),
            "half1": (1, "Reconstruct/half1.mrc"),
            "half2": (2, "Reconstruct/half2.mrc"),
        }
        for name, (subset, out) in maps.items():
            args = {
                "star": _STAR,
                "out": out,
                "subset": subset,
                "ctf": p.ctf,
                "symmetry": symmetry,
                "maxres": p.maxres,
                **parallel_args(p),
            }
            graph.add(
                f"reconstruct_{name}",
                reconstruct_step,
                args,
                resources=parallel_resources(p),
                deps=["export"],
                inputs=[_STAR],
                outputs=[out],
            )
        graph.add(
            "fsc",
            fsc_step,
            {"full": maps["full"][1], "half1": maps["half1"][1], "half2": maps["half2"][1], "symmetry": symmetry},
            deps=[f"reconstruct_{name}" for name in maps],
        )
        return graph


class Postprocess(Protocol):
    """Mask, FSC-weight and sharpen a refined map (relion_mask_create + relion_postprocess).

    Takes a Volume with half maps (relion.autorefine's volume). The mask is the map
    low-pass filtered to ``mask_lowpass`` Å, thresholded (at ``mask_threshold``, or at 10 %
    of the filtered map's maximum when empty), extended and given a soft edge. Reports
    RELION's masked, phase-randomisation-corrected resolution at FSC 0.143.
    """

    name = "relion.postprocess"
    label = "RELION post-processing"
    citations = [RELION_CITATION]
    params = [
        PointerParam(
            "volume",
            type_name="Volume",
            label="Refined map",
            help="A Volume output with half maps, e.g. autorefine.volume.",
        ),
        FloatParam(
            "mask_threshold",
            optional=True,
            label="Mask threshold",
            help="Density level of the initial binary mask (empty: 10 % of the low-passed maximum).",
        ),
        FloatParam("mask_lowpass", default=15.0, min=1.0, label="Mask low-pass (Å)"),
        IntParam("mask_extend", default=3, min=0, label="Mask extension (px)"),
        IntParam("mask_soft_edge", default=6, min=0, label="Mask soft edge (px)"),
        BoolParam(
            "auto_bfactor",
            default=False,
            label="Estimate the B-factor",
            help="Guinier fit from 10 Å on (needs a map better than ~8 Å).",
        ),
        FloatParam(
            "bfactor",
            default=0.0,
            max=0.0,
            condition="not auto_bfactor",
            label="B-factor (Å²)",
            help="Ad-hoc sharpening B-factor, e.g. -100.",
        ),
    ]
    outputs = {"volume": "Volume"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        from relion_plugin.steps_maps import mask_step, postprocess_step

        ref = p.input("volume")
        value = ref.value if isinstance(ref.value, dict) else {}
        halves = value.get("half_maps")
        files = ref.files()
        if not halves or len(halves) != 2 or not files:
            raise ProtocolError(f"input 'volume' ({ref}) has no half maps; postprocess needs a refinement's volume")
        half1, half2 = (str(ref.run_dir / h) for h in halves)
        symmetry = str(value.get("symmetry") or "C1")
        graph = StepGraph()
        graph.add(
            "mask",
            mask_step,
            {
                "volume": str(files[0]),
                "out": "PostProcess/mask.mrc",
                "threshold": p.mask_threshold,
                "extend_px": p.mask_extend,
                "soft_edge_px": p.mask_soft_edge,
                "lowpass_a": p.mask_lowpass,
            },
            inputs=[str(files[0])],
            outputs=["PostProcess/mask.mrc"],
        )
        graph.add(
            "postprocess",
            postprocess_step,
            {
                "half1": half1,
                "half2": half2,
                "mask": "PostProcess/mask.mrc",
                "out": "PostProcess/postprocess",
                "symmetry": symmetry,
                "auto_bfactor": p.auto_bfactor,
                "bfactor": p.bfactor,
            },
            deps=["mask"],
            inputs=[half1, half2],
        )
        return graph


PROTOCOLS = (Reconstruct, Postprocess)
