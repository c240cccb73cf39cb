"""The application layer's plugins: list, show, describe; and discovery imports no step kernels."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.app import plugins
from orchestrator.errors import NotFoundError
from orchestrator.plugins import ExternalProgram, Plugin, PluginRegistry


def test_list_reports_loaded_and_failed_plugins() -> None:
    rows = {row.name: row for row in plugins.list_plugins()}
    testkit = rows["testkit"]
    assert testkit.state == plugins.STATE_OK and testkit.version == "0.1.0" and "testkit.fanout" in testkit.protocols
    broken = rows["testkit_broken"]
    assert broken.state == plugins.STATE_FAILED and str(broken.error).startswith("ImportError:")
    assert broken.target == "orch_testkit.broken:plugin"
    json.dumps([row.to_dict() for row in rows.values()])


def test_missing_programs_are_a_state_with_how_to_get_them() -> None:
    needy = Plugin("needy", "2.0", programs=[ExternalProgram("orch-no-such-tool", "conda install tool")])
    (row,) = plugins.list_plugins(PluginRegistry(plugins={"needy": needy}))
    assert row.state == plugins.STATE_MISSING
    assert [m.to_dict() for m in row.missing] == [{"name": "orch-no-such-tool", "how_to_get": "conda install tool",
                                                   "reason": "not found on PATH"}]


def test_show_a_plugin_a_protocol_a_failure_and_an_unknown_name() -> None:
    whole = plugins.show_plugin("testkit")
    assert whole.plugin.name == "testkit" and len(whole.protocols) == whole.plugin.protocol_count
    one = plugins.show_plugin("testkit.chain")
    assert [p.name for p in one.protocols] == ["testkit.chain"] and one.protocols[0].inputs == ["source"]
    assert one.to_dict()["protocols"][0]["outputs"] == {"derived": "Files"}
    failed = plugins.show_plugin("testkit_broken")
    assert failed.plugin.state == plugins.STATE_FAILED and failed.protocols == []
    with pytest.raises(NotFoundError, match="no plugin or protocol 'testkt' \\(did you mean 'testkit'\\?\\)"):
        plugins.show_plugin("testkt")


def test_describe_protocol() -> None:
    info = plugins.describe_protocol("testkit.fail")
    assert info.name == "testkit.fail" and {p["name"] for p in info.params} >= {"fail_always", "fail_times"}
    with pytest.raises(NotFoundError, match="did you mean 'testkit.fail'"):
        plugins.describe_protocol("testkit.fial")


def test_describing_plugins_imports_no_step_modules() -> None:
    """`orch plugins` and `orch run` load the protocols' declarations, never their kernels."""
    code = ("import sys, json; from orchestrator.app import plugins; plugins.list_plugins(); "
            "[plugins.show_plugin(n) for n in ('emtools', 'relion', 'testkit')]; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('scipy', 'pandas', 'mrcfile', "
            "'emtools.steps', 'emtools.kernels', 'relion_plugin.steps', 'orchestrator.em')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
