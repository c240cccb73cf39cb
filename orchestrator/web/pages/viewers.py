"""The data viewers: a set as a gallery (sorted, filtered, paged), one item in detail, and the
pictures of the project's MRC files (``/p/NAME/img/...``).

Pictures are drawn by :mod:`orchestrator.web.thumbnails` and served only for files inside the
project (:mod:`orchestrator.web.project_files`). Their URLs carry the file's fingerprint, so
a browser keeps a picture for as long as the file is unchanged and asks again when it is not.
A page of particles (or class averages) gets its pictures as one sheet (one request, each tile
showing its cell of it); micrographs come one picture each.
The pages of a run (class averages, volume, plots) are in :mod:`.viewer_runs`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.app import viewers as app_viewers
from orchestrator.app.sets import describe_set
from orchestrator.app.status import run_info
from orchestrator.em.errors import MrcFormatError
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.web import ctf_views
from orchestrator.web.pages import viewer_runs
from orchestrator.web.pages.served import project_path
from orchestrator.web.project_files import project_file, relative_to_project
from orchestrator.web.render import page
from orchestrator.web.thumbnails import SIZES, Fingerprint, Picture, cached, sheet, thumbnail

DEFAULT_COLUMNS = {
    "Micrograph": ["defocus_u", "defocus_v", "ctf_resolution", "ctf_fit_quality"],
    "Particle": ["micrograph_id", "class_id", "defocus_u"],
    "ClassAverage": ["size", "resolution"],
    "Movie": ["path", "n_frames"],
    "Coordinate": ["micrograph_id", "x", "y", "score"],
}
PAGE_SIZES = (24, 48, 100, 200)
#: card width in CSS px, and the picture asked for it (sharp on a high-density screen)
ZOOMS = {"Micrograph": {"s": (150, 256), "m": (230, 256), "l": (340, 512)},
         "stack": {"s": (72, 128), "m": (104, 128), "l": (150, 256)}}
DETAIL_SIZE = 768
#: item types whose pictures are images of stacks: a page of them is served as one sheet
SHEET_TYPES = ("Particle", "ClassAverage")
SHEET_COLUMNS = 10
#: short names under a small picture (the full name is in the tooltip), and units
LABELS = {"micrograph_id": "mic", "micrograph_name": "mic", "defocus_u": "dU", "defocus_v": "dV",
          "defocus_angle": "astig. angle", "ctf_resolution": "CTF res.", "ctf_fit_quality": "CTF fit",
          "class_id": "class", "image_index": "index", "image_path": "stack", "optics_group": "optics"}
UNITS = {"defocus_u": " Å", "defocus_v": " Å", "ctf_resolution": " Å", "resolution": " Å", "defocus_angle": "°",
         "rot": "°", "tilt": "°", "psi": "°"}
_CONDITION = re.compile(r"(\w+)\s*(<=|>=|==|=)\s*(\S+)")
PICTURE_CACHE = "private, max-age=31536000, immutable"  # the URL changes when the file does


def query_int(request: Request, name: str, default: int, low: int = 0, high: int = 2**31) -> int:
    """An integer from the query string; a UsageError (400) names it when it is not one."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r}: not a whole number") from None
    if not low <= value <= high:
        raise UsageError(f"{name}={value}: from {low} to {high}")
    return value


def split_conditions(text: str) -> list[str]:
    """``"defocus_u=1e4..2e4 class_id = 1,2"`` -> one condition each, as ``orch sets --where``
    takes them; what is not a condition is a UsageError saying what the forms are."""
    found = [f"{m[1]}{m[2]}{m[3]}" for m in _CONDITION.finditer(text)]
    rest = _CONDITION.sub(" ", text).strip()
    if rest:
        raise UsageError(f"filter {rest!r}: write COLUMN=VALUE, COLUMN=A,B,C, COLUMN=LOW..HIGH, COLUMN<=VALUE or "
                         "COLUMN>=VALUE, separated by spaces")
    return found


def picture_url(project: str, kind: str, relative: str, token: str | None, **params: Any) -> str:
    """The URL of a picture of a project file; ``token`` (the file's fingerprint) makes it change
    with the file."""
    query = {**params, **({"v": token} if token else {})}
    return f"/p/{quote(project)}/img/{kind}/{quote(relative)}?{urlencode(query)}"


