"""Two runs side by side: what differs in their params, software, inputs, steps and outputs.

Runs are compared through their provenance records (what was asked, with what software, on
which data) and then through their outputs: files the same or not (by SHA-256, matched by
their path in the run folder), and for outputs whose files differ, the numbers that say by how
much (:mod:`.metrics`). The two runs may live in different projects (a replay and its original).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.project import Project
from orchestrator.provenance.metrics import Metric, OutputSide, output_metrics
from orchestrator.store import ProjectStore, RunRecord

SECTIONS = ("params", "software", "inputs", "steps")


@dataclass(frozen=True)
class RunSide:
    """One of the two runs: its project, store, record in the store, and provenance record."""

    project: Project
    store: ProjectStore
    run: RunRecord
    record: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.project.name}:{self.run.name}"


@dataclass(frozen=True)
class Difference:
    """One thing that is not the same: ``section`` (params, software, inputs, steps), what, a, b."""

    section: str
    key: str
    a: Any
    b: Any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FileComparison:
    """The files the two runs wrote, matched by their path in the run folder."""

    identical: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.differ or self.only_a or self.only_b)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "same": self.same}


@dataclass(frozen=True)
class RunComparison:
    """Everything :func:`compare_runs` found; ``identical`` when nothing differs at all."""

    a: str
    b: str
    protocol_a: str
    protocol_b: str
    differences: list[Difference]
    files: FileComparison
    metrics: list[Metric]

    @property
    def identical(self) -> bool:
        return not self.differences and self.files.same and self.protocol_a == self.protocol_b

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "protocol_a": self.protocol_a, "protocol_b": self.protocol_b,
                "identical": self.identical, "differences": [d.to_dict() for d in self.differences],
                "files": self.files.to_dict(), "metrics": [m.to_dict() for m in self.metrics]}


def compare_runs(a: RunSide, b: RunSide) -> RunComparison:
    same_project = a.project.path == b.project.path
    differences = [*_diff("params", _params(a.record), _params(b.record)),
                   *_diff("software", _software(a.record), _software(b.record)),
                   *_diff("inputs", _inputs(a), _inputs(b)),
                   *_diff("steps", _steps(a.record, same_project), _steps(b.record, same_project))]
    files = compare_files(_written(a.record), _written(b.record))
    return RunComparison(a.label, b.label, a.run.protocol, b.run.protocol, differences, files,
                         _metrics(a, b) if not files.same else [])


def _diff(section: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> Iterator[Difference]:
    for key in sorted(set(a) | set(b)):
        value_a, value_b = a.get(key, _MISSING), b.get(key, _MISSING)
        if value_a != value_b:
            yield Difference(section, key, _shown(value_a), _shown(value_b))


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Missing()


def _shown(value: Any) -> Any:
    return None if value is _MISSING else value


def _params(record: Mapping[str, Any]) -> dict[str, Any]:
    """The run's params, pointers written by run *name* (ids differ between projects)."""
    params = dict(record["run"]["params"])
    for link in record.get("inputs", []):
        params[link["param"]] = f"{link['run']}.{link['output']}"
    return params


def _software(record: Mapping[str, Any]) -> dict[str, Any]:
    software = record.get("software", {})
    plugin = software.get("plugin", {})
    flat: dict[str, Any] = {"python": software.get("python"),
                            "plugin": f"{plugin.get('name')} {plugin.get('version')}"}
    for name, version in software.get("libraries", {}).items():
        flat[f"library {name}"] = version
    for name, program in software.get("programs", {}).items():
        flat[f"program {name}"] = program.get("version")
    return flat


def _inputs(side: RunSide) -> dict[str, Any]:
    """Raw files read (by path, with their SHA-256) and, for each input from another run, a
    digest of everything that run wrote: a changed upstream output shows here."""
    inputs: dict[str, Any] = {}
    for raw in side.record.get("files", {}).get("read_raw", []):
        inputs[f"raw file {raw['path']}"] = raw.get("sha256") or raw.get("error")
    for link in side.record.get("inputs", []):
        producer = side.store.provenance.get(int(link["run_id"]))
        written = sorted((f["path"].split("/", 2)[-1], f.get("sha256")) for f in
                         (producer or {}).get("files", {}).get("written", []))
        inputs[f"input {link['param']} ({link['run']}.{link['output']})"] = (
            _digest(written) if producer is not None else "no provenance record")
    return inputs


def _digest(items: list[tuple[str, Any]]) -> str:
    return "files sha256 " + hashlib.sha256(repr(items).encode()).hexdigest()[:16]


def _steps(record: Mapping[str, Any], with_hash: bool) -> dict[str, Any]:
    """Each step's function and state, and its content hash within one project (a hash covers
    the input files' paths, so it differs between projects even for the same work)."""
    steps = {}
    for step in record.get("steps", []):
        entry = {"func": step.get("func"), "state": step.get("state")}
        if with_hash:
            entry["hash"] = step.get("hash")
        steps[f"step {step['name']}"] = entry
    return steps


def _written(record: Mapping[str, Any]) -> dict[str, str | None]:
    """Files the run wrote, by their path inside the run folder."""
    run_dir = record.get("layout", {}).get("run_dir", "")
    written = {}
    for item in record.get("files", {}).get("written", []):
        path = item["path"]
        inside = path[len(run_dir) + 1:] if run_dir and path.startswith(run_dir + "/") else path
        written[inside] = item.get("sha256")
    return written


def compare_files(a: Mapping[str, str | None], b: Mapping[str, str | None]) -> FileComparison:
    result = FileComparison()
    for path in sorted(set(a) | set(b)):
        if path not in b:
            result.only_a.append(path)
        elif path not in a:
            result.only_b.append(path)
        elif a[path] is not None and a[path] == b[path]:
            result.identical.append(path)
        else:
            result.differ.append(path)
    return result


def _metrics(a: RunSide, b: RunSide) -> list[Metric]:
    outputs_b = {output.name: output for output in b.store.outputs.list(b.run.id)}
    metrics: list[Metric] = []
    for output in a.store.outputs.list(a.run.id):
        other = outputs_b.get(output.name)
        if other is not None:
            metrics.extend(output_metrics(OutputSide(a.store, a.project.run_dir(a.run.name), output),
                                          OutputSide(b.store, b.project.run_dir(b.run.name), other)))
    return metrics
