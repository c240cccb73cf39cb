"""The shape of a Scipion workflow file: its protocols, their params and their pointers.

``Project.exportProtocols`` (pyworkflow 3) writes a JSON list with one object per protocol,
from ``Protocol.getDefinitionDict``: ``object.className``, ``object.id`` (a string of
digits), ``object.label``, ``object.comment``, ``_useQueue``, ``_prerequisites``,
``_queueParams``, then every param of the protocol's form by name (typed JSON values:
numbers, booleans, strings, null; an enum is its choice's index). A pointer param is the
string ``"ID.outputName"`` naming the producing protocol of the same file (or, in a
partial workflow, of the project it came from); a pointer to a whole protocol is ``"ID."``;
a list of pointers is a list of such strings. Templates are the same with some values
written as ``~label|default|type~`` fields (:mod:`.template`).

This module checks that shape and reads it into :class:`ScipionProtocol` records; every
error is a :class:`WorkflowError` naming the file and the protocol (index, id, label).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.interop.scipion.template import TemplatedValue, TemplateFieldError, split_template_text, templated
from orchestrator.workflow import WorkflowError
from orchestrator.workflow.document import decode_json, read_text_file

CLASS_KEY, ID_KEY, LABEL_KEY, COMMENT_KEY = "object.className", "object.id", "object.label", "object.comment"
#: keys of getDefinitionDict that are about the protocol, not params of its form
META_KEYS = frozenset({CLASS_KEY, ID_KEY, LABEL_KEY, COMMENT_KEY, "_useQueue", "_prerequisites", "_queueParams",
                       "forceSchedule"})
_POINTER = re.compile(r"^(?P<id>\d{1,18})(?:\.(?P<output>[A-Za-z_][A-Za-z0-9_]*)?(?P<rest>(?:\.[^.]+)*))?$")
_LOOKS_LIKE_POINTER = re.compile(r"^\d{1,18}\.[A-Za-z_][A-Za-z0-9_]*$")
_SHOWN = 60


def shown(value: Any) -> str:
    """A value as a message quotes it, cut when long."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4,300 digits
        return "an integer of thousands of digits"
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"


@dataclass(frozen=True)
class ScipionPointer:
    """``ID.output`` (``output`` empty for a pointer to a whole protocol, ``rest`` for deeper parts)."""

    protocol_id: str
    output: str
    rest: str = ""

    def __str__(self) -> str:
        return f"{self.protocol_id}.{self.output}{self.rest}"


def parse_pointer(text: str) -> ScipionPointer | None:
    """The pointer written ``text``, or None when it is not one."""
    match = _POINTER.match(text.strip())
    if match is None:
        return None
    return ScipionPointer(str(int(match["id"])), match["output"] or "", match["rest"] or "")


def pointer_like(value: Any) -> list[ScipionPointer]:
    """The pointers a param of an unknown protocol seems to hold (``"5.outputParticles"`` or a list)."""
    items = value if isinstance(value, list) else [value]
    found = [parse_pointer(item) for item in items if isinstance(item, str) and _LOOKS_LIKE_POINTER.match(item)]
    return [pointer for pointer in found if pointer is not None]


@dataclass(frozen=True)
class ScipionProtocol:
    """One protocol of the file: its identity, its form's params and what templating they hold.

    ``values`` are the params with each template field replaced by its default;
    ``fields`` says which params held fields.
    """

    index: int
    id: str
    class_name: str
    label: str
    comment: str
    values: dict[str, Any]
    fields: dict[str, TemplatedValue] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """How messages name it: ``Scipion protocol 5 ('relion - 2D classification', ProtRelionClassify2D)``."""
        label = f"{shown(self.label)}, " if self.label else ""
        return f"Scipion protocol {self.id} ({label}{self.class_name})"


@dataclass(frozen=True)
class ScipionFile:
    """A Scipion workflow or template file as read: the JSON document and a template's description."""

    document: Any
    description: str = ""


def is_scipion_workflow(document: Any) -> bool:
    """Whether a decoded JSON document is a Scipion export or template (a list of protocol objects).

    One object with ``object.className`` is enough: a file that looks like Scipion's and has
    a broken entry should get Scipion's error messages, not our own format's.
    """
    return isinstance(document, list) and any(isinstance(item, dict) and CLASS_KEY in item for item in document)