class Tokens:
    """Fingerprint tokens of the files one page shows (each file looked at once)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.known: dict[str, str | None] = {}

    def __call__(self, relative: str) -> str | None:
        if relative not in self.known:
            try:
                self.known[relative] = Fingerprint.of(self.folder / relative).token()
            except NotFoundError:
                self.known[relative] = None
        return self.known[relative]


def format_value(name: str, value: Any) -> str:
    """A value as a card shows it: paths by their file name, numbers to a few digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return (f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}") + UNITS.get(name, "")
    if isinstance(value, str) and ("/" in value or name.endswith(("path", "name"))):
        return os.path.basename(value) or value
    return str(value)


def item_picture(project: str, folder: Path, item_type: str, item: dict[str, Any], size: int,
                 tokens: Tokens) -> str | None:
    """The URL of an item's picture, None when it has none or its file is outside the project."""
    if item_type == "Micrograph":
        relative = relative_to_project(folder, str(item["path"]))
        return picture_url(project, "image", relative, tokens(relative), size=size) if relative else None
    if item_type in ("Particle", "ClassAverage"):
        relative = relative_to_project(folder, str(item["image_path"]))
        return picture_url(project, "stack", relative, tokens(relative), index=item["image_index"], size=size) \
            if relative else None
    return None


@dataclass(frozen=True)
class SheetRef:
    """A page's stack images as one sheet: its URL and its grid (cell ``n`` is item ``n``)."""

    url: str
    columns: int
    rows: int

    def cell(self, number: int) -> str:
        """Where the sheet goes so that its cell ``number`` fills the tile (each tile shows the
        sheet, scaled to ``columns`` tiles wide, through a window of one tile: one download)."""
        column, row = number % self.columns, number // self.columns
        return f"left: -{100 * column}%; top: -{100 * row}%"


