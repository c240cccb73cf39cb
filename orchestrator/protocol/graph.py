"""The step graph of one run: a DAG of steps, built by the protocol, walked by the scheduler.

A protocol builds it with :meth:`StepGraph.add`; dependencies may name steps added later,
so the whole graph is checked by :meth:`StepGraph.validate` (missing deps, cycles) once it
is complete. Orders are deterministic: among steps that are ready at the same time, the
one added first comes first, so logs and benchmarks are reproducible.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

from orchestrator.objects.params import suggest
from orchestrator.protocol.errors import StepDefinitionError, StepFunctionError, StepGraphError
from orchestrator.protocol.steps import Resources, Step, function_path


class StepGraph:
    """Steps of one run keyed by name, in insertion order, with their dependency edges."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: dict[str, Step] = {}
        self._dependents: dict[str, list[str]] | None = None
        for step in steps:
            self.insert(step)

    def add(
        self,
        name: str,
        func: Callable[..., Any] | str,
        args: Mapping[str, Any] | None = None,
        *,
        deps: Sequence[Step | str] = (),
        resources: Resources | None = None,
        inputs: Sequence[str | os.PathLike[str]] = (),
        outputs: Sequence[str | os.PathLike[str]] = (),
        retries: int | None = None,
    ) -> Step:
        """Add a step and return it (pass it to ``deps=`` of later steps).

        ``func`` is a module-level function (its import path is stored) or the path itself.
        A function is also checked to accept ``(ctx, **args)``, so a misspelt argument is
        reported now, naming the step, rather than as a TypeError in a worker.
        """
        args = dict(args or {})
        if callable(func):
            path, signature = _inspect_function(func)
            _check_signature(name, path, signature, args)
        else:
            path = func
        step = Step(
            name=name,
            func=path,
            args=args,
            resources=resources or Resources(),
            deps=tuple(dep.name if isinstance(dep, Step) else dep for dep in deps),
            # Step.__post_init__ checks the paths and turns PathLike into str.
            inputs=cast(tuple[str, ...], tuple(inputs)),
            outputs=cast(tuple[str, ...], tuple(outputs)),
            retries=retries,
        )
        return self.insert(step)

    def insert(self, step: Step) -> Step:
        """Add an already built step (e.g. one read back from the store)."""
        if step.name in self._steps:
            raise StepGraphError(f"duplicate step name '{step.name}': step names must be unique in a run")
        self._steps[step.name] = step
        self._dependents = None
        return step

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self._steps.values())

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    def __getitem__(self, name: str) -> Step:
        self._require(name)
        return self._steps[name]

    def _require(self, name: str) -> None:
        if name not in self._steps:
            raise StepGraphError(f"no step '{name}' in this run{suggest(name, list(self._steps))}")

    def names(self) -> list[str]:
        """Step names in insertion order."""
        return list(self._steps)

    def validate(self) -> None:
        """Raise StepGraphError on a dependency that is not a step, or on a cycle (named)."""
        for step in self._steps.values():
            for dep in step.deps:
                if dep not in self._steps:
                    hint = suggest(dep, list(self._steps))
                    raise StepGraphError(f"step '{step.name}' depends on '{dep}', which is not a step{hint}")
        cycle = self._find_cycle()
        if cycle:
            raise StepGraphError(
                "steps form a cycle: " + " -> ".join(cycle) + " (each step depends on the next)"
            )

    def topological_order(self) -> list[Step]:
        """All steps, each after its deps; ties keep insertion order. Validates first."""
        self.validate()
        index = {name: i for i, name in enumerate(self._steps)}
        waiting = {name: len(set(step.deps)) for name, step in self._steps.items()}
        ready = [index[name] for name, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        names = list(self._steps)
        dependents = self._dependents_map()
        order: list[Step] = []
        while ready:
            name = names[heapq.heappop(ready)]
            order.append(self._steps[name])
            for child in dependents[name]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, index[child])
        return order

    def dependents(self, name: str) -> list[str]:
        """Steps that depend directly on ``name``."""
        self._require(name)
        return list(self._dependents_map()[name])

    def downstream_of(self, name: str) -> list[str]:
        """Every step that depends on ``name`` directly or transitively, in topological order.

        ``name`` itself is not included. The scheduler re-runs a changed step and these.
        """
        self._require(name)
        return self._closure(name, self._dependents_map())

    def upstream_of(self, name: str) -> list[str]:
        """Every step ``name`` depends on, directly or transitively, in topological order."""
        self._require(name)
        return self._closure(name, {n: list(dict.fromkeys(s.deps)) for n, s in self._steps.items()})

    def to_dicts(self) -> list[dict[str, Any]]:
        """JSON-ready steps in insertion order; ``StepGraph.from_dicts`` reads them back."""
        return [step.to_dict() for step in self._steps.values()]

    @classmethod
    def from_dicts(cls, items: Iterable[Mapping[str, Any]]) -> StepGraph:
        graph = cls(Step.from_dict(item) for item in items)
        graph.validate()
        return graph

    def _closure(self, start: str, edges: Mapping[str, Sequence[str]]) -> list[str]:
        seen: set[str] = set()
        stack = list(edges.get(start, ()))
        while stack:
            name = stack.pop()
            if name not in seen and name in self._steps:
                seen.add(name)
                stack.extend(edges.get(name, ()))
        return [step.name for step in self.topological_order() if step.name in seen]

    def _dependents_map(self) -> dict[str, list[str]]:
        if self._dependents is None:
            dependents: dict[str, list[str]] = {name: [] for name in self._steps}
            for step in self._steps.values():
                for dep in dict.fromkeys(step.deps):
                    if dep in dependents:
                        dependents[dep].append(step.name)
            self._dependents = dependents
        return self._dependents

    def _find_cycle(self) -> list[str] | None:
        """Iterative depth-first search; returns ``[a, b, ..., a]`` for the first cycle found."""
        done: set[str] = set()
        for root in self._steps:
            if root in done:
                continue
            path: list[str] = []
            on_path: set[str] = set()
            stack: list[tuple[str, Iterator[str]]] = [(root, iter(self._steps[root].deps))]
            path.append(root)
            on_path.add(root)
            while stack:
                name, deps = stack[-1]
                dep = next(deps, None)
                if dep is None:
                    stack.pop()
                    path.pop()
                    on_path.discard(name)
                    done.add(name)
                elif dep in on_path:
                    return path[path.index(dep) :] + [dep]
                elif dep not in done and dep in self._steps:
                    stack.append((dep, iter(self._steps[dep].deps)))
                    path.append(dep)
                    on_path.add(dep)
        return None


def _inspect_function(func: Callable[..., Any]) -> tuple[str, inspect.Signature | None]:
    """Import path and signature of a step function, computed once per function object."""
    try:
        hash(func)
    except TypeError:
        raise StepFunctionError(f"{func!r} is not a module-level function") from None
    return _inspect_cached(func)


@functools.lru_cache(maxsize=4096)
def _inspect_cached(func: Callable[..., Any]) -> tuple[str, inspect.Signature | None]:
    path = function_path(func)
    try:
        return path, inspect.signature(func)
    except (TypeError, ValueError):
        return path, None  # builtins without a signature: nothing to check against


def _check_signature(
    step: str, path: str, signature: inspect.Signature | None, args: Mapping[str, Any]
) -> None:
    if signature is None:
        return
    try:
        signature.bind(None, **args)
    except TypeError as exc:
        raise StepDefinitionError(
            f"step '{step}': {path} cannot be called as f(ctx, **args) with args {sorted(args)}: {exc}"
        ) from None
