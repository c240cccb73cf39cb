"""Job scripts from Jinja2 templates, with every user value quoted for the shell.

Templates live in the repository's top-level ``templates/`` and, in an installed package, in
``orchestrator/templates/``; a host may name its own (``template = "site-slurm.sh.j2"`` or a
path), which can ``{% extends %}`` or ``{% include %}`` the shipped ones.

Quoting: paths, the job name, environment values and every word of the command pass through
``shquote`` (``shlex.quote``); the command is an argument list joined with ``shjoin``. A value
that would end a ``#SBATCH``-like directive line (newline, carriage return, NUL) is refused,
since quoting cannot protect a comment line.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2

from orchestrator.hosts.errors import JobScriptError
from orchestrator.hosts.queues.base import JobRequest, QueueBackend, safe_job_name

_REPO_TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
_PACKAGE_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
TEMPLATE_DIRS: tuple[Path, ...] = (_REPO_TEMPLATES, _PACKAGE_TEMPLATES)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LINE_BREAKERS = ("\n", "\r", "\0")
OUTPUT_NAME = "job.out"
SCRIPT_NAME = "job.sh"


def shquote(value: Any) -> str:
    """Quote one value for a POSIX shell (paths, numbers and strings alike)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return shlex.quote(str(value))


def shjoin(values: Iterable[Any]) -> str:
    """Quote and join an argument list."""
    return " ".join(shquote(v) for v in values)


def _search_dirs() -> list[Path]:
    return [d for d in TEMPLATE_DIRS if d.is_dir()]


def find_template(name: str, override: str | None = None) -> Path:
    """The template file for ``name`` (e.g. ``slurm.sh.j2``), or for a host's ``override``
    (an existing file path, or a name looked up like ``name``)."""
    wanted = override or name
    candidate = Path(wanted).expanduser()
    if candidate.is_absolute() or os.sep in wanted:
        if candidate.is_file():
            return candidate
        raise JobScriptError(f"job template {candidate} does not exist")
    for directory in _search_dirs():
        path = directory / wanted
        if path.is_file():
            return path
    searched = ", ".join(str(d) for d in TEMPLATE_DIRS)
    raise JobScriptError(f"job template {wanted!r} not found (searched {searched})")


def template_exists(name: str) -> bool:
    try:
        find_template(name)
    except JobScriptError:
        return False
    return True


def _environment(template: Path) -> jinja2.Environment:
    search = [str(template.parent)] + [str(d) for d in _search_dirs() if d != template.parent]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(search), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["shquote"] = shquote
    env.filters["shjoin"] = shjoin
    return env


def _one_line(value: str, what: str) -> str:
    if any(c in value for c in _LINE_BREAKERS):
        raise JobScriptError(f"{what} may not contain a newline, carriage return or NUL: {value!r}")
    return value


def _check_request(request: JobRequest) -> None:
    if not request.command or not all(isinstance(a, str) for a in request.command):
        raise JobScriptError(f"job {request.name!r}: the command must be a non-empty list of strings")
    if any("\0" in a for a in request.command):
        raise JobScriptError(f"job {request.name!r}: a command argument contains NUL")
    _one_line(request.job_dir, "the job directory")
    if request.workdir is not None:
        _one_line(request.workdir, "the working directory")
    for name, value in request.env.items():
        if not _ENV_NAME.match(name):
            raise JobScriptError(f"job {request.name!r}: {name!r} is not a valid environment variable name")
        if "\0" in str(value):
            raise JobScriptError(f"job {request.name!r}: environment value of {name} contains NUL")


def script_context(backend: QueueBackend, request: JobRequest) -> dict[str, Any]:
    """What a template sees. ``directives`` are computed (and checked against the queue's
    limits) by the backend."""
    _check_request(request)
    host = backend.host
    queue = host.queue(request.queue)
    directives = [_one_line(d, "a directive") for d in backend.directives(request.resources, queue)]
    job_dir = request.job_dir.rstrip("/") or "/"
    return {
        "job_name": safe_job_name(request.name),
        "job_dir": job_dir,
        "output_path": f"{job_dir}/{OUTPUT_NAME}",
        "workdir": request.workdir or job_dir,
        "directives": directives,
        "env_setup": list(host.env_setup),
        "env": {k: str(v) for k, v in request.env.items()},
        "command": list(request.command),
        "resources": request.resources.to_dict(),
        "host_name": host.name,
        "queue_name": queue.name,
    }


def render_job_script(backend: QueueBackend, request: JobRequest, *, extra: Mapping[str, Any] | None = None) -> str:
    """The job script for ``request`` on ``backend``'s host, from the host's template or the
    queue system's default one."""
    template_path = find_template(backend.template_name, backend.host.template)
    context = script_context(backend, request)
    if extra:
        context.update(extra)
    try:
        template = _environment(template_path).get_template(template_path.name)
        return template.render(**context)
    except jinja2.TemplateError as exc:
        raise JobScriptError(f"job template {template_path}: {exc}") from None