def load_scipion_file(path: Path | str) -> ScipionFile:
    """Read a Scipion workflow (``.json``) or template (``.json.template``, description lines first)."""
    path = Path(path)
    return decode_scipion_text(read_text_file(path, "Scipion workflow file"), path)


def decode_scipion_text(text: str, source: Path) -> ScipionFile:
    """The document of a Scipion workflow or template text; errors name ``source``."""
    try:
        body, description = split_template_text(text)
    except TemplateFieldError as exc:
        raise WorkflowError(f"{source}: {exc}") from None
    return ScipionFile(decode_json(body, source), description)


def parse_protocols(document: Any, source: Path) -> list[ScipionProtocol]:
    """The protocols of a decoded Scipion document, shape-checked; errors name ``source``."""
    if not isinstance(document, list):
        raise WorkflowError(f"{source}: not a Scipion workflow: expected a JSON list of protocols (what Scipion's "
                            f"Export writes), got {_json_type(document)}")
    if not document:
        raise WorkflowError(f"{source}: the Scipion workflow has no protocols")
    protocols: list[ScipionProtocol] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(document, start=1):
        protocol = _parse_protocol(source, index, entry)
        if protocol.id in seen:
            raise WorkflowError(f"{source}: {protocol.where}: object.id {protocol.id} is also the id of "
                                f"protocol {seen[protocol.id]} of the file; each protocol needs its own")
        seen[protocol.id] = index
        protocols.append(protocol)
    return protocols


def _parse_protocol(source: Path, index: int, entry: Any) -> ScipionProtocol:
    where = f"{source}: protocol {index} of the list"
    if not isinstance(entry, dict):
        raise WorkflowError(f"{where}: expected an object with \"{CLASS_KEY}\" and its params, got {_json_type(entry)}")
    label = entry.get(LABEL_KEY)
    label = label.strip() if isinstance(label, str) else ""
    raw_id = entry.get(ID_KEY)
    if label:
        where = f"{where} ({shown(label)})"
    class_name = entry.get(CLASS_KEY)
    if not isinstance(class_name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,199}", class_name):
        raise WorkflowError(f'{where}: "{CLASS_KEY}" is missing or not a Python class name '
                            f"(got {shown(class_name)}); Scipion writes e.g. \"ProtImportMovies\"")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool) and 0 <= raw_id < 10**18:
        protocol_id = str(raw_id)
    elif isinstance(raw_id, str) and raw_id.strip().isascii() and raw_id.strip().isdigit() and len(raw_id) <= 18:
        protocol_id = str(int(raw_id))
    else:
        raise WorkflowError(f'{where}: "{ID_KEY}" is missing or not a number (got {shown(raw_id)}); '
                            'pointers of other protocols name it ("5.outputMicrographs")')
    comment = entry.get(COMMENT_KEY)
    protocol = ScipionProtocol(index, protocol_id, class_name, label,
                               comment.strip() if isinstance(comment, str) else "", {},
                               meta={key: value for key, value in entry.items() if key in META_KEYS})
    for name, value in entry.items():
        if name in META_KEYS:
            continue
        try:
            found = templated(value)
        except TemplateFieldError as exc:
            raise WorkflowError(f"{source}: {protocol.where}: param '{name}': {exc}") from None
        if found is not None:
            protocol.fields[name] = found
            value = found.value
        protocol.values[name] = value
    return protocol


def pointer_of(protocol: ScipionProtocol, name: str, source: Path) -> ScipionPointer | list[Any] | None:
    """The pointer param ``name`` of ``protocol``: None when unset, a list for a PointerList.

    A value that is no pointer is an error naming the file, the protocol and the param.
    """
    value = protocol.values.get(name)
    if value is None or value == "" or isinstance(value, list):
        return value or None
    pointer = parse_pointer(value) if isinstance(value, str) and name not in protocol.fields else None
    if pointer is None:
        raise WorkflowError(f"{source}: {protocol.where}: param '{name}': bad pointer {shown(value)}; Scipion "
                            "writes an input as 'ID.outputName' (e.g. '2.outputMovies'), ID being the "
                            "object.id of the protocol that makes it")
    return pointer


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if not isinstance(value, float) or math.isfinite(value) else "a non-finite number"
    names: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)
