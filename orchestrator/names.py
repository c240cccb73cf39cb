"""The rules for run and project names: the one place that says what a name may be.

A run's name becomes a folder (``<project>/runs/<name>``) and a project's name a key the
user types; both appear in shell commands, job names and log paths. So a name is a single,
plain path component a user can type and read: ASCII letters, digits, ``_``, ``.`` and
``-`` (``motioncorr-1``, ``2D_classes.v2``), starting with a letter or digit (no hidden
``.name``, no ``..``, no ``-name`` that reads as an option), at most :data:`MAX_NAME_LENGTH`
characters. ASCII only, so that look-alikes (Cyrillic ``а``, fullwidth ``／``) cannot pass
for another name or for a separator. A run name is not only digits either: ``12`` already
means "run id 12" wherever a run is named.

Every way a run or a project gets a name goes through here: ``RunTable.create`` (the CLI's
``--name``, the Python API's ``name=``, the default ``<protocol>-<id>``), workflow files
(``_parse_run``) and ``Project.create``. Each caller says which param it checks, so the
error names what the user typed.
"""

from __future__ import annotations

import re
import unicodedata

from orchestrator.errors import UsageError

MAX_NAME_LENGTH = 100
#: the name of the built-in host, this machine: the default host of every run
LOCAL_HOST = "local"
RUN_NAME_PARAM = "run name (--name, name=)"
PROJECT_NAME_PARAM = "project name"
RULE = (f"a name is letters, digits, '_', '.' and '-', starts with a letter or digit and has at most "
        f"{MAX_NAME_LENGTH} characters (e.g. motioncorr-1, 2D_classes.v2)")

_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._-]", re.ASCII)
_SHOWN_CHARS = 40


class InvalidNameError(UsageError):
    """A run or project name breaks the rules; the message names the param and the rule."""


def shown(name: object) -> str:
    """``name`` as it may appear in a message: quoted, escaped, and cut when very long."""
    if not isinstance(name, str):
        return repr(name)
    if len(name) <= _SHOWN_CHARS:
        return repr(name)
    return f"{name[:_SHOWN_CHARS]!r}... ({len(name)} characters)"


def name_problem(name: object, *, is_run: bool) -> str | None:
    """Why ``name`` is not a valid run (or project) name, or None when it is."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long, more than {MAX_NAME_LENGTH}"
    bad = _UNSAFE_CHAR.search(name)
    if bad is not None:
        return _char_problem(bad.group())
    if name in (".", "..") or not name[0].isalnum():
        return f"starts with {name[0]!r}; start with a letter or digit (no hidden or '..' names)"
    if is_run and name.isdigit():
        return "is only digits, which reads as a run id; add a letter (e.g. run-12)"
    return None


def _char_problem(char: str) -> str:
    if char in "/\\":
        return f"contains a path separator {char!r}"
    if unicodedata.category(char).startswith("C"):
        return f"contains a control character {char!r}"
    if ord(char) > 127:
        label = unicodedata.name(char, "unnamed character").lower()
        return f"contains {char!r} (U+{ord(char):04X}, {label}), which is not an ASCII letter or digit"
    return f"contains {char!r}"


def check_run_name(name: object, param: str = RUN_NAME_PARAM) -> str:
    """``name`` when it is a valid run name, else :class:`InvalidNameError` naming ``param``."""
    return _checked(name, param, is_run=True)


def check_project_name(name: object, param: str = PROJECT_NAME_PARAM) -> str:
    """``name`` when it is a valid project name, else :class:`InvalidNameError` naming ``param``."""
    return _checked(name, param, is_run=False)


def _checked(name: object, param: str, *, is_run: bool) -> str:
    problem = name_problem(name, is_run=is_run)
    if problem is not None:
        raise InvalidNameError(f"{param} {shown(name)}: {problem}; {RULE}")
    assert isinstance(name, str)
    return name


def default_run_name(protocol: str, run_id: int, copy: int = 0) -> str:
    """``<protocol>-<id>`` (``motioncorr-12`` for ``emtools.motioncorr``), made valid whatever the
    protocol's name: unsafe characters become ``_`` and the protocol part is cut to fit.
    ``copy`` > 0 gives ``motioncorr-12.<copy>``, for when a user already took the plain name."""
    suffix = f"-{run_id}" + (f".{copy}" if copy else "")
    short = _UNSAFE_CHAR.sub("_", protocol.rsplit(".", 1)[-1]).lstrip("._-")
    short = short[:MAX_NAME_LENGTH - len(suffix)] or "run"
    return check_run_name(short + suffix, "default run name")
