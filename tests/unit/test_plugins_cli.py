"""`orch plugins`: table, --json, show; exit codes."""

from __future__ import annotations

import json

import pytest

from orchestrator.app import plugins as app_plugins
from orchestrator.cli import main
from orchestrator.plugins import ExternalProgram, Plugin, PluginRegistry


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plugins_json_lists_ok_and_failed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plugins", "--json"], capsys)
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)["plugins"]}
    testkit = rows["testkit"]
    assert testkit["state"] == "ok" and testkit["version"] == "0.1.0"
    assert testkit["protocol_count"] == 14 and "testkit.fanout" in testkit["protocols"]
    broken = rows["testkit_broken"]
    assert broken["state"] == "failed" and broken["protocol_count"] == 0
    assert broken["error"].startswith("ImportError: orch_testkit.broken is broken on purpose")


def test_plugins_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plugins"], capsys)
    assert code == 0
    lines = out.splitlines()
    testkit_line = next(line for line in lines if "│ testkit " in line)
    assert "0.1.0" in testkit_line and " 14 " in testkit_line and "ok" in testkit_line
    assert any("testkit_broken" in line and "failed to import" in line for line in lines)


def test_missing_programs_state(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = Plugin("needy", "2.0", programs=[ExternalProgram("orch-no-such-tool", "conda install tool")])
    monkeypatch.setattr(app_plugins, "discover", lambda: PluginRegistry(plugins={"needy": plugin}))
    code, out, _ = run(["plugins", "--json"], capsys)
    (row,) = json.loads(out)["plugins"]
    assert code == 0 and row["state"] == "missing_programs"
    assert row["missing"] == [
        {"name": "orch-no-such-tool", "how_to_get": "conda install tool", "reason": "not found on PATH"}
    ]
    code, out, _ = run(["plugins"], capsys)
    assert "missing programs (orch-no-such-tool)" in out
    assert "needy: orch-no-such-tool not found on PATH; conda install tool" in out


def test_show_plugin_lists_protocols_and_params(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plugins", "show", "testkit", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["plugin"]["name"] == "testkit"
    protocols = {p["name"]: p for p in data["protocols"]}
    assert len(protocols) == 14
    chain = protocols["testkit.chain"]
    assert chain["inputs"] == ["source"]
    assert chain["params"][0]["kind"] == "pointer" and chain["params"][0]["type_name"] == "Files"
    code, out, _ = run(["plugins", "show", "testkit"], capsys)
    assert code == 0 and "testkit.fanout" in out and "count" in out


def test_show_one_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plugins", "--json", "show", "testkit.fail"], capsys)
    data = json.loads(out)
    assert code == 0 and [p["name"] for p in data["protocols"]] == ["testkit.fail"]
    fail_times = data["protocols"][0]["params"][1]
    assert fail_times["name"] == "fail_times" and fail_times["condition"] == "not fail_always"


def test_show_broken_plugin_reports_its_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plugins", "show", "testkit_broken", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["plugin"]["error"].startswith("ImportError:")


def test_show_unknown_name_is_an_error_with_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["plugins", "show", "testkt"], capsys)
    assert code == 3 and out == ""
    assert "no plugin or protocol 'testkt' (did you mean 'testkit'?)" in err
