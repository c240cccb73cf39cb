"""Step of ``emtools.select_classes``: the particles of some classes, as a new particle set."""

from __future__ import annotations

from typing import Any

from emtools.steps.common import EmtoolsStepError
from orchestrator.protocol import StepContext, output_result


def select_classes_step(ctx: StepContext, particles_set: int, class_ids: list[int]) -> dict[str, Any]:
    """Register the particles of ``particles_set`` whose ``class_id`` is in ``class_ids``.

    ``class_id`` is an indexed column: only the chunks holding those classes are read.
    """
    source = ctx.open_set(particles_set)
    columns = source.to_numpy(class_id=list(class_ids))  # a list: "one of"
    count = len(columns["id"])
    if count == 0:
        present = ", ".join(str(int(c)) for c in source.unique("class_id")[:20]) or "none"
        raise EmtoolsStepError(f"set {source.name!r} (id {source.id}) has no particle of class(es) "
                               f"{', '.join(map(str, class_ids))}; its classes: {present}")
    kept = sorted({int(c) for c in columns["class_id"]})
    missing = [c for c in class_ids if c not in kept]
    ctx.log(f"kept {count} of {source.size} particles from classes {', '.join(map(str, kept))}"
            + (f"; no particle in class(es) {', '.join(map(str, missing))}" if missing else ""))
    properties = {**source.properties, "source_set_id": particles_set, "selected_classes": list(class_ids)}
    subset = ctx.register_set("particles", "Particle", columns, properties)
    acquisition = source.properties.get("acquisition") or {}
    value = {"set_id": subset, "size": count, "classes": list(class_ids),
             "box_size": source.properties.get("box_size"), "pixel_size_a": acquisition.get("pixel_size_a")}
    return {"outputs": {"particles": output_result(None, value)}}
