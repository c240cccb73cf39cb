"""The wizards' routes: a wizard's panel beside its field, and the picture it draws on.

The panel is asked for with the form's fields as they are now (``GET .../wizard/PARAM?FIELD=...``),
so that it computes with what the user typed (the picking threshold with the diameter above it);
``wizard:sample`` and ``wizard:index`` say which output and which of its micrographs it looks at.
The picture (``.../image.png``) depends on the sample alone, but for the low-pass, on its value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.app.forms import PointerChoice, pointer_choices
from orchestrator.app.plugins import describe_protocol
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.web.pages.served import project_path
from orchestrator.web.render import page
from orchestrator.web.wizards import WIZARDS, Wizard, WizardContext

SAMPLE = "wizard:sample"
INDEX = "wizard:index"
VALUE = "wizard:value"


def _wizard_of(protocol: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]], Wizard]:
    """The param (as described), all the protocol's params, and the wizard it declares."""
    info = describe_protocol(protocol)
    param = next((p for p in info.params if p["name"] == name), None)
    if param is None:
        raise NotFoundError(f"protocol {protocol} has no param {name!r}")
    wizard = WIZARDS.get(param.get("wizard") or "")
    if wizard is None:
        known = ", ".join(p["name"] for p in info.params if p.get("wizard") in WIZARDS) or "none"
        raise NotFoundError(f"param {name!r} of {protocol} has no wizard; those with one: {known}")
    return param, list(info.params), wizard


def _choices(folder: Path, wizard: Wizard) -> list[PointerChoice]:
    """The outputs the wizard may look at (made already), of its preferred type first."""
    return [choice for type_name in wizard.sample_types
            for choice in pointer_choices(folder, type_name, ready_only=True)]


def default_sample(wizard: Wizard, params: Sequence[Mapping[str, Any]], fields: Mapping[str, str],
                   choices: Sequence[PointerChoice]) -> str | None:
    """What the wizard looks at unless the user picks: the output the form's own input names (the
    data the run will read), else the newest output of the preferred type."""
    ready = {choice.value for choice in choices}
    own = [fields.get(p["name"], "") for p in params
           if p["kind"] == "pointer" and p.get("type_name") in wizard.sample_types]
    own = [value for value in own if value in ready]
    if own and (wizard.prefer_form_input or not any(c.type_name == wizard.sample_types[0] for c in choices)):
        return own[0]
    return choices[0].value if choices else None


def _index(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        raise UsageError(f"{INDEX} {text!r}: expected a whole number (which micrograph of the sample)") from None


def _fields(request: Request) -> dict[str, str]:
    return {name: request.query_params.getlist(name)[-1] for name in request.query_params.keys()}


async def wizard_panel(request: Request) -> Response:
    folder = project_path(request)
    project, protocol, name = (request.path_params[key] for key in ("project", "protocol", "param"))
    param, params, wizard = await run_in_threadpool(_wizard_of, protocol, name)
    fields = _fields(request)
    choices = await run_in_threadpool(_choices, folder, wizard)
    sample = fields.get(SAMPLE) or default_sample(wizard, params, fields, choices)
    context: dict[str, Any] = {"wizard": wizard, "param": param, "choices": choices, "sample": sample,
                               "reads": ",".join(wizard.reads)}
    if sample is None:
        return page(request, "fragments/wizard_empty.html", **context)
    given = WizardContext(folder, protocol, param, fields, sample, _index(fields.get(INDEX)))
    data = await run_in_threadpool(wizard.panel, given)
    base = f"/p/{quote(project)}/new/{quote(protocol)}/wizard/{quote(name)}/image.png"
    image_url = base + "?" + urlencode({SAMPLE: sample, INDEX: data.get("index", 0)})
    return page(request, f"fragments/wizard_{wizard.kind}.html", data=data,
                image_url=image_url, **context)


async def wizard_image(request: Request) -> Response:
    folder = project_path(request)
    protocol, name = request.path_params["protocol"], request.path_params["param"]
    param, _params, wizard = await run_in_threadpool(_wizard_of, protocol, name)
    fields = _fields(request)
    sample = fields.get(SAMPLE)
    if not sample:
        raise UsageError(f"say which output to draw: {SAMPLE}=RUN.OUTPUT")
    value = fields.get(VALUE)
    try:
        number = float(value) if value else None
    except ValueError:
        raise UsageError(f"{VALUE} {value!r}: expected a number") from None
    given = WizardContext(folder, protocol, param, fields, sample, _index(fields.get(INDEX)), number)
    png = await run_in_threadpool(wizard.image, given)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=600"})


ROUTES: list[BaseRoute] = [
    Route("/p/{project}/new/{protocol}/wizard/{param}", wizard_panel),
    Route("/p/{project}/new/{protocol}/wizard/{param}/image.png", wizard_image),
]
