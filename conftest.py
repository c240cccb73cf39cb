"""The one rule of the whole suite (``tests/`` and ``plugins/*/tests``): in CI nothing skips quietly.

A CI run (``CI`` set: ``.ci/run`` and ``make test`` set it) has every service and program the
tests need, because the project's scripts (``tests/infra/``) provide them. A test that skips
there hides a broken set-up, or a regression behind a prerequisite that went missing. So, when
``CI`` is set, a skip whose reason matches none of :data:`ALLOWED_SKIPS` is turned into a
failure that names the test and the reason. Tests ask for what they need through
``infra.services.require`` / ``require_service``, which already fail in CI; this hook catches
everything else (a ``pytest.skip`` or ``skipif`` added later, a module-level ``importorskip``).

This file sits at the repository root so that it applies to the plugins' tests too (a
conftest's run-test hooks only see the tests below its own folder).
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator

import pytest

# Skips that are legitimate even in CI: the machine cannot have what the test needs, and no
# script of ours could give it. Each entry: a pattern searched in the skip's reason, and why.
# The README's Tests section lists these; keep the two in step.
ALLOWED_SKIPS: tuple[tuple[str, str], ...] = (
    (r"(?i)\b(cuda|cupy|gpus?)\b",
     "hardware: a test for a real GPU (CUDA, CuPy) on a machine without one, or one that needs a machine without"),
)


def in_ci() -> bool:
    """``CI`` set to a non-empty value (the same rule as ``tests/infra/services.py``)."""
    return bool(os.environ.get("CI"))


def allowed_skip(reason: str) -> bool:
    return any(re.search(pattern, reason) for pattern, _why in ALLOWED_SKIPS)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skip report gives (``longrepr`` is (file, line, "Skipped: reason")) ."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(text).removeprefix("Skipped: ")


def _fail_quiet_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if allowed_skip(reason):
        return
    report.outcome = "failed"
    report.longrepr = (f"{report.nodeid}: skipped in CI ({reason!r}). In CI (CI is set) a test may skip only "
                       f"for a reason on the allow-list of the root conftest.py (hardware the machine lacks); "
                       f"a missing service or program must be provided by tests/infra/ (see tests/infra/README.md).")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_quiet_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector,
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_quiet_skip(report)
    return report
