"""Job scripts from Jinja2 templates, every user value quoted for whoever reads it.

Templates live in the repository's top-level ``templates/`` and, in an installed package, in
``orchestrator/templates/`` (one per queue system, named by its backend's ``template_name``);
a host may name its own (``template = "site.sh.j2"`` or a path), which can ``{% extends %}``
or ``{% include %}`` the shipped ones.

Quoting has two readers. The queue's own parser reads the directive lines at the top, each
queue system by its own rules: values there go through the backend (``directive_value``
filter, and ``output_directive`` / ``workdir_directive`` computed here). When a queue cannot
carry a path in a directive, the script does without it: it always changes to its working
directory itself, and redirects its own output when the queue cannot be told where it goes.
The shell reads the rest: paths, environment values and every word of the command pass
through ``shquote`` (``shlex.quote``); the command is an argument list joined with
``shjoin``. A path or directive with a line break or NUL is refused, naming the host: no
queue's directive line can hold one.
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
from orchestrator.hosts.queues.base import LINE_BREAKERS, JobRequest, QueueBackend, safe_job_name

_REPO_TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
_PACKAGE_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
TEMPLATE_DIRS: tuple[Path, ...] = (_REPO_TEMPLATES, _PACKAGE_TEMPLATES)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NULL_OUTPUT = "/dev/null"
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
    """The template file for ``name`` (a backend's ``template_name``), or for a host's ``override``
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


def _environment(template: Path, backend: QueueBackend) -> jinja2.Environment:
    search = [str(template.parent)] + [str(d) for d in _search_dirs() if d != template.parent]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(search), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["shquote"] = shquote
    env.filters["shjoin"] = shjoin
    env.filters["directive_value"] = lambda value: directive_value(backend, str(value))
    return env


def directive_value(backend: QueueBackend, value: str) -> str:
    """``value`` quoted for ``backend``'s parser of directive lines; an error naming the host
    and the value when that parser cannot carry it."""
    quoted = backend.quote_directive(value)
    if quoted is None:
        raise JobScriptError(f"host {backend.host.name!r}: {backend.display_name} cannot read {value!r} "
                             f"from a {backend.directive_prefix} line")
    return quoted


def _one_line(backend: QueueBackend, value: str, what: str) -> str:
    if any(c in value for c in LINE_BREAKERS):
        raise JobScriptError(f"host {backend.host.name!r}: {what} may not contain a newline, carriage return or "
                             f"NUL (no {backend.directive_prefix} line can hold one): {value!r}")
    return value


def _check_request(backend: QueueBackend, request: JobRequest) -> None:
    if not request.command or not all(isinstance(a, str) for a in request.command):
        raise JobScriptError(f"job {request.name!r}: the command must be a non-empty list of strings")
    if any("\0" in a for a in request.command):
        raise JobScriptError(f"job {request.name!r}: a command argument contains NUL")
    _one_line(backend, request.job_dir, "the job directory")
    if request.workdir is not None:
        _one_line(backend, request.workdir, "the working directory")
    for name, value in request.env.items():
        if not _ENV_NAME.match(name):
            raise JobScriptError(f"job {request.name!r}: {name!r} is not a valid environment variable name")
        if "\0" in str(value):
            raise JobScriptError(f"job {request.name!r}: environment value of {name} contains NUL")


def script_context(backend: QueueBackend, request: JobRequest) -> dict[str, Any]:
    """What a template sees. ``directives`` are computed (and checked against the queue's
    limits) by the backend, and so are the directives that carry the output path and the
    working directory (None: the queue cannot carry it, the script does it itself)."""
    _check_request(backend, request)
    host = backend.host
    queue = host.queue(request.queue)
    directives = [_one_line(backend, d, "a directive") for d in backend.directives(request.resources, queue)]
    job_dir = request.job_dir.rstrip("/") or "/"
    output_path = f"{job_dir}/{OUTPUT_NAME}"
    workdir = request.workdir or job_dir
    output_directive = backend.output_directive(output_path)
    output_in_body = output_directive is None
    if output_directive is None:
        output_directive = backend.output_directive(NULL_OUTPUT)
        if output_directive is None:
            raise JobScriptError(f"host {host.name!r}: the {backend.display_name} backend can send a job's "
                                 f"output neither to {output_path!r} nor to {NULL_OUTPUT}")
    return {
        "job_name": safe_job_name(request.name),
        "job_dir": job_dir,
        "output_path": output_path,
        "output_directive": output_directive,
        "output_in_body": output_in_body,
        "workdir": workdir,
        "workdir_directive": backend.workdir_directive(workdir),
        "job_exports": backend.job_exports(),
        "directive_prefix": backend.directive_prefix,
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
        template = _environment(template_path, backend).get_template(template_path.name)
        return template.render(**context)
    except jinja2.TemplateError as exc:
        raise JobScriptError(f"job template {template_path}: {exc}") from None
