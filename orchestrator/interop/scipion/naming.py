"""Run and input names made from Scipion labels ("relion - 2D classification" -> relion_2D_classification)."""

from __future__ import annotations

import re

from orchestrator.names import MAX_NAME_LENGTH, name_problem

_PLUGIN_PREFIX = re.compile(r"^\s*[A-Za-z0-9]+ - (?=\S)")  # Scipion's default labels: "relion - 2D classification"
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.]*|[A-Za-z0-9]")
INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_MAX_INPUT_LENGTH = 100


def _words(text: str) -> list[str]:
    """The ASCII words of ``text``: what survives of a label in a name (dashes and spaces become ``_``)."""
    return _WORD.findall(text.encode("ascii", "ignore").decode())


def run_name(label: str, class_name: str, taken: set[str]) -> str:
    """A valid, unused run name from a Scipion label (or the class name when the label gives none).

    Scipion's default labels read ``plugin - what`` (``relion - 2D classification``): the plugin
    is left out, the words are joined by ``_``, cut to fit, with ``-2``, ``-3`` ... when the
    name is taken. The name is added to ``taken``.
    """
    base = "_".join(_words(_PLUGIN_PREFIX.sub("", label))).strip(".") or class_name
    if base.isdigit():
        base = f"run-{base}"
    base = base[:MAX_NAME_LENGTH - 4].rstrip("._-") or "run"
    name, copy = base, 1
    while name in taken or name_problem(name, is_run=True) is not None:
        copy += 1
        name = f"{base}-{copy}"
        if copy > 10_000:  # cannot happen with valid bases; keeps a broken rule from looping forever
            raise RuntimeError(f"no free run name for {label!r}")
    taken.add(name)
    return name


def input_name(text: str, taken: set[str]) -> str:
    """A valid, unused input name (``[A-Za-z_][A-Za-z0-9_.-]*``) from a label or ``run.param``."""
    base = "_".join(_words(text)) or "input"
    if not re.match(r"[A-Za-z_]", base):
        base = f"_{base}"
    base = base[:_MAX_INPUT_LENGTH - 6]
    name, copy = base, 1
    while name in taken:
        copy += 1
        name = f"{base}_{copy}"
    taken.add(name)
    return name
