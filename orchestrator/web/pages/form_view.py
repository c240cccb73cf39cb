"""A protocol's form as the template draws it: sections of fields, each with its value as text,
its help, its condition, its choices and the problems found with it.

Sections: a param's declared ``section`` (see :class:`~orchestrator.objects.params.Param`); a
param without one goes under "Inputs" when it is a pointer, else under "Parameters". Sections
come in the order their first param is declared, so a form reads as its protocol is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from orchestrator.app.forms import PointerChoice, value_text
from orchestrator.app.plugins import ProtocolInfo
from orchestrator.web.wizards import WIZARDS

INPUTS = "Inputs"
PARAMETERS = "Parameters"
#: kinds whose field is typed as text (the others are a checkbox, a choice, a chooser)
TEXT_KINDS = ("int", "float", "str", "path")
#: an enum of at most this many choices is a row of buttons, more a drop-down
MAX_BUTTON_CHOICES = 4


_LITERAL = re.compile(r"``(.+?)``")


def help_markup(text: str) -> Markup:
    """Help text as HTML: escaped, with the docstrings' ````name```` literals as ``<code>``."""
    return Markup(_LITERAL.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(text))))


@dataclass
class FieldView:
    """One param's field."""

    name: str
    kind: str
    label: str
    help: Markup
    value: str
    default: Any
    required: bool
    optional: bool
    condition: str | None
    problems: list[str]
    limits: str = ""
    choices: list[str] = field(default_factory=list)
    type_name: str | None = None
    pointers: list[PointerChoice] = field(default_factory=list)
    wizard: str | None = None
    wizard_button: str | None = None

    @property
    def default_text(self) -> str:
        """The default as the field would hold it ("" when there is none)."""
        return value_text(self.default)

    @property
    def buttons(self) -> bool:
        """An enum shown as a row of buttons rather than a drop-down."""
        return self.kind == "enum" and len(self.choices) <= MAX_BUTTON_CHOICES

    @property
    def known_pointer(self) -> bool:
        """The value is one of the choices (a copied run may name an output gone since)."""
        return not self.value or any(choice.value == self.value for choice in self.pointers)


@dataclass
class SectionView:
    title: str
    fields: list[FieldView]


def limits_text(param: Mapping[str, Any]) -> str:
    """"≥ 1", "0 – 0.99": the bounds a number must keep, for the hint under the field."""
    low, high = param.get("min"), param.get("max")
    if low is not None and high is not None:
        return f"{low:g} – {high:g}"
    if low is not None:
        return f"≥ {low:g}"
    if high is not None:
        return f"≤ {high:g}"
    return ""


def field_view(param: Mapping[str, Any], value: str, problems: Sequence[str],
               pointers: Sequence[PointerChoice]) -> FieldView:
    condition = param.get("condition")
    if isinstance(condition, str) and condition.startswith("<function"):
        condition = None  # a Python callable: the browser cannot tell, the server ignores the param when false
    wizard = WIZARDS.get(param.get("wizard") or "")
    return FieldView(
        name=param["name"], kind=param["kind"], label=param["label"], help=help_markup(param["help"]), value=value,
        default=param.get("default"), required=bool(param.get("required")), optional=bool(param.get("optional")),
        condition=condition, problems=list(problems), limits=limits_text(param),
        choices=list(param.get("choices") or []), type_name=param.get("type_name"), pointers=list(pointers),
        wizard=wizard.kind if wizard else None, wizard_button=wizard.button if wizard else None)


def sections(protocol: ProtocolInfo, values: Mapping[str, str], problems: Mapping[str, Sequence[str]],
             pointers: Mapping[str, Sequence[PointerChoice]]) -> list[SectionView]:
    """The form's sections, with each field's value (``values``, else its default) and problems."""
    grouped: dict[str, list[FieldView]] = {}
    for param in protocol.params:
        name = param["name"]
        title = param.get("section") or (INPUTS if param["kind"] == "pointer" else PARAMETERS)
        text = values.get(name, "")
        grouped.setdefault(title, []).append(field_view(param, text, problems.get(name, ()), pointers.get(name, ())))
    return [SectionView(title, fields) for title, fields in grouped.items()]


def conditions_json(protocol: ProtocolInfo) -> dict[str, Any]:
    """What the browser needs to evaluate conditions: each param's kind and default."""
    return {param["name"]: {"kind": param["kind"], "default": param.get("default")} for param in protocol.params}
