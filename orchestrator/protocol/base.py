"""The Protocol base class: a declarative description of one kind of processing.

A protocol is a class with a form (``params``), declared ``outputs`` and a ``steps``
method that turns validated params into a :class:`StepGraph`::

    class Sleep(Protocol):
        '''Sleep in K independent steps (scheduler overhead benchmarks).'''

        name = "testkit.sleep"
        params = [IntParam("count", default=1, min=0), FloatParam("seconds", default=1.0, min=0)]

        def steps(self, p: ResolvedParams) -> StepGraph:
            graph = StepGraph()
            for i in range(p.count):
                graph.add(f"sleep_{i}", sleep_step, {"seconds": p.seconds})
            return graph

Inputs are ``PointerParam`` entries of ``params``. Protocol classes are stateless and
constructed without arguments. The declaration is checked when the class is created, so
a plugin with a malformed protocol fails to import with a message naming it.

How the scheduler uses a protocol class ``P`` (from ``PluginRegistry.protocol(name)``)::

    params = P.validate(raw)                       # ParamValidationError lists all problems
    params = params.bind_inputs({name: OutputRef(...) for name in params.pointers()})
    graph = P().build_steps(params)                # validated StepGraph
    ... run graph.topological_order(), hashing each step with step_hash(...) ...
    outputs = P().collect_outputs(params, {step: result, ...})   # -> {name: OutputValue}
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.objects.params import Param, PointerParam
from orchestrator.protocol.errors import ProtocolDefinitionError
from orchestrator.protocol.form import check_declaration, describe_params, raise_problems, resolve_params
from orchestrator.protocol.graph import StepGraph
from orchestrator.protocol.outputs import OutputValue, collect_outputs
from orchestrator.protocol.resolved import ResolvedParams


class Protocol(abc.ABC):
    """Base of all protocols. Subclasses set the class attributes and implement ``steps``.

    - ``name``: unique, ``plugin.protocol`` (e.g. ``"testkit.sleep"``).
    - ``label``: short human title (defaults to the name).
    - ``citations``: BibTeX entries to cite when publishing results of this protocol.
    - ``params``: the form, in display order (inputs are PointerParams among them).
    - ``outputs``: output name -> type name (``"SetOfParticles"``, ``"Volume"``, ``"Files"``).

    The class docstring is the protocol's help text.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    citations: ClassVar[Sequence[str]] = ()
    params: ClassVar[Sequence[Param]] = ()
    outputs: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Intermediate abstract bases (no name of their own) are checked through their subclasses.
        if "name" in cls.__dict__:
            check_declaration(cls.name, cls.params, cls.outputs, cls.citations)
            if getattr(cls.steps, "__isabstractmethod__", False):
                raise ProtocolDefinitionError(f"protocol {cls.name!r}: define steps(self, params)")

    @abc.abstractmethod
    def steps(self, params: ResolvedParams) -> StepGraph:
        """Build the run's steps from its validated (and input-bound) params."""

    def check_params(self, params: ResolvedParams) -> list[str]:
        """Problems that involve several params (e.g. "min_size must be < max_size").

        Override to add them; each should start with ``param 'NAME':``. Called by
        ``validate`` only when every param is valid on its own.
        """
        return []

    def summary(self, params: ResolvedParams, outputs: Mapping[str, OutputValue]) -> list[str]:
        """Lines describing a finished run, for ``orch status`` and the web page."""
        return [f"{name}: {output.type_name}" for name, output in outputs.items()]

    @classmethod
    def validate(cls, raw_params: Mapping[str, Any], *, base_dir: Path | None = None) -> ResolvedParams:
        """Validate params given as CLI strings or JSON values; raise ParamValidationError.

        Applies defaults and conditions, coerces, checks bounds, choices, custom validators
        and ``check_params``; the error lists every problem, each naming its param; unknown
        params get a "did you mean". ``base_dir`` anchors relative paths of PathParams.
        """
        cls._require_concrete()
        resolved, problems = resolve_params(cls.name, list(cls.params), raw_params, base_dir=base_dir)
        raise_problems(cls.name, problems)
        raise_problems(cls.name, cls().check_params(resolved))
        return resolved

    def build_steps(self, params: ResolvedParams) -> StepGraph:
        """Call ``steps`` and check the graph it returns (missing deps, cycles)."""
        graph = self.steps(params)
        if not isinstance(graph, StepGraph):
            raise ProtocolDefinitionError(
                f"protocol '{self.name}': steps() returned {type(graph).__name__}, expected a StepGraph"
            )
        graph.validate()
        return graph

    def collect_outputs(
        self, params: ResolvedParams, results: Mapping[str, Mapping[str, Any] | None]
    ) -> dict[str, OutputValue]:
        """The run's outputs from its steps' results (``step name -> result dict``).

        The default reads ``result["outputs"]`` of every step (see
        :mod:`orchestrator.protocol.outputs`); override for outputs computed otherwise.
        """
        return collect_outputs(self.name, dict(self.outputs), results)

    @classmethod
    def input_params(cls) -> list[PointerParam]:
        """The pointer params: what this protocol takes from other runs."""
        return [param for param in cls.params if isinstance(param, PointerParam)]

    @classmethod
    def help_text(cls) -> str:
        """The class docstring, cleaned (the protocol's help)."""
        return inspect.cleandoc(cls.__doc__) if cls.__doc__ else ""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The protocol as JSON-ready data: what the CLI help and the web form render."""
        cls._require_concrete()
        return {
            "name": cls.name,
            "label": cls.label or cls.name,
            "help": cls.help_text(),
            "citations": list(cls.citations),
            "params": describe_params(list(cls.params)),
            "inputs": [param.name for param in cls.input_params()],
            "outputs": dict(cls.outputs),
        }

    @classmethod
    def _require_concrete(cls) -> None:
        if not cls.name:
            raise ProtocolDefinitionError(f"{cls.__qualname__} has no protocol name; it cannot be used")
