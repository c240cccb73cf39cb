"""In CI nothing skips quietly: the root conftest's hook and ``infra.services.require``.

Runs pytest in a child process on a small suite of its own, with the repository's root
``conftest.py`` copied beside it, once with ``CI`` set and once without.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from infra.services import RequirementMissing, require

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"
INFRA = Path(__file__).resolve().parents[1] / "infra"

SUITE = '''
import pytest
from infra.services import require

def test_plain_skip():
    pytest.skip("SLURM is not running")

@pytest.mark.skipif(True, reason="sshd not started")
def test_skipif_mark():
    pass

def test_requirement():
    require(False, "mpirun is not installed")

def test_gpu_only():
    pytest.skip("needs a CUDA GPU")

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    require(True, "never shown")
'''

MODULE_SKIP = '''
import pytest
pytest.importorskip("no_such_module_for_the_ci_test")

def test_never_collected():
    pass
'''


def run_suite(tmp_path: Path, ci: str | None) -> tuple[int, dict[str, str]]:
    """Run the small suite; return pytest's exit code and each test's (or module's) outcome."""
    (tmp_path / "conftest.py").write_text(ROOT_CONFTEST.read_text())
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(INFRA.parent), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rE",
                           "--continue-on-collection-errors", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    outcomes: dict[str, str] = {}
    for line in done.stdout.splitlines():
        test = re.match(r"\S*::(\w+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL)\b", line)
        if test:
            outcomes[test.group(1)] = test.group(2)
        module = re.match(r"ERROR (\S+\.py)\b", line)  # a collection error, in the short summary
        if module:
            outcomes[Path(module.group(1)).name] = "ERROR"
    return done.returncode, outcomes


def test_outside_ci_skips_stay_skips(tmp_path: Path) -> None:
    code, outcomes = run_suite(tmp_path, None)
    assert code == 0, outcomes
    assert {name: outcomes.get(name) for name in ("test_plain_skip", "test_skipif_mark", "test_requirement",
                                                  "test_gpu_only", "test_expected_failure", "test_passes")} == {
        "test_plain_skip": "SKIPPED", "test_skipif_mark": "SKIPPED", "test_requirement": "SKIPPED",
        "test_gpu_only": "SKIPPED", "test_expected_failure": "XFAIL", "test_passes": "PASSED"}


def test_in_ci_a_skip_not_on_the_allow_list_fails(tmp_path: Path) -> None:
    code, outcomes = run_suite(tmp_path, "1")
    assert code != 0
    assert outcomes.get("test_plain_skip") == "FAILED"
    assert outcomes.get("test_skipif_mark") == "ERROR"  # skipped in setup: a setup failure
    assert outcomes.get("test_requirement") == "FAILED"  # require() raises in CI
    assert outcomes.get("test_gpu_only") == "SKIPPED"  # hardware: on the allow-list
    assert outcomes.get("test_expected_failure") == "XFAIL"  # not a skip
    assert outcomes.get("test_passes") == "PASSED"
    assert outcomes.get("test_module_skip.py") == "ERROR"  # a module-level importorskip fails collection


def test_the_failure_names_the_reason(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(ROOT_CONFTEST.read_text())
    (tmp_path / "test_one.py").write_text('import pytest\n\ndef test_x():\n    pytest.skip("sshd not started")\n')
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                          cwd=tmp_path, env={**os.environ, "CI": "1"}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1
    assert "skipped in CI ('sshd not started')" in done.stdout and "allow-list" in done.stdout


def test_require_skips_outside_ci_and_raises_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    require(True, "unused")
    with pytest.raises(pytest.skip.Exception, match="sbatch is missing"):
        require(None, "sbatch is missing")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RequirementMissing, match="sbatch is missing.*CI is set"):
        require("", "sbatch is missing")
