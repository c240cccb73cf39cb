"""Validated params of one run, and the outputs of other runs that its pointers name.

``Protocol.validate`` returns a :class:`ResolvedParams`: every declared param has a typed
value (the user's, or the default when the user gave none or the param's condition is
false). Pointer params hold a :class:`~orchestrator.objects.params.Pointer` until the
scheduler has looked them up in the store and called :meth:`ResolvedParams.bind_inputs`,
after which they hold an :class:`OutputRef` that steps can read files from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.objects.params import (
    Param,
    ParamValidationError,
    Pointer,
    PointerParam,
)
from orchestrator.protocol.errors import ProtocolError


@dataclass(frozen=True)
class OutputRef:
    """A resolved pointer: one output of a finished (or streaming) run, as the store has it.

    ``run_dir`` is the producing run's directory (absolute); ``path`` is relative to it.
    For outputs of type ``Files`` the convention is ``value = {"files": [relative paths]}``.
    """

    run_id: int
    output: str
    type_name: str
    run_dir: Path
    path: str | None = None
    value: Any = None

    def __str__(self) -> str:
        return f"{self.run_id}.{self.output}"

    def files(self) -> list[Path]:
        """Absolute paths of the output's files: ``value["files"]``, else ``path``, else none."""
        if isinstance(self.value, Mapping) and isinstance(self.value.get("files"), list):
            return [Path(self.run_dir) / name for name in self.value["files"]]
        return [Path(self.run_dir) / self.path] if self.path else []


class ResolvedParams(Mapping[str, Any]):
    """Typed param values of a run, read as ``params["box_size"]`` or ``params.box_size``.

    Immutable. Param names may not clash with this class's public attributes (the protocol
    check refuses such names), so attribute access is unambiguous.
    """

    __slots__ = ("_protocol", "_declared", "_values", "_inactive", "_ignored")

    def __init__(
        self,
        protocol: str,
        declared: Sequence[Param],
        values: Mapping[str, Any],
        inactive: frozenset[str] = frozenset(),
        ignored: frozenset[str] = frozenset(),
    ) -> None:
        self._protocol = protocol
        self._declared = {param.name: param for param in declared}
        self._values = dict(values)
        self._inactive = inactive
        self._ignored = ignored

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"protocol '{self._protocol}' has no param '{name}'") from None

    def __repr__(self) -> str:
        return f"ResolvedParams({self._protocol!r}, {self._values!r})"

    @property
    def protocol(self) -> str:
        """Name of the protocol these params belong to."""
        return self._protocol

    @property
    def ignored(self) -> frozenset[str]:
        """Params the user gave but whose condition is false (worth a warning, not an error)."""
        return self._ignored

    def is_active(self, name: str) -> bool:
        """False when the param's condition is false (its value is then its default)."""
        return name in self._values and name not in self._inactive

    def pointers(self) -> dict[str, Pointer]:
        """Active pointer params not bound yet: what the scheduler must look up in the store."""
        return {
            name: value
            for name, value in self._values.items()
            if isinstance(value, Pointer) and self.is_active(name)
        }

    def input(self, name: str) -> OutputRef:
        """The bound output of pointer param ``name``; an error if the scheduler has not bound it."""
        value = self._values.get(name)
        if isinstance(value, OutputRef):
            return value
        if name not in self._declared or not isinstance(self._declared[name], PointerParam):
            raise ProtocolError(f"protocol '{self._protocol}': '{name}' is not a pointer param")
        raise ProtocolError(
            f"protocol '{self._protocol}': input '{name}' ({value}) is not resolved yet; "
            "the scheduler binds inputs before asking for steps"
        )

    def bind_inputs(self, refs: Mapping[str, OutputRef]) -> ResolvedParams:
        """A copy with pointer params replaced by the outputs they name, types checked.

        Raises ParamValidationError (listing every mismatch) when a ref is for a param that
        is not an active pointer, names another output, or has the wrong type.
        """
        problems = []
        for name, ref in refs.items():
            param = self._declared.get(name)
            value = self._values.get(name)
            if not isinstance(param, PointerParam) or not self.is_active(name):
                problems.append(f"param '{name}': not an active pointer param, cannot bind {ref}")
            elif isinstance(value, Pointer) and value.output != ref.output:
                problems.append(f"param '{name}': points to {value}, but the bound output is {ref}")
            elif ref.type_name != param.type_name:
                problems.append(f"param '{name}': {ref} is a {ref.type_name}, expected a {param.type_name}")
        if problems:
            raise ParamValidationError(self._protocol, problems)
        values = {**self._values, **refs}
        return ResolvedParams(
            self._protocol, list(self._declared.values()), values, self._inactive, self._ignored
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values (paths and pointers as strings); ``Protocol.validate`` reads it back.

        Bound pointers are written by run id (``12.files``), so the stored params keep
        pointing at the same run even if another run later takes the same name.
        """
        result: dict[str, Any] = {}
        for name, value in self._values.items():
            if value is None or isinstance(value, OutputRef):
                result[name] = None if value is None else str(value)
            else:
                result[name] = self._declared[name].to_json(value)
        return result
