"""relion.preprocess and relion.import_particles."""

from __future__ import annotations

from pathlib import Path

from orchestrator.protocol import (
    BoolParam,
    FloatParam,
    IntParam,
    PathParam,
    Protocol,
    ResolvedParams,
    StepGraph,
)
from relion_plugin.common import RELION_CITATION, input_set, particles_param

# Step modules (numpy, scipy, the EM formats) are imported by the methods that plan steps,
# not when the plugin is discovered: `orch plugins` and `orch run` read the declarations only.


class Preprocess(Protocol):
    """Normalise (and optionally invert or rescale) particle stacks with relion_preprocess.

    Runs ``relion_preprocess --operate_on`` on every stack of the set, in ``batches``
    parallel steps, and makes a particle set on the new stacks (same particles and image
    indices; pixel size and shifts follow a rescale).
    """

    name = "relion.preprocess"
    label = "RELION preprocess (normalise stacks)"
    citations = [RELION_CITATION]
    params = [
        particles_param(),
        BoolParam(
            "normalise",
            default=True,
            label="Normalise",
            help="Background to mean 0, standard deviation 1 (RELION's --norm).",
        ),
        IntParam(
            "bg_radius",
            optional=True,
            min=1,
            label="Background radius (px)",
            help="Pixels outside this radius are background (empty: 75 % of half the box).",
        ),
        BoolParam("invert_contrast", default=False, label="Invert contrast"),
        IntParam(
            "rescale_box",
            optional=True,
            min=8,
            label="Rescale to box (px)",
            help="Fourier-rescale the images to this box (empty: keep).",
        ),
        IntParam(
            "batches",
            default=2,
            min=1,
            max=256,
            label="Parallel batches",
            help="Steps that share the stacks between them.",
        ),
    ]
    outputs = {"particles": "SetOfParticles"}

    def check_params(self, p: ResolvedParams) -> list[str]:
        if p.rescale_box is not None and p.rescale_box % 2:
            return [f"param 'rescale_box': {p.rescale_box} is odd; RELION needs an even box"]
        return []

    def steps(self, p: ResolvedParams) -> StepGraph:
        from relion_plugin.steps_preprocess import batch_record, collect_step, preprocess_batch_step

        set_id, producer_dir = input_set(p)
        graph = StepGraph()
        common = {"set_id": set_id, "producer_dir": producer_dir}
        names = []
        for batch in range(p.batches):
            args = {
                **common,
                "batch": batch,
                "batches": p.batches,
                "normalise": p.normalise,
                "bg_radius": p.bg_radius,
                "invert_contrast": p.invert_contrast,
                "rescale_box": p.rescale_box,
            }
            names.append(graph.add(f"preprocess_{batch}", preprocess_batch_step, args, outputs=[batch_record(batch)]))
        graph.add(
            "collect",
            collect_step,
            {**common, "batches": p.batches, "rescale_box": p.rescale_box},
            deps=names,
            inputs=[batch_record(b) for b in range(p.batches)],
        )
        return graph


class ImportParticles(Protocol):
    """Import a RELION particle STAR file (3.1 with optics groups, or 3.0) as a particle set.

    The stacks stay where they are; the set points at them. Relative stack names are looked
    up under ``images_dir`` (RELION's project folder), else next to the STAR file and in the
    two folders above it.
    """

    name = "relion.import_particles"
    label = "Import RELION particles"
    citations = [RELION_CITATION]
    params = [
        PathParam("star_file", must_exist=True, path_type="file", label="Particle STAR file"),
        PathParam("images_dir", optional=True, must_exist=True, path_type="dir", label="RELION project folder"),
        FloatParam(
            "pixel_size",
            optional=True,
            min=0.01,
            label="Pixel size (Å)",
            help="Only for RELION 3.0 files that do not give it.",
        ),
    ]
    outputs = {"particles": "SetOfParticles"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        # Relative paths are relative to the project folder; the step resolves them there.
        from relion_plugin.steps_preprocess import import_particles_step

        star, images = str(p.star_file), None if p.images_dir is None else str(p.images_dir)
        graph = StepGraph()
        args = {"star_file": star, "images_dir": images, "pixel_size": p.pixel_size}
        graph.add("import", import_particles_step, args, inputs=[star] if Path(star).is_absolute() else [])
        return graph


PROTOCOLS = (Preprocess, ImportParticles)
