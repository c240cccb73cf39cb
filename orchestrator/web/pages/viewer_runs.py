"""The viewers of one run: its class averages (and the subset run made from a choice of them),
its maps as orthogonal slices and projections, and its plots.

Every page asks the application layer (:mod:`orchestrator.app.viewers`); plots are SVG
drawn per request by :mod:`orchestrator.web.plots`, from a few columns of a set at most.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.app import viewers as app_viewers
from orchestrator.app.records import OutputInfo
from orchestrator.app.sets import SetDetail, describe_set, query_set
from orchestrator.app.status import run_status
from orchestrator.em import mrc
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.web.pages.served import project_path
from orchestrator.web.project_files import project_file
from orchestrator.web.render import page
from orchestrator.web.thumbnails import Fingerprint

PLOTS = ("fsc", "defocus", "ctf_resolution", "per_micrograph", "angles", "class_sizes", "steps")
MICROGRAPH_CHOICES = 500


def run_ref(request: Request) -> int | str:
    ref = request.path_params["run"]
    return int(ref) if ref.isdigit() else ref


# --------------------------------------------------------------------------- class averages

async def classes_page(request: Request) -> Response:
    folder = project_path(request)
    project = request.path_params["project"]
    averages = await run_in_threadpool(app_viewers.class_averages, folder, run_ref(request))
    token = None
    cards = []
    particles_set = None
    for output in (await run_in_threadpool(app_viewers.run_sets, folder, averages.run.id)):
        if output[0].name == averages.particles_output:
            particles_set = output[1].id
    for item in averages.classes:
        relative = str(item["image_path"])
        if token is None:
            token = _token(folder, relative)
        share = 100.0 * item["size"] / averages.particles_total if averages.particles_total else 0.0
        cards.append({"id": item["id"], "size": item["size"], "share": share,
                      "picture": f"/p/{quote(project)}/img/stack/{quote(relative)}?index={item['image_index']}"
                                 f"&size=256" + (f"&v={token}" if token else ""),
                      "particles": f"/p/{quote(project)}/sets/{particles_set}?where=class_id%3D{item['id']}"
                                   if particles_set is not None else None})
    largest = max((c["size"] for c in cards), default=1) or 1
    return page(request, "viewer_classes.html", project=project, averages=averages, cards=cards, largest=largest,
                protocol=app_viewers.SUBSET_PROTOCOL)


async def make_subset(request: Request) -> Response:
    """POST (htmx): queue the subset run of the ticked classes; a notice names it."""
    folder = project_path(request)
    form = await request.form()
    ids = []
    for raw in form.getlist("class_id"):
        if not isinstance(raw, str) or not raw.isdigit():
            raise UsageError(f"class {raw!r}: not a class number")
        ids.append(int(raw))
    name = form.get("name")
    run = await run_in_threadpool(lambda: app_viewers.make_class_subset(
        folder, run_ref(request), ids, name=name.strip() if isinstance(name, str) and name.strip() else None))
    return page(request, "fragments/viewer_subset.html", project=request.path_params["project"], run=run,
                classes=sorted(set(ids)))


# --------------------------------------------------------------------------- volume

async def volume_page(request: Request) -> Response:
    folder = project_path(request)
    project = request.path_params["project"]
    found = await run_in_threadpool(app_viewers.output_file, folder, run_ref(request),
                                    request.path_params["output"], "Volume")
    maps = {"map": found.path, **found.related}
    chosen = request.query_params.get("map", "map")
    if chosen not in maps:
        raise NotFoundError(f"map {chosen!r}: this volume has {', '.join(maps)}")
    source = project_file(folder, maps[chosen])
    info = await run_in_threadpool(mrc.read_header, source)
    nz, ny, nx = info.shape
    base = f"/p/{quote(project)}/img"
    relative = quote(maps[chosen])
    token = _token(folder, maps[chosen])
    axes = [{"axis": "z", "label": "XY (along Z)", "length": nz}, {"axis": "y", "label": "XZ (along Y)", "length": ny},
            {"axis": "x", "label": "YZ (along X)", "length": nx}]
    return page(request, "viewer_volume.html", project=project, found=found, maps=maps, chosen=chosen,
                info=info, axes=axes, slice_url=f"{base}/slice/{relative}",
                projection_url=f"{base}/projection/{relative}", token=token or "", size=_size_for(max(nz, ny, nx)))


def _size_for(box: int) -> int:
    return next((size for size in (256, 384, 512, 768, 1024) if size >= box), 1024)


def _token(folder: Path, relative: str) -> str | None:
    try:
        return Fingerprint.of(folder / relative).token()
    except NotFoundError:
        return None


# --------------------------------------------------------------------------- plots

async def plots_page(request: Request) -> Response:
    folder = project_path(request)
    project = request.path_params["project"]
    ref = run_ref(request)
    status = await run_in_threadpool(run_status, folder, ref)
    run = status.run
    sets = await run_in_threadpool(app_viewers.run_sets, folder, ref)
    sections = await run_in_threadpool(_sections, folder, project, run.id, run.outputs, sets)
    if run.steps:
        sections.append({"title": "Steps: duration and peak memory", "plots": [_plot_url(project, run.id, "steps")],
                         "caption": "Wall time and highest resident memory of each step, as the scheduler "
                                    "measured them."})
    return page(request, "viewer_plots.html", project=project, run=run, sections=sections)


def _plot_url(project: str, run_id: int, plot: str, output: str | None = None) -> str:
    return f"/p/{quote(project)}/runs/{run_id}/plots/{plot}.svg" + (f"?output={quote(output)}" if output else "")


def _sections(folder: Path, project: str, run_id: int, outputs: list[OutputInfo],
              sets: list[tuple[OutputInfo, SetDetail]]) -> list[dict[str, Any]]:
    """What can be plotted of a run's outputs, in the order a user reads them."""
    sections: list[dict[str, Any]] = []
    for output in outputs:
        if output.type_name == "FSC":
            sections.append({"title": f"FSC ({output.name})", "plots": [_plot_url(project, run_id, "fsc", output.name)],
                             "caption": "Gold-standard resolution where the half-map curve falls below 0.143; "
                                        "against a reference, at 0.5."})
    for output, detail in sets:
        if detail.item_type == "Micrograph" and _has_ctf(folder, detail.id):
            ids = query_set(folder, detail.id, ["has_ctf=true"], ["id", "path"], limit=MICROGRAPH_CHOICES).items
            sections.append({"title": f"CTF of {output.name}", "caption": "Defocus (mean of U and V) and the "
                             "resolution to which each micrograph's Thon rings agree with the fit.",
                             "plots": [_plot_url(project, run_id, "defocus", output.name),
                                       _plot_url(project, run_id, "ctf_resolution", output.name)],
                             "ctf": {"set": detail.id, "choices": ids}})
        elif detail.item_type in ("Particle", "Coordinate"):
            plots = [_plot_url(project, run_id, "per_micrograph", output.name)]
            if detail.item_type == "Particle" and _has_angles(folder, detail.id):
                plots.append(_plot_url(project, run_id, "angles", output.name))
            sections.append({"title": f"{output.name}: {detail.size:,} {detail.item_type.lower()}s", "plots": plots,
                             "caption": "How many per micrograph" + (", and the distribution of the particles' "
                                        "views (a gap is a view the data lacks)." if len(plots) > 1 else ".")})
        elif detail.item_type == "ClassAverage":
            sections.append({"title": f"{output.name}: class sizes", "caption": "Particles in each class.",
                             "plots": [_plot_url(project, run_id, "class_sizes", output.name)]})
    return sections


