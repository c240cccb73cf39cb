"""Fuzzing hosts files: TOML documents built from the real keys with wrong types and values.

Whatever the document (invalid TOML, non-UTF-8 bytes, a huge memory size, a walltime of
5,000 digits, ``~nosuchuser`` paths, 5,000-character names, broken format strings), loading
it either gives host records or raises :class:`HostConfigError` whose every problem line names
the file, and, for a value at fault, the host and the key.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

from fuzz_support import FUZZ, our_error_or_value
from hypothesis import event, given
from hypothesis import strategies as st

from orchestrator.hosts.config.loader import load_hosts_file
from orchestrator.hosts.config.model import HostConfig
from orchestrator.hosts.errors import HostConfigError

# The documented keys (README, hosts.toml reference); the fuzzer also invents unknown ones.
HOST_KEYS = ["kind", "description", "work_dir", "env_setup", "shared_fs", "cores", "memory", "gpus", "gpu_type",
             "gpu_sharing", "workers", "python", "default_queue", "extra_directives", "max_jobs", "template", "user"]
QUEUE_KEYS = ["cores", "memory", "gpus", "gpu_type", "walltime", "max_nodes", "gpu_request", "memory_request",
              "parallel_env", "extra_directives", "max_jobs"]
PILOT_KEYS = ["enabled", "queue", "cores", "memory", "walltime", "processes", "gpus", "min_pilots", "max_pilots",
              "interface", "extra_directives", "local_directory", "python"]
SSH_KEYS = ["host", "port", "user", "key", "known_hosts"]
KINDS = ["local", "ssh", "slurm", "pbs", "sge"]

HOSTILE_STRINGS = [
    "", " ", "16G", "1.5T", "500M", "0G", "04:00:00", "2-00:00:00", "90:00", "~", "~nosuchuser_orch/key",
    "~/key", "/abs/path", "relative/path", "{n}", "{type}", "{", "}", "{n!r}", "{n:{x}}", "{a.b}", "{0}",
    "--gres=gpu:{type}:{n}", "a\nb", "a\x00b", "gpu", "default", "slurm", "local", "é😀",
    "9" * 400 + "G", "9" * 5000 + "G", "9" * 5000, "9" * 5000 + "-00:00:00", "99999999999-00:00:00",
    "1" + "0" * 30 + ":00:00", "x" * 5000, "/" + "x" * 5000, "1e999G", "inf", "nan",
]
HOSTILE_OTHERS = [0, -1, 1, 2**31, 2**63 - 1, -(2**63), 0.5, math.nan, math.inf, True, [], ["a", 1], {}, {"a": 1},
                  datetime.date(1979, 5, 27)]
hostile_strings = st.one_of(
    st.sampled_from(HOSTILE_STRINGS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
)
scalars = st.one_of(
    hostile_strings,
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.just(datetime.date(1979, 5, 27)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(hostile_strings, inner, max_size=3)),
    max_leaves=6,
)


def toml(value: Any) -> str:
    """A value as TOML (inline tables for dicts): the standard library only reads TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        # a JSON string is a TOML basic string once DEL is escaped too (JSON leaves it bare)
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml(k)} = {toml(v)}" for k, v in value.items()) + "}"


def _table(draw: st.DrawFn, keys: list[str]) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
    table = {key: draw(values) for key in chosen}
    if draw(st.integers(0, 9)) == 0:
        table[draw(hostile_strings)] = draw(values)  # an unknown (or empty, or odd) key
    return table


@st.composite
def host_documents(draw: st.DrawFn) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.one_of(st.sampled_from(["cluster", "gpu-box", "local", "a.b"]), hostile_strings))
        host = _table(draw, HOST_KEYS)
        host["kind"] = draw(st.one_of(st.sampled_from(KINDS), values))
        if draw(st.booleans()):
            host["queues"] = {draw(st.one_of(st.just("gpu"), hostile_strings)): _table(draw, QUEUE_KEYS)}
        if draw(st.booleans()):
            host["pilot"] = _table(draw, PILOT_KEYS)
        if draw(st.booleans()):
            host["ssh"] = _table(draw, SSH_KEYS)
        if draw(st.integers(0, 3)) == 0:
            host["path_map"] = draw(st.dictionaries(hostile_strings, values, max_size=2))
        hosts[name] = host if draw(st.integers(0, 19)) else draw(values)
    return {"hosts": hosts}