def sheet_of(project: str, folder: Path, items: list[dict[str, Any]], size: int, tokens: Tokens) -> SheetRef:
    """The sheet of the items' stack images: each file named once (``f``), each item as
    ``FILE.INDEX`` (``-`` for one outside the project), the files' fingerprints as ``v``."""
    files: dict[str, int] = {}
    cells = []
    for item in items:
        relative = relative_to_project(folder, str(item["image_path"]))
        if relative is None:
            cells.append("-")
            continue
        number = files.setdefault(relative, len(files))
        cells.append(f"{number}.{int(item['image_index'])}")
    columns = min(SHEET_COLUMNS, len(items))
    version = hashlib.sha1("|".join(tokens(f) or "-" for f in files).encode()).hexdigest()[:12]
    query = urlencode([("size", size), ("cols", columns), *(("f", f) for f in files), ("i", ",".join(cells)),
                       ("v", version)])
    return SheetRef(f"/p/{quote(project)}/img/sheet.png?{query}", columns, -(-len(items) // columns))


# --------------------------------------------------------------------------- gallery

async def gallery(request: Request) -> Response:
    folder = project_path(request)
    project = request.path_params["project"]
    set_id = _path_int(request, "set_id")
    q = request.query_params
    where_text = " ".join(q.getlist("where")).strip()
    sort = q.get("sort") or None
    descending = q.get("order") == "desc"
    limit = query_int(request, "limit", 48, 1, app_viewers.MAX_PAGE)
    offset = query_int(request, "offset", 0)
    if q.get("page"):  # the pager's "go to page" box
        offset = (query_int(request, "page", 1, 1) - 1) * limit
    detail = await run_in_threadpool(describe_set, folder, set_id)
    columns = [c for c in q.getlist("columns") if c] or [c for c in DEFAULT_COLUMNS.get(detail.item_type, [])
                                                        if c in detail.columns]
    error = None
    try:
        result = await run_in_threadpool(
            lambda: app_viewers.gallery_page(folder, set_id, split_conditions(where_text), sort=sort,
                                             descending=descending, columns=columns, offset=offset, limit=limit))
    except UsageError as exc:  # a filter, order or column the set does not have: say so above the form
        error = str(exc)
        columns = [c for c in columns if c in detail.columns]
        result = app_viewers.GalleryPage(detail, columns, [], 0, 0, limit, sort, descending)
    zooms = ZOOMS["Micrograph" if detail.item_type == "Micrograph" else "stack"]
    zoom = q.get("zoom") or "m"
    zoom = zoom if zoom in zooms else "m"
    width, size = zooms[zoom]
    view = "spectrum" if q.get("view") == "spectrum" and detail.item_type == "Micrograph" else "image"
    tokens = Tokens(folder)
    sheet = sheet_of(project, folder, result.items, size, tokens) \
        if detail.item_type in SHEET_TYPES and result.items else None
    cards = []
    for number, item in enumerate(result.items):
        picture: str | None = None
        if view == "spectrum":
            picture = f"/p/{quote(project)}/sets/{set_id}/items/{item['id']}/spectrum.png?size={size}"
        elif sheet is None:
            picture = item_picture(project, folder, detail.item_type, item, size, tokens)
        cards.append({"id": item["id"], "picture": picture, "cell": sheet.cell(number) if sheet else None,
                      "cells": [(name, LABELS.get(name, name.replace("_", " ")), format_value(name, item.get(name)),
                                 item.get(name)) for name in columns]})
    run = await run_in_threadpool(run_info, folder, detail.run_id) if detail.run_id is not None else None
    state = {"where": where_text, "sort": sort or "", "order": "desc" if descending else "asc", "limit": limit,
             "zoom": zoom, "view": view, "columns": columns}
    pages = max(1, -(-result.total // limit))
    return page(request, "viewer_gallery.html", status_code=400 if error else 200, error=error, project=project,
                set=detail, run=run, result=result, cards=cards, sheet=sheet,
                state=state, width=width, page_sizes=PAGE_SIZES, page_no=result.offset // limit + 1, pages=pages,
                links=_pager(request, result.offset, limit, result.total), has_pictures=detail.item_type in (
                    "Micrograph", "Particle", "ClassAverage"))


def _pager(request: Request, offset: int, limit: int, total: int) -> dict[str, Any]:
    last = max(0, (total - 1) // limit * limit)

    def at(new_offset: int) -> str:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
        return f"{request.url.path}?{urlencode([*params, ('offset', str(new_offset))])}"

    return {"hidden": [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "page")],
            "first": at(0) if offset > 0 else None, "prev": at(max(0, offset - limit)) if offset > 0 else None,
            "next": at(offset + limit) if offset + limit < total else None,
            "last": at(last) if offset < last else None}


async def item_detail(request: Request) -> Response:
    """One item (a fragment of the gallery's dialog): a larger picture, every column, and for a
    micrograph its spectrum beside the fitted CTF and the 1D fit."""
    folder = project_path(request)
    project = request.path_params["project"]
    set_id, item_id = _path_int(request, "set_id"), _path_int(request, "item_id")
    detail = await run_in_threadpool(describe_set, folder, set_id)
    item = await run_in_threadpool(app_viewers.item, folder, set_id, item_id)
    picture = item_picture(project, folder, detail.item_type, item, DETAIL_SIZE, Tokens(folder))
    cells = [(name, format_value(name, value), value) for name, value in item.items()]
    has_ctf = detail.item_type == "Micrograph" and bool(item.get("has_ctf"))
    return page(request, "fragments/viewer_item.html", project=project, set=detail, item=item, picture=picture,
                cells=cells, has_ctf=has_ctf)


async def item_spectrum(request: Request) -> Response:
    """A micrograph's spectrum beside its fitted CTF (PNG, cached with the micrograph)."""
    folder, source, fit = await run_in_threadpool(_ctf_source, request)
    size = query_int(request, "size", 256)
    if size not in SIZES:
        raise UsageError(f"size {size}: use one of {', '.join(map(str, SIZES))}")
    try:
        data = await run_in_threadpool(cached, folder, source, f"spectrum:{size}:{fit.describe()}",
                                       lambda: ctf_views.spectrum_png(_micrograph(source), fit, size))
    except MrcFormatError as exc:
        raise unreadable(folder, exc) from None
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


async def item_ctf_plot(request: Request) -> Response:
    """A micrograph's 1D CTF fit (SVG, cached with the micrograph)."""
    from orchestrator.web import plots

    folder, source, fit = await run_in_threadpool(_ctf_source, request)

    def draw() -> bytes:
        profile = ctf_views.ctf_profile(_micrograph(source), fit)
        profile["title"] = (f"{source.name}: defocus {fit.defocus_u_a:,.0f} / {fit.defocus_v_a:,.0f} Å "
                            f"at {fit.defocus_angle_deg:.0f}°")
        return plots.ctf_profile_plot(profile)

    try:
        data = await run_in_threadpool(cached, folder, source, f"ctf1d:{fit.describe()}", draw, "svg")
    except MrcFormatError as exc:
        raise unreadable(folder, exc) from None
    return Response(data, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=300"})


def _ctf_source(request: Request) -> tuple[Path, Path, ctf_views.CtfFitInput]:
    folder = project_path(request)
    set_id, item_id = _path_int(request, "set_id"), _path_int(request, "item_id")
    detail = describe_set(folder, set_id)
    if detail.item_type != "Micrograph":
        raise NotFoundError(f"set {set_id} holds {detail.item_type} items, not micrographs: no CTF to draw")
    item = app_viewers.item(folder, set_id, item_id)
    settings = run_info(folder, detail.run_id).params if detail.run_id is not None else {}
    fit = ctf_views.CtfFitInput.of(detail.properties.get("acquisition") or {}, item, settings)
    relative = relative_to_project(folder, str(item["path"]))
    if relative is None:
        raise NotFoundError(f"micrograph {item_id} is outside the project ({item['path']}): it is not served")
    return folder, project_file(folder, relative), fit


def _micrograph(source: Path) -> Any:
    from orchestrator.web.thumbnails import read_pixels

    return read_pixels(source, Picture("image"))[0]


# --------------------------------------------------------------------------- pictures

async def picture(request: Request) -> Response:
    """A PNG of a project file: ``image``, ``stack?index=N``, ``slice?axis=z&index=N``,
    ``projection?axis=z``; any size of :data:`SIZES`."""
    folder = project_path(request)
    kind = request.path_params["kind"]
    default_index = 0 if kind == "slice" else 1
    wanted = Picture(kind, index=query_int(request, "index", default_index), axis=request.query_params.get("axis", "z"),
                     size=query_int(request, "size", 256))
    source = project_file(folder, request.path_params["path"])
    try:
        data = await run_in_threadpool(thumbnail, folder, source, wanted)
    except MrcFormatError as exc:
        raise unreadable(folder, exc) from None
    given = request.query_params.get("v")
    current = Fingerprint.of(source).token() if given else None
    return Response(data, media_type="image/png",
                    headers={"Cache-Control": PICTURE_CACHE if given and given == current else "private, no-cache"})


async def picture_sheet(request: Request) -> Response:
    """Many stack images in one PNG (see :func:`sheet_of` for the query)."""
    folder = project_path(request)
    files = request.query_params.getlist("f")
    if not files or len(files) > app_viewers.MAX_PAGE:
        raise UsageError(f"a sheet names 1 to {app_viewers.MAX_PAGE} files (f=...)")
    sources = [project_file(folder, relative) for relative in files]
    items = []
    for cell in request.query_params.get("i", "").split(","):
        source, _, index = cell.partition(".")
        if cell == "-":
            items.append((-1, 0))
        elif source.isdigit() and index.isdigit() and int(source) < len(sources) and len(index) < 10:
            items.append((int(source), int(index)))
        else:
            raise UsageError(f"sheet cell {cell!r}: expected FILE.INDEX (numbers) or -")
    if len(items) > app_viewers.MAX_PAGE:
        raise UsageError(f"a sheet holds at most {app_viewers.MAX_PAGE} images")
    size, columns = query_int(request, "size", 128), query_int(request, "cols", SHEET_COLUMNS, 1)
    data = await run_in_threadpool(sheet, folder, sources, items, size, columns)
    return Response(data, media_type="image/png", headers={"Cache-Control": PICTURE_CACHE})


def unreadable(folder: Path, error: MrcFormatError) -> HTTPException:
    """422 for a file that is no MRC the viewers can read, named relative to the project."""
    return HTTPException(422, str(error).replace(f"{folder.resolve()}/", "").replace(f"{folder}/", ""))


def _path_int(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFoundError(f"{name.replace('_', ' ')} {raw!r}: not a number")
    return int(raw)


ROUTES: list[BaseRoute] = [
    Route("/p/{project}/sets/{set_id}", gallery),
    Route("/p/{project}/sets/{set_id}/items/{item_id}", item_detail),
    Route("/p/{project}/sets/{set_id}/items/{item_id}/spectrum.png", item_spectrum),
    Route("/p/{project}/sets/{set_id}/items/{item_id}/ctf.svg", item_ctf_plot),
    Route("/p/{project}/img/sheet.png", picture_sheet),
    Route("/p/{project}/img/{kind}/{path:path}", picture),
    *viewer_runs.ROUTES,
]
