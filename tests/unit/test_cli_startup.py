"""`orch` answers at once: building the parser loads no store, and read commands load no scheduler or plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.cli.status_cmd import STEP_STATES
from orchestrator.project import Project
from orchestrator.store import StepState

HEAVY = ("distributed", "dask", "sqlalchemy", "numpy", "rich", "orchestrator.store", "orchestrator.plugins",
         "orchestrator.scheduler.engine")


def loaded_after(argv: list[str]) -> set[str]:
    """The heavy modules loaded once ``orch ARGV`` has run (in a fresh interpreter)."""
    code = ("import sys, json, contextlib, io\nfrom orchestrator.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
            f"print(json.dumps([m for m in sys.modules if m.startswith({HEAVY!r})]))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return {name.split(".")[0] if not name.startswith("orchestrator") else ".".join(name.split(".")[:3])
            for name in json.loads(done.stdout.splitlines()[-1])}


def test_help_loads_nothing_heavy() -> None:
    assert loaded_after(["--help"]) == set()


def test_status_reads_the_store_only(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "proj")
    loaded = loaded_after(["status", str(project.path)])
    assert "orchestrator.store" in loaded and "sqlalchemy" in loaded
    assert not loaded & {"distributed", "dask", "rich", "orchestrator.plugins", "orchestrator.scheduler.engine"}


def test_the_state_names_of_the_parser_are_the_stores() -> None:
    assert STEP_STATES == tuple(state.value for state in StepState)