def _check(path: Path, *, in_hypothesis: bool = True) -> dict[str, HostConfig] | HostConfigError:
    outcome = our_error_or_value(lambda: load_hosts_file(path), HostConfigError, [str(path)])
    if isinstance(outcome, HostConfigError):
        if in_hypothesis:
            event("refused")
        lines = str(outcome).splitlines()
        problems = lines[1:] if lines[0].endswith(":") and "problem(s)" in lines[0] else lines
        for problem in problems:
            assert problem.startswith(f"{path}: "), f"problem does not start with the file: {problem}"
        return outcome
    if in_hypothesis:
        event("loaded")
    for name, host in outcome.items():
        assert host.name == name and host.source == path
    return outcome


@FUZZ
@given(document=host_documents())
def test_documents_from_the_real_keys(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "hosts.toml"
    text = "[hosts]\n" + "".join(f"{toml(name)} = {toml(host)}\n" for name, host in document["hosts"].items())
    path.write_text(text, encoding="utf-8")
    _check(path)


VALID = {
    "cluster": {
        "kind": "slurm", "work_dir": "/scratch/orch", "shared_fs": True, "max_jobs": 10,
        "queues": {"gpu": {"cores": 32, "memory": "256G", "gpus": 4, "gpu_type": "a100",
                           "gpu_request": "--gres=gpu:{type}:{n}", "walltime": "1-00:00:00"}},
        "pilot": {"cores": 8, "memory": "16G", "walltime": "02:00:00", "processes": 8},
    },
    "box": {"kind": "ssh", "work_dir": "/data/orch", "cores": 8, "memory": "32G", "gpus": 1,
            "ssh": {"host": "box.example.org", "port": 22, "user": "em", "key": "~/.ssh/id_ed25519"}},
}
PLACES = ([("cluster", key) for key in HOST_KEYS] + [("cluster", f"queues.gpu.{key}") for key in QUEUE_KEYS]
          + [("cluster", f"pilot.{key}") for key in PILOT_KEYS] + [("box", key) for key in HOST_KEYS]
          + [("box", f"ssh.{key}") for key in SSH_KEYS])


def _valid_text() -> str:
    return "[hosts]\n" + "".join(f"{name} = {toml(host)}\n" for name, host in VALID.items())


def test_the_document_the_next_test_spoils_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text(_valid_text())
    assert set(load_hosts_file(path)) == {"cluster", "box"}


@FUZZ
@given(place=st.sampled_from(PLACES), value=values)
def test_one_wrong_value_is_named_by_host_and_key(tmp_path: Path, place: tuple[str, str], value: Any) -> None:
    host_name, dotted = place
    document = json.loads(json.dumps(VALID))
    table = document[host_name]
    *parents, key = dotted.split(".")
    for parent in parents:
        table = table[parent]
    table[key] = value
    path = tmp_path / "hosts.toml"
    path.write_text("[hosts]\n" + "".join(f"{name} = {toml(host)}\n" for name, host in document.items()))
    outcome = _check(path)
    if isinstance(outcome, HostConfigError):
        # the problem is about this host, and names a key of it (this one, or one it conflicts with)
        assert f"host {host_name!r}: key '" in str(outcome), str(outcome)


def test_every_key_with_every_hostile_value(tmp_path: Path) -> None:
    """Exhaustive where random choice would be thin: each documented key gets each hostile value."""
    path = tmp_path / "hosts.toml"
    for host_name, dotted in PLACES:
        for value in HOSTILE_STRINGS + HOSTILE_OTHERS:
            document = json.loads(json.dumps(VALID))
            table = document[host_name]
            *parents, key = dotted.split(".")
            for parent in parents:
                table = table[parent]
            table[key] = value
            path.write_text("[hosts]\n" + "".join(f"{name} = {toml(host)}\n" for name, host in document.items()))
            outcome = _check(path, in_hypothesis=False)
            if isinstance(outcome, HostConfigError):
                assert f"host {host_name!r}: key '" in str(outcome), str(outcome)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hosts.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _check(path)


@FUZZ
@given(data=st.binary(min_size=1, max_size=100))
def test_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "hosts.toml"
    path.write_bytes(b'[hosts.a]\nkind = "local"\ndescription = "' + data + b'"\n')
    _check(path)


def test_non_utf8_file_names_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_bytes(b'[hosts.a]\nkind = "local"\ndescription = "caf\xe9"\n')
    must_name = [str(path), "line 3", "byte 43", "UTF-8"]
    error = our_error_or_value(lambda: load_hosts_file(path), HostConfigError, must_name)
    assert isinstance(error, HostConfigError)
