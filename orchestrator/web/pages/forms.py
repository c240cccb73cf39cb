"""The form pages (Scipion's protocol form): choose a protocol, fill in its form (or start from an
earlier run's params: "copy as a new run"), and launch the run.

The form is drawn from the protocol's declared params (:mod:`.form_view`); the browser shows and
hides fields as their conditions say while the user types (``static/forms-conditions.js``,
``forms.js``; the wizards' drawing in ``forms-wizards.js``). The values are
checked by the application layer with the code ``orch run`` uses (:mod:`orchestrator.app.forms`):
on a problem the form comes back with each message beside its field and nothing is created; on
success the browser goes to the project page with the new run selected. The wizards' routes are
in :mod:`.form_wizards`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.app.form_hosts import host_choices
from orchestrator.app.forms import (
    HOST_FIELD,
    NAME_FIELD,
    FormRejected,
    RunCopy,
    check_form,
    copy_of_run,
    default_fields,
    pointer_choices,
    protocol_catalog,
    submit_form,
)
from orchestrator.app.plugins import PluginDetail, ProtocolInfo, describe_protocol
from orchestrator.errors import NotFoundError
from orchestrator.names import LOCAL_HOST
from orchestrator.web.pages import form_wizards
from orchestrator.web.pages.form_view import conditions_json, help_markup, sections
from orchestrator.web.pages.served import project_path
from orchestrator.web.render import page


def form_fields(data: ImmutableMultiDict[str, Any]) -> dict[str, str]:
    """A submitted form (or query) as ``name -> text``; a name sent twice keeps its last value (a
    checkbox sends "true" after its hidden "false")."""
    return {name: str(data.getlist(name)[-1]) for name in data.keys() if isinstance(data.getlist(name)[-1], str)}


def _form_context(folder: Path, project: str, protocol: str, values: Mapping[str, str],
                  rejected: FormRejected | None = None, copied: RunCopy | None = None) -> dict[str, Any]:
    """Everything the form's template draws (called in a worker thread: it reads the store)."""
    info = describe_protocol(protocol)
    pointers = {param["name"]: pointer_choices(folder, param["type_name"])
                for param in info.params if param["kind"] == "pointer"}
    by_param = rejected.by_param if rejected is not None else {}
    return {"project": project, "protocol": info, "plugin": protocol.split(".", 1)[0],
            "sections": sections(info, values, by_param, pointers), "conditions": conditions_json(info),
            "hosts": host_choices(folder), "host": values.get(HOST_FIELD) or LOCAL_HOST,
            "run_name": values.get(NAME_FIELD, ""), "name_problems": by_param.get(NAME_FIELD, []),
            "host_problems": by_param.get(HOST_FIELD, []), "general": rejected.general if rejected else [],
            "problem_count": rejected.count if rejected else 0, "copied": copied,
            "name_field": NAME_FIELD, "host_field": HOST_FIELD, "help_lines": _paragraphs(info)}


def _paragraphs(info: ProtocolInfo) -> list[Markup]:
    return [help_markup(" ".join(block.split())) for block in info.help.split("\n\n") if block.strip()]


def _summary(help_text: str, least: int = 60, most: int = 240) -> str:
    """The first sentences of a protocol's help, at least ``least`` characters of them (one may be
    just "Particle picking."), cut at ``most``: what a card in the chooser says of it."""
    text = " ".join(help_text.split())
    end = 0
    while end < least:
        found = text.find(". ", end)
        if found < 0:
            end = len(text)
            break
        end = found + 1
    summary = text[:end].strip()
    return summary if len(summary) <= most else summary[:most].rsplit(" ", 1)[0] + "…"


def _catalog_view(catalog: list[PluginDetail]) -> list[dict[str, Any]]:
    groups = []
    for detail in catalog:
        cards = []
        for info in detail.protocols:
            inputs = [param["type_name"] for param in info.params if param["kind"] == "pointer"]
            search = " ".join([info.name, info.label, info.help, *inputs, *info.outputs.values()]).lower()
            cards.append({"name": info.name, "label": info.label, "summary": help_markup(_summary(info.help)),
                          "inputs": inputs,
                          "outputs": list(info.outputs.values()), "search": search})
        groups.append({"plugin": detail.plugin, "description": detail.description, "protocols": cards})
    return groups


async def choose_protocol(request: Request) -> Response:
    project_path(request)
    catalog = await run_in_threadpool(protocol_catalog)
    return page(request, "form_choose.html", project=request.path_params["project"], groups=_catalog_view(catalog))


async def form_page(request: Request) -> Response:
    folder = project_path(request)
    protocol = request.path_params["protocol"]
    info = await run_in_threadpool(describe_protocol, protocol)
    values = default_fields(info.params)
    copied = None
    reference = request.query_params.get("copy")
    if reference:
        copied = await run_in_threadpool(copy_of_run, folder, int(reference) if reference.isdigit() else reference,
                                         protocol)
        values.update(copied.fields)
        values[HOST_FIELD] = copied.host
    context = await run_in_threadpool(_form_context, folder, request.path_params["project"], protocol, values,
                                      None, copied)
    return page(request, "form.html", **context)


async def submit(request: Request) -> Response:
    """Launch the run (htmx); on a problem, the form again with the messages beside their fields."""
    folder = project_path(request)
    project, protocol = request.path_params["project"], request.path_params["protocol"]
    fields = form_fields(await request.form())
    start = bool(getattr(request.app.state, "start_scheduler", True))
    try:
        run = await run_in_threadpool(submit_form, folder, protocol, fields, start_scheduler=start)
    except FormRejected as rejected:
        context = await run_in_threadpool(_form_context, folder, project, protocol, fields, rejected)
        return page(request, "fragments/form_fields.html", status_code=400, **context)
    return Response(status_code=200, headers={"HX-Redirect": f"/p/{project}?run={run.id}"})


async def check(request: Request) -> Response:
    """The problems the fields have now, by field, as JSON: the form shows them while the user types."""
    folder = project_path(request)
    fields = form_fields(request.query_params)
    rejected = await run_in_threadpool(check_form, folder, request.path_params["protocol"], fields)
    if rejected is None:
        return JSONResponse({"fields": {}, "general": []})
    return JSONResponse({"fields": rejected.by_param, "general": rejected.general})


async def pointer_options(request: Request) -> Response:
    """The outputs the pointer param may name now (runs finish while a form is filled in)."""
    folder = project_path(request)
    info = await run_in_threadpool(describe_protocol, request.path_params["protocol"])
    name = request.path_params["param"]
    param = next((p for p in info.params if p["name"] == name), None)
    if param is None or param["kind"] != "pointer":
        raise NotFoundError(f"protocol {info.name} has no input param {name!r}; its inputs: "
                            f"{', '.join(info.inputs) or 'none'}")
    choices = await run_in_threadpool(pointer_choices, folder, param["type_name"])
    return page(request, "fragments/form_pointer_options.html", choices=choices, type_name=param["type_name"],
                value=request.query_params.get("value", ""))


ROUTES: list[BaseRoute] = [
    Route("/p/{project}/new", choose_protocol),
    Route("/p/{project}/new/{protocol}", form_page),
    Route("/p/{project}/new/{protocol}", submit, methods=["POST"]),
    Route("/p/{project}/new/{protocol}/check", check),
    Route("/p/{project}/new/{protocol}/pointer-choices/{param}", pointer_options),
    *form_wizards.ROUTES,
]
