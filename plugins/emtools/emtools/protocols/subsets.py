"""Subset protocols: ``emtools.select_classes`` keeps the particles of chosen 2D classes."""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.protocol import (
    OutputValue,
    PointerParam,
    Protocol,
    ResolvedParams,
    Resources,
    StepGraph,
    StrParam,
)


def parse_class_ids(text: str) -> list[int]:
    """``"1, 3,4"`` -> ``[1, 3, 4]`` (sorted, each once); ValueError saying what is wrong."""
    ids: set[int] = set()
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or len(part) > 9 or int(part) < 1:
            raise ValueError(f"{part!r} is not a class number (classes are numbered from 1)")
        ids.add(int(part))
    if not ids:
        raise ValueError("no class given: list the class numbers to keep, e.g. 1,3,4")
    return sorted(ids)


class SelectClasses(Protocol):
    """Keep the particles of the chosen 2D classes (a clean subset after classification).

    The particles keep every column (image, CTF, class, alignment) and their ids, so a
    subset can be traced back to the classification that made it."""

    name = "emtools.select_classes"
    label = "Select 2D classes"
    params = [
        PointerParam("particles", type_name="SetOfParticles",
                     help="Classified particles, e.g. classify2d.particles (their class_id is kept)."),
        StrParam("class_ids", help="Classes to keep, by number, e.g. 1,3,4 (class 1 is the largest)."),
    ]
    outputs = {"particles": "SetOfParticles"}

    def check_params(self, p: ResolvedParams) -> list[str]:
        try:
            parse_class_ids(p.class_ids)
        except ValueError as exc:
            return [f"param 'class_ids': {exc}"]
        return []

    def steps(self, p: ResolvedParams) -> StepGraph:
        from emtools.steps.common import set_id_of, size_of
        from emtools.steps.subsets import select_classes_step

        particles = p.input("particles")
        # every column of the set in memory once: ~100 bytes a particle
        memory_mb = int(256 + size_of(particles) * 200 / 2**20)
        graph = StepGraph()
        graph.add("select", select_classes_step,
                  {"particles_set": set_id_of(particles), "class_ids": parse_class_ids(p.class_ids)},
                  resources=Resources(memory_mb=memory_mb))
        return graph

    def summary(self, params: ResolvedParams, outputs: Mapping[str, OutputValue]) -> list[str]:
        particles = outputs.get("particles")
        value = particles.value if particles and isinstance(particles.value, dict) else {}
        if value.get("size") is None:
            return super().summary(params, outputs)
        return [f"{value['size']} particles of classes {', '.join(map(str, value.get('classes', [])))}"]
