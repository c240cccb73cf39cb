"""The kinds of rule the mapping table is written in.

One :class:`ProtocolMap` says how one Scipion protocol class becomes one of our protocols:
which of our params come from which Scipion params and how (:class:`SetParam`), which
inputs come from which pointers (:class:`Link`), which Scipion outputs are which of ours,
and what is left behind and why (:class:`Drop`, ``quiet``). The table itself is data in
:mod:`.mapping`; :mod:`.convert` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.interop.scipion.units import ConversionProblem, flag, integer, number

Values = Mapping[str, Any]
"""A Scipion protocol's params by name, template fields replaced by their defaults."""

#: params of (nearly) every Scipion protocol that change no result: display, streaming, where it ran
COMMON_QUIET = frozenset({
    "runName", "runMode", "hostName", "numberOfThreads", "numberOfMpi", "dataStreaming", "timeout", "fileTimeout",
    "streamingWarning", "streamingSleepOnWait", "streamingBatchSize", "acquisitionWizard", "EERtext",
    "doComputePSD", "doComputeMicThumbnail", "gpuList", "useGpu", "continueMsg",
})


@dataclass(frozen=True)
class SetParam:
    """Our param ``ours`` made from the Scipion params ``sources`` by ``convert``.

    ``convert`` returns our value, or None to leave the param to our default. ``how`` says
    what the conversion does (units, meaning) for the notes; empty when the value is copied.
    ``when`` limits the rule to some settings (a Scipion form condition). ``ask``: the value
    names a file on Scipion's machine, so the param is left open with it as the default.
    """

    ours: str
    sources: tuple[str, ...]
    convert: Callable[[Values], Any]
    how: str = ""
    when: Callable[[Values], bool] | None = None
    ask: bool = False


@dataclass(frozen=True)
class Link:
    """Our pointer param ``ours`` from the Scipion pointer param ``scipion``.

    ``whole``: our output to take when Scipion points to a whole protocol (``"7."``, e.g.
    post-processing's ``protRefine``). ``folds``: producer classes with no run of their own
    whose settings become params of this run instead (a mask made inside post-processing,
    a volume import that becomes a file name); with ``ours`` None the pointer only folds.
    """

    ours: str | None
    scipion: str
    whole: str | None = None
    folds: Mapping[str, tuple[SetParam, ...]] = field(default_factory=dict)
    when: Callable[[Values], bool] | None = None


@dataclass(frozen=True)
class Drop:
    """A Scipion param with no equivalent: noted when its value differs from ``neutral``
    (the value at which leaving it out changes nothing), with ``why``."""

    scipion: str
    neutral: Any
    why: str


@dataclass(frozen=True)
class ProtocolMap:
    """How the Scipion class ``scipion_class`` becomes our protocol ``protocol``.

    ``outputs``: Scipion output attribute -> our output. ``quiet``: Scipion params left out
    without a note (display, streaming, scratch and I/O knobs that change no result).
    ``refuse``: why a given instance has no equivalent after all (e.g. an import from a
    format we do not read), or None. ``one_of``: groups of our params of which one must be
    given (our protocol's own check); when none is, the first is left open.
    ``notes``: extra remarks on a given instance (e.g. an algorithm we do not have).
    """

    scipion_class: str
    protocol: str
    params: tuple[SetParam, ...] = ()
    links: tuple[Link, ...] = ()
    outputs: Mapping[str, str] = field(default_factory=dict)
    drops: tuple[Drop, ...] = ()
    quiet: frozenset[str] = frozenset()
    refuse: Callable[[Values], str | None] | None = None
    one_of: tuple[tuple[str, ...], ...] = ()
    notes: Callable[[Values], list[str]] | None = None

    def used(self) -> set[str]:
        """Every Scipion param this map reads, drops or ignores on purpose."""
        names = {source for rule in self.params for source in rule.sources}
        names |= {link.scipion for link in self.links} | {drop.scipion for drop in self.drops}
        return names | set(self.quiet)


def copy(ours: str, scipion: str, when: Callable[[Values], bool] | None = None, *, ask: bool = False) -> SetParam:
    """``ours`` takes the value of ``scipion`` as it is (same meaning, same unit)."""
    return SetParam(ours, (scipion,), lambda values: values.get(scipion), "", when, ask)


def fixed(ours: str, value: Any, how: str) -> SetParam:
    """``ours`` is always ``value`` for this Scipion class (e.g. the picking method)."""
    return SetParam(ours, (), lambda values: value, how)


def differs(value: Any, neutral: Any) -> bool:
    """Whether a dropped value changes something (numbers compared as numbers, "" as null)."""
    if value in (None, "") and neutral in (None, ""):
        return False
    if isinstance(neutral, bool) or isinstance(value, bool):
        return str(value).strip().lower() not in (str(neutral).lower(), str(int(neutral)) if isinstance(
            neutral, bool) else str(neutral))
    if isinstance(neutral, int | float):
        try:
            read = number(value)
        except ConversionProblem:
            return True
        return read is None or not math.isclose(read, float(neutral), rel_tol=1e-9, abs_tol=1e-12)
    return value != neutral


def when_is(name: str, expected: int) -> Callable[[Values], bool]:
    """A Scipion form condition ``name == expected`` on an enum or int param."""
    return lambda values: integer(values.get(name)) == expected


def when_on(name: str, default: bool = False) -> Callable[[Values], bool]:
    """A Scipion form condition on a BooleanParam (``default`` when it is unset)."""
    def check(values: Values) -> bool:
        value = flag(values.get(name))
        return default if value is None else value
    return check


def when_off(name: str, default: bool = False) -> Callable[[Values], bool]:
    """A Scipion form condition ``not name`` on a BooleanParam."""
    return lambda values: not when_on(name, default)(values)
