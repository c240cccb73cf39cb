"""Plugin discovery: installed entry points, broken plugins, clashes, protocol lookup, checks."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import pytest

from orchestrator.errors import NotFoundError
from orchestrator.plugins import ENTRY_POINT_GROUP, ExternalProgram, MissingProgram, Plugin, discover
from orchestrator.protocol import Protocol, ResolvedParams, StepGraph


class Shadow(Protocol):
    """Claims a testkit protocol's name."""

    name = "testkit.sleep"

    def steps(self, params: ResolvedParams) -> StepGraph:
        return StepGraph()


CLASHING = Plugin(name="shadow", version="1.0", protocols=[Shadow])
NOT_A_PLUGIN = {"name": "dict"}


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_installed_testkit_loads_and_broken_one_is_reported() -> None:
    registry = discover()
    assert "testkit" in registry.plugins
    assert len(registry.plugins["testkit"].protocols) == 14
    broken = [f for f in registry.failures if f.entry_point == "testkit_broken"]
    assert len(broken) == 1
    assert broken[0].error.startswith("ImportError: orch_testkit.broken is broken on purpose")
    assert broken[0].target == "orch_testkit.broken:plugin"
    assert broken[0].distribution == "orch-testkit"
    assert registry.protocol("testkit.fanout").name == "testkit.fanout"


def test_failures_do_not_stop_other_plugins() -> None:
    registry = discover(
        points=[
            point("testkit_broken", "orch_testkit.broken:plugin"),
            point("missing_module", "no_such_module_abc:plugin"),
            point("not_plugin", f"{__name__}:NOT_A_PLUGIN"),
            point("testkit", "orch_testkit:plugin"),
            point("testkit_again", "orch_testkit:plugin"),
            point("shadow", f"{__name__}:CLASHING"),
        ]
    )
    assert list(registry.plugins) == ["testkit"]
    errors = {f.entry_point: f.error for f in registry.failures}
    assert errors["testkit_broken"].startswith("ImportError:")
    assert errors["missing_module"] == "ModuleNotFoundError: No module named 'no_such_module_abc'"
    assert errors["not_plugin"] == "entry point gave dict, expected a Plugin"
    assert errors["testkit_again"] == "a plugin named 'testkit' is already loaded"
    assert errors["shadow"] == (
        "plugin 'shadow': protocol 'testkit.sleep' is already provided by plugin 'testkit'"
    )


def test_protocol_lookup_suggests_close_names() -> None:
    registry = discover(points=[point("testkit", "orch_testkit:plugin")])
    assert registry.plugin_of("testkit.chain").name == "testkit"
    with pytest.raises(NotFoundError) as err:
        registry.protocol("testkit.slep")
    message = str(err.value)
    assert message.startswith("no protocol 'testkit.slep' (did you mean 'testkit.sleep'?); installed: ")
    assert "testkit.noop" in message
    with pytest.raises(NotFoundError, match="no plugin 'testkt' \\(did you mean 'testkit'\\?\\)"):
        registry.plugin("testkt")


def test_protocol_lookup_mentions_failed_plugins() -> None:
    registry = discover(points=[point("testkit_broken", "orch_testkit.broken:plugin")])
    with pytest.raises(NotFoundError, match="installed: none; plugins that failed to load: testkit_broken"):
        registry.protocol("relion.refine3d")


def test_check_lists_missing_programs_with_how_to_get_them() -> None:
    def licence_check() -> list[MissingProgram]:
        return [MissingProgram("licence", "ask the vendor", "no licence file")]

    plugin = Plugin(
        name="fake",
        version="1",
        programs=[
            ExternalProgram("orch-no-such-program-xyz", "apt install xyz"),
            ExternalProgram(
                sys.executable, "it runs this test", version_command=[sys.executable, "--version"]
            ),
        ],
        check_extra=licence_check,
    )
    assert plugin.check() == [
        MissingProgram("orch-no-such-program-xyz", "apt install xyz", "not found on PATH"),
        MissingProgram("licence", "ask the vendor", "no licence file"),
    ]
    assert plugin.programs[1].version() == f"Python {sys.version.split()[0]}"
    assert plugin.programs[0].version() is None


def test_a_crashing_check_is_reported_not_raised() -> None:
    def crash() -> list[MissingProgram]:
        raise OSError("cannot read /opt/licence")

    missing = Plugin(name="fake", version="1", check_extra=crash).check()
    assert [(m.name, m.reason) for m in missing] == [
        ("fake check", "check failed: OSError('cannot read /opt/licence')")
    ]
