"""One Scipion protocol made into one run of ours: its params, its inputs, and notes on both.

:class:`RunMaker` applies a :class:`~.rules.ProtocolMap` to a :class:`~.document.ScipionProtocol`.
Every value it sets is checked against our param's declaration first; one that does not fit
is left to our default, with a note. Values from template fields and file paths become open
inputs (:mod:`.inputs`). A pointer to a protocol that is left out, not in the file, or whose
output has no equivalent also becomes an open input, of type pointer, so that the user can
point it at a run of theirs; when the left-out protocol only passed along data of the right
type from a run of the file (a filter, a screening), that run's output is the input's default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.interop.scipion.document import ScipionPointer, ScipionProtocol, pointer_like, pointer_of, shown
from orchestrator.interop.scipion.inputs import OpenInputs
from orchestrator.interop.scipion.rules import Link, ProtocolMap, SetParam, Values, differs
from orchestrator.interop.scipion.units import ConversionProblem
from orchestrator.objects.params import Param, ParamValueError, PointerParam
from orchestrator.plugins import PluginRegistry

_LISTED = 12  # params listed in one "not carried over" note


@dataclass
class ConversionState:
    """What the runs of one conversion share: the file, who is kept, the inputs and the notes."""

    source: Path
    registry: PluginRegistry
    by_id: dict[str, ScipionProtocol]
    kept: dict[str, ProtocolMap]
    names: dict[str, str]
    inputs: OpenInputs = field(default_factory=OpenInputs)
    notes: list[str] = field(default_factory=list)
    deps: dict[str, set[str]] = field(default_factory=dict)
    folded_into: dict[str, list[str]] = field(default_factory=dict)
    left_open: dict[str, list[str]] = field(default_factory=dict)


class RunMaker:
    """Makes the params of one kept protocol's run; notes go to the shared state."""

    def __init__(self, state: ConversionState, protocol: ScipionProtocol) -> None:
        self.state = state
        self.protocol = protocol
        self.entry = state.kept[protocol.id]
        self.name = state.names[protocol.id]
        self.declared: dict[str, Param] = {p.name: p for p in state.registry.protocol(self.entry.protocol).params}
        self.params: dict[str, Any] = {}
        state.deps.setdefault(protocol.id, set())

    def note(self, text: str) -> None:
        self.state.notes.append(f"run {self.name} (Scipion {self.protocol.id}, {self.protocol.class_name}): {text}")

    def make(self) -> dict[str, Any]:
        """The run entry of the workflow: name, protocol, params (and the Scipion comment)."""
        values = self.protocol.values
        for rule in self.entry.params:
            self._set(rule, self.protocol, values)
        for link in self.entry.links:
            self._link(link)
        self._open_missing()
        self._note_left_behind()
        for remark in self._safely(self.entry.notes, values) or []:
            self.note(remark)
        self._note_meta()
        run: dict[str, Any] = {"name": self.name, "protocol": self.entry.protocol, "params": self.params}
        if self.protocol.comment:
            run["comment"] = self.protocol.comment
        return run

    # ------------------------------------------------------------------ plain params
    def _set(self, rule: SetParam, owner: ScipionProtocol, values: Values, folded: bool = False) -> None:
        """Apply one rule to ``owner``'s values (this protocol, or one folded into it)."""
        param = self.declared.get(rule.ours)
        if rule.ours in self.params:
            return  # an earlier rule (another mode of the same Scipion setting) gave it
        if param is None:
            self.note(f"{self.entry.protocol} has no param '{rule.ours}' (another version of the plugin?); "
                      f"{', '.join(rule.sources)} not carried over")
            return
        if rule.when is not None and not self._safely(rule.when, values, default=False):
            return
        sources = ", ".join(f"{name}={shown(values.get(name))}" for name in rule.sources)
        try:
            value = rule.convert(values)
        except (ConversionProblem, TypeError, ArithmeticError) as exc:
            self.note(f"{sources}: {exc}; {rule.ours} keeps our default")
            return
        where = f" of {owner.where}" if folded else ""
        fields = [f for name in rule.sources if name in owner.fields for f in owner.fields[name].fields]
        if fields or rule.ask:
            self._ask(rule, owner, param, value, fields, where)
            return
        if value is None:
            return
        try:
            coerced = param.coerce(value)
            problems = param.check(coerced)
        except ParamValueError as exc:
            problems = [exc.problem]
        if problems:
            self.note(f"{sources}{where} -> {rule.ours}={shown(value)} does not fit: "
                      f"{problems[0].split(': ', 1)[-1]}; our default applies")
            return
        self.params[rule.ours] = param.to_json(coerced)
        if rule.how or folded:
            how = f" ({rule.how})" if rule.how else ""
            origin = f" from {sources}{where}" if sources else ""
            self.note(f"{rule.ours}={shown(self.params[rule.ours])}{origin}{how}")

    def _ask(self, rule: SetParam, owner: ScipionProtocol, param: Param, value: Any, fields: list[Any],
             where: str) -> None:
        """Leave ``rule.ours`` open: a template field, or a file of Scipion's machine."""
        field_labels = " / ".join(dict.fromkeys(repr(f.label) for f in fields))
        if fields:
            labels = " / ".join(dict.fromkeys(f.label for f in fields))
            texts = ", ".join(repr(f.text) for f in fields)
            key: tuple[Any, ...] | None = tuple(f.key for f in fields) + ((self.name, rule.ours) if rule.how else ())
            help_text = f"Scipion template field(s) {texts} for {rule.ours} of run {self.name}"
            if rule.how:  # a converted value is asked in our terms, under our name
                hint, labels = f"{self.name}.{rule.ours}", f"{rule.ours} of run {self.name} (from {labels})"
                help_text += f": {rule.how}"
            else:
                hint = fields[0].alias or fields[0].label
        else:
            relative = isinstance(value, str) and not value.startswith(("/", "~", "%("))
            help_text = (f"a file of the Scipion workflow ({', '.join(rule.sources)}{where}"
                         + (", relative to the Scipion project's folder" if relative else "")
                         + "): check that it exists here" + (f"; {rule.how}" if rule.how else ""))
            if owner is not self.protocol:  # one input for one file that several runs take from one protocol
                labels, hint = f"{rule.ours} ({owner.label or owner.class_name})", f"{owner.label}.{rule.ours}"
                key = (owner.id, rule.sources)
            else:
                labels, hint, key = f"{rule.ours} of run {self.name}", f"{self.name}.{rule.ours}", None
        if isinstance(value, str) and "%(" in value:
            help_text += "; Scipion fills %(NAME)s from its environment at launch: write the value out"
        name, problem = self.state.inputs.add(hint, param, labels, value, help_text, key)
        if problem is not None:
            self.note(f"the default {shown(value)} of input {name!r} does not fit {rule.ours}: {problem}; "
                      "it has none")
        if fields and rule.how:
            self.note(f"template field(s) {field_labels} asked as input {name!r} "
                      f"for {rule.ours}, in our terms: {rule.how}")
        self.params[rule.ours] = {"$input": name}

    # ------------------------------------------------------------------ inputs (pointers)
    def _link(self, link: Link) -> None:
        if link.when is not None and not self._safely(link.when, self.protocol.values, default=False):
            return
        raw = pointer_of(self.protocol, link.scipion, self.state.source)
        if raw is None:
            return
        if isinstance(raw, list):
            self.note(f"{link.scipion} is a list of {len(raw)} inputs, which has no equivalent")
            if link.ours:
                self._open_pointer(link.ours, f"Scipion gave a list of inputs ({link.scipion})")
            return
        producer = self.state.by_id.get(raw.protocol_id)
        if producer is not None and producer.class_name in link.folds:
            for rule in link.folds[producer.class_name]:
                self._set(rule, producer, producer.values, folded=True)
            self.state.folded_into.setdefault(producer.id, []).append(self.name)
            return
        if link.ours is None:
            target = producer.where if producer is not None else f"Scipion protocol {raw.protocol_id}"
            self.note(f"{link.scipion} ({target}) not used: only a {' or '.join(link.folds)} there gives "
                      f"settings to {self.entry.protocol}")
            return
        if link.ours in self.params:
            self.note(f"{link.scipion} ({raw}) not used: {link.ours} comes from another input already")
            return
        self._point(link, raw, producer)

    def _point(self, link: Link, pointer: ScipionPointer, producer: ScipionProtocol | None) -> None:
        assert link.ours is not None
        if producer is None:
            self._open_pointer(link.ours, f"{link.scipion} points to Scipion protocol {pointer.protocol_id}, which "
                                          "is not in the file (a run of the Scipion project it came from)")
            return
        if producer.id not in self.state.kept:
            name = self._open_pointer(link.ours, f"{link.scipion} comes from {producer.where}, which is left out",
                                      self._bypass(producer, link.ours))
            self.state.left_open.setdefault(producer.id, []).append(name)
            return
        producer_entry = self.state.kept[producer.id]
        output = link.whole if pointer.output == "" else producer_entry.outputs.get(pointer.output)
        declared = self.state.registry.protocol(producer_entry.protocol).outputs
        needed = self._pointer_type(link.ours)
        if pointer.rest or output is None or output not in declared:
            what = f"the output {pointer.output + pointer.rest or '(the whole protocol)'!r}"
            self._open_pointer(link.ours, f"{link.scipion}: {what} of {producer.where} has no equivalent")
            return
        if needed is not None and declared[output] != needed:
            self._open_pointer(link.ours, f"{link.scipion}: {producer_entry.protocol}'s {output} is a "
                                          f"{declared[output]}, not the {needed} {link.ours} takes")
            return
        self.params[link.ours] = f"{self.state.names[producer.id]}.{output}"
        self.state.deps[self.protocol.id].add(producer.id)

    def _pointer_type(self, ours: str) -> str | None:
        param = self.declared.get(ours)
        return param.type_name if isinstance(param, PointerParam) else None

    def _open_pointer(self, ours: str, why: str, default: str | None = None) -> str:
        """Leave the input ``ours`` open (a pointer the user gives), with ``why`` as a note."""
        param = self.declared[ours]
        needed = self._pointer_type(ours) or "run output"
        help_text = f"a {needed} output, RUN.OUTPUT (e.g. a run of your project): {why}"
        if default is not None:
            help_text += "; the default skips what was left out"
        name, _ = self.state.inputs.add(f"{self.name}.{ours}", param, f"{ours} of run {self.name}", default, help_text)
        self.params[ours] = {"$input": name}
        self.note(f"{why}: left open as input {name!r}" + (f" (default {default})" if default else ""))
        if default is not None:
            run = default.rsplit(".", 1)[0]
            self.state.deps[self.protocol.id] |= {pid for pid, n in self.state.names.items() if n == run}
        return name

    def _bypass(self, omitted: ScipionProtocol, ours: str) -> str | None:
        """The one output of a kept run that reaches ``omitted`` through left-out protocols only,
        of the type ``ours`` takes: what the left-out chain only passed along."""
        needed = self._pointer_type(ours)
        found: set[str] = set()
        todo, seen = [omitted], {omitted.id}
        while todo:
            current = todo.pop()
            for value in current.values.values():
                for pointer in pointer_like(value):
                    target = self.state.by_id.get(pointer.protocol_id)
                    if target is None or target.id in seen:
                        continue
                    if target.id not in self.state.kept:
                        seen.add(target.id)
                        todo.append(target)
                        continue
                    entry = self.state.kept[target.id]
                    output = entry.outputs.get(pointer.output)
                    declared = self.state.registry.protocol(entry.protocol).outputs
                    if output is not None and output in declared and declared[output] == needed:
                        found.add(f"{self.state.names[target.id]}.{output}")
        return found.pop() if len(found) == 1 else None

    # ------------------------------------------------------------------ what is missing or left behind
    def _open_missing(self) -> None:
        """Required params (and one of each ``one_of`` group) that Scipion gave no value for."""
        for group in self.entry.one_of:
            if not any(name in self.params for name in group) and group[0] in self.declared:
                self._open_required(self.declared[group[0]], f"one of {', '.join(group)} is needed")
        for param in self.declared.values():
            if param.name not in self.params and param.required and param.condition is None:
                self._open_required(param, "it is required")

    def _open_required(self, param: Param, why: str) -> None:
        if isinstance(param, PointerParam):
            self._open_pointer(param.name, f"Scipion gives no input for {param.name} and {why}")
            return
        name, _ = self.state.inputs.add(f"{self.name}.{param.name}", param, f"{param.name} of run {self.name}",
                                        None, f"Scipion gives no value for it and {why}")
        self.params[param.name] = {"$input": name}
        self.note(f"Scipion gives no value for {param.name} and {why}: left open as input {name!r}")

    def _note_left_behind(self) -> None:
        values, fields = self.protocol.values, self.protocol.fields
        for drop in self.entry.drops:
            if drop.scipion in values and differs(values[drop.scipion], drop.neutral):
                self.note(f"{drop.scipion}={shown(values[drop.scipion])} not carried over: {drop.why}")
        used = self.entry.used()
        unknown = [name for name in values if name not in used]
        if unknown:
            listed = ", ".join(f"{name}={shown(values[name])}" for name in unknown[:_LISTED])
            more = f" and {len(unknown) - _LISTED} more" if len(unknown) > _LISTED else ""
            self.note(f"params with no equivalent, not carried over: {listed}{more}")
        asked = {name for rule in self.entry.params for name in rule.sources}
        for name in sorted(set(fields) - asked):
            labels = ", ".join(repr(f.label) for f in fields[name].fields)
            self.note(f"template field {labels} ({name}) is not asked: {name} has no equivalent")

    def _note_meta(self) -> None:
        meta, values = self.protocol.meta, self.protocol.values
        if meta.get("_useQueue") is True:
            self.note("ran on a queue in Scipion; its queue settings are not carried over (choose the host)")
        prerequisites = meta.get("_prerequisites")
        waits = [str(p).strip() for p in (prerequisites if isinstance(prerequisites, list)
                                          else str(prerequisites or "").split(",")) if str(p).strip()]
        if waits:
            self.note(f"waited for Scipion protocol(s) {', '.join(waits)}; a run here starts when its inputs are "
                      "ready")
            self.state.deps[self.protocol.id] |= {w for w in waits if w in self.state.kept and w != self.protocol.id}
        host = values.get("hostName")
        if isinstance(host, str) and host.strip() not in ("", "localhost"):
            self.note(f"ran on Scipion host {host!r}; not carried over (hosts come from our hosts files)")

    def _safely(self, function: Callable[[Values], Any] | None, values: Values, default: Any = None) -> Any:
        """Call a table function on values that may be unreadable; a problem becomes a note."""
        if function is None:
            return default
        try:
            return function(values)
        except (ConversionProblem, TypeError, ArithmeticError) as exc:
            self.note(f"cannot read a setting: {exc}")
            return default
