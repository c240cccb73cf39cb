"""Scipion template fields: the ``~Label|default|type~`` parts of a ``.json.template`` file.

A Scipion template (``pyworkflow/template.py``) is an exported workflow in which some values
are written ``~Label|default|type~`` or ``~Label|default|type|alias~``; Scipion asks the
user for each one at launch (``alias`` is the name ``scipion template`` takes on its
command line) and replaces the whole ``~...~`` text with the answer. ``type`` is the number
of a ``pyworkflow.config.VarTypes`` member. Scipion splits the whole file on ``~`` and
calls ``int(type)``, so a field without a numeric type breaks Scipion too; here it is an
error naming the field. Template files may also start with free-text description lines
before the JSON list (``LocalTemplate.getDescription``), and a field may stand for a whole
JSON value outside quotes; :func:`decode_template_text` reads both.

Only text of the form ``~...|...~`` is a field: a lone ``~`` (a home folder in a path) is
left as text, as it is in any exported workflow that is not a template.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

#: VarTypes of pyworkflow.config: code -> (our input type, what Scipion calls it)
VAR_TYPES: dict[int, tuple[str, str]] = {
    0: ("str", "STRING"),
    1: ("bool", "BOOLEAN"),
    2: ("path", "PATH"),
    3: ("int", "INTEGER"),
    4: ("float", "DECIMAL"),
    5: ("str", "FILENAME"),
    6: ("path", "FOLDER"),
}
FIELD = re.compile(r"~([^~]*\|[^~]*)~")
_TRUE, _FALSE = ("true", "1"), ("false", "0")  # what Scipion's Validations.validBoolean accepts
_MAX_FIELD_TEXT = 60


class TemplateFieldError(ValueError):
    """A ``~...~`` field that Scipion could not read either; the caller adds file and protocol."""


@dataclass(frozen=True)
class TemplateField:
    """One ``~label|default|type|alias~`` field; ``default`` is typed (None when empty)."""

    label: str
    default: Any
    type: str
    alias: str | None = None
    text: str = ""

    @property
    def key(self) -> str:
        """What makes two fields the same question: Scipion keys its fields by label."""
        return self.alias or self.label


@dataclass(frozen=True)
class TemplatedValue:
    """A value holding template fields: the fields, and the value with their defaults put in."""

    fields: tuple[TemplateField, ...]
    value: Any


def shown_field(text: str) -> str:
    """A field as a message quotes it, cut when long."""
    return repr(text if len(text) <= _MAX_FIELD_TEXT else text[:_MAX_FIELD_TEXT] + "...")


def parse_field(text: str) -> TemplateField:
    """The field written ``~text~`` (without the tildes); TemplateFieldError says what is wrong."""
    parts = text.split("|")
    label = parts[0].strip()
    if not label:
        raise TemplateFieldError(f"template field {shown_field('~' + text + '~')} has no label")
    if len(parts) < 3 or not parts[2].strip():
        raise TemplateFieldError(f"template field {shown_field('~' + text + '~')} has no type; write "
                                 "~label|default|type~ with type a number 0-6 (0 text, 1 boolean, 2 path, "
                                 "3 integer, 4 decimal, 5 file name, 6 folder)")
    code_text = parts[2].strip()
    if not (code_text.isascii() and code_text.isdigit()) or int(code_text[:3]) not in VAR_TYPES:
        raise TemplateFieldError(f"template field {shown_field('~' + text + '~')}: type {code_text[:20]!r} is not "
                                 "one of Scipion's 0-6 (0 text, 1 boolean, 2 path, 3 integer, 4 decimal, "
                                 "5 file name, 6 folder)")
    kind = VAR_TYPES[int(code_text)][0]
    alias = parts[3].strip() if len(parts) > 3 and parts[3].strip() else None
    return TemplateField(label, _typed_default(parts[1], kind, text), kind, alias, "~" + text + "~")


def _typed_default(raw: str, kind: str, text: str) -> Any:
    value = raw.strip()
    if not value:
        return None
    problem = f"template field {shown_field('~' + text + '~')}: default {value[:30]!r} is not "
    if kind == "bool":
        if value.lower() not in _TRUE + _FALSE:
            raise TemplateFieldError(problem + "a boolean (true, false, 1 or 0)")
        return value.lower() in _TRUE
    if kind == "int":
        if len(value) > 18 or not re.fullmatch(r"[+-]?\d+", value):
            raise TemplateFieldError(problem + "an integer")
        return int(value)
    if kind == "float":
        try:
            number = float(value) if len(value) <= 100 else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise TemplateFieldError(problem + "a finite number")
        return number
    return value


def templated(value: Any) -> TemplatedValue | None:
    """The fields of a string value with their defaults put in, or None when it has none.

    A string that is one whole field takes the field's typed default (``"~N|10|3~"`` -> 10);
    one with text around its fields stays a string with each default written in.
    """
    if not isinstance(value, str) or "~" not in value:
        return None
    fields = tuple(parse_field(match.group(1)) for match in FIELD.finditer(value))
    if not fields:
        return None
    if len(fields) == 1 and fields[0].text == value:
        return TemplatedValue(fields, fields[0].default)
    filled = FIELD.sub(lambda m: "" if (d := parse_field(m.group(1)).default) is None else _as_text(d), value)
    return TemplatedValue(fields, filled)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def split_template_text(text: str) -> tuple[str, str]:
    """A template's text read as Scipion does: (the JSON text, the description lines before it).

    A field written outside quotes (``"numberOfClasses": ~Classes|10|3~``) comes back quoted,
    so that the text is JSON and the field is read like any other. TemplateFieldError names
    a ``~`` outside quotes that starts no field; the caller decodes the JSON and names the file.
    """
    lines = text.splitlines()
    start = _json_start(lines)
    description = " ".join(line.strip() for line in lines[:start] if line.strip())
    return _quote_bare_fields("\n".join(lines[start:])), description


def _json_start(lines: list[str]) -> int:
    """Scipion's rule: the JSON starts at the first line with ``[`` whose next line has ``{``."""
    for index in range(len(lines) - 1):
        if "[" in lines[index] and "{" in lines[index + 1]:
            return index
    return 0


def _quote_bare_fields(body: str) -> str:
    """``~...~`` fields outside JSON strings, written as JSON strings."""
    out: list[str] = []
    in_string = escaped = False
    index = 0
    while index < len(body):
        char = body[index]
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            escaped = False
            out.append(char)
        elif char == "~":
            match = FIELD.match(body, index)
            if match is None:
                raise TemplateFieldError(f"a '~' outside quotes at character {index} starts no "
                                         "~label|default|type~ field")
            out.append(json.dumps(match.group(0)))
            index = match.end()
            continue
        else:
            out.append(char)
        index += 1
    return "".join(out)