def _has_ctf(folder: Path, set_id: int) -> bool:
    return bool(np.any(app_viewers.set_columns(folder, set_id, ["has_ctf"])["has_ctf"]))


def _has_angles(folder: Path, set_id: int) -> bool:
    columns = app_viewers.set_columns(folder, set_id, ["tilt"])
    return bool(np.any(columns["tilt"] != 0))


async def plot(request: Request) -> Response:
    """One plot of a run as SVG (``?output=NAME`` names the output it is of)."""
    folder = project_path(request)
    kind = request.path_params["plot"]
    if kind not in PLOTS:
        raise NotFoundError(f"no plot {kind!r}; the plots: {', '.join(PLOTS)}")
    data = await run_in_threadpool(_draw, folder, run_ref(request), kind, request.query_params.get("output"))
    return Response(data, media_type="image/svg+xml", headers={"Cache-Control": "private, no-cache"})


def _draw(folder: Path, ref: int | str, kind: str, output: str | None) -> bytes:
    from orchestrator.web import plots

    if kind == "steps":
        return plots.step_resources(run_status(folder, ref).run.steps)
    if output is None:
        raise UsageError(f"plot {kind}: say which output (?output=NAME)")
    if kind == "fsc":
        value = app_viewers.output_file(folder, ref, output, "FSC").output.value or {}
        resolutions = {"half_maps": value.get("resolution_0143"), "vs_reference": value.get("vs_reference_05")}
        return plots.fsc_plot(app_viewers.fsc_curves(folder, ref, output), resolutions)
    set_id = next((o.set_id for o, _ in app_viewers.run_sets(folder, ref) if o.name == output), None)
    if set_id is None:
        raise NotFoundError(f"output {output!r} of this run is not a set")
    if kind == "defocus":
        columns = app_viewers.set_columns(folder, set_id, ["defocus_u", "defocus_v"])
        return plots.histogram(0.5 * (columns["defocus_u"] + columns["defocus_v"]), "defocus (Å)")
    if kind == "ctf_resolution":
        values = app_viewers.set_columns(folder, set_id, ["ctf_resolution"])["ctf_resolution"]
        return plots.histogram(values, "CTF fit resolution (Å)", color="#1f9d57")
    if kind == "per_micrograph":
        detail = describe_set(folder, set_id)
        ids = app_viewers.set_columns(folder, set_id, ["micrograph_id"])["micrograph_id"]
        return plots.per_micrograph(ids, "coordinates" if detail.item_type == "Coordinate" else "particles")
    if kind == "angles":
        columns = app_viewers.set_columns(folder, set_id, ["rot", "tilt"])
        return plots.angular_distribution(columns["rot"], columns["tilt"])
    sizes = app_viewers.set_columns(folder, set_id, ["size"])["size"]
    return plots.class_sizes([int(s) for s in sizes])


ROUTES: list[BaseRoute] = [
    Route("/p/{project}/runs/{run}/classes", classes_page),
    Route("/p/{project}/runs/{run}/classes/subset", make_subset, methods=["POST"]),
    Route("/p/{project}/runs/{run}/volume/{output}", volume_page),
    Route("/p/{project}/runs/{run}/plots", plots_page),
    Route("/p/{project}/runs/{run}/plots/{plot}.svg", plot),
]
