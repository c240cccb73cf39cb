"""What the parser fuzz tests (``test_fuzz_*.py``) share: their budget and the one assertion.

Every parser fed hostile input must either return or raise one of our own error types
(:class:`~orchestrator.errors.OrchestratorError` or a subclass) whose message names the file
(or the value) and the place at fault. A raw ``ValueError``, ``OverflowError``, ``KeyError``
... escaping a parser is the bug these tests exist to find, so they let it propagate: pytest
then reports it with hypothesis' smallest failing example.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

from orchestrator.errors import OrchestratorError

# A few hundred examples per parser keep the whole fuzz set to seconds; ORCH_FUZZ_EXAMPLES
# asks for a deeper search (e.g. 5000) when a parser changes. No example database (a failure
# prints its example and a @reproduce_failure blob), so the .hypothesis folder holds only
# hypothesis' own caches, which its .gitignore keeps out of git.
FUZZ = settings(
    max_examples=int(os.environ.get("ORCH_FUZZ_EXAMPLES", "200")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

T = TypeVar("T")


def our_error_or_value(
    call: Callable[[], T], error_type: type[OrchestratorError], must_name: Iterable[str]
) -> T | OrchestratorError:
    """Run ``call``; return its value, or the error it raised after checking the error.

    The error must be an instance of ``error_type`` (our own type) and its message must hold
    every string of ``must_name`` (the file, the field). Any other exception propagates.
    """
    try:
        return call()
    except OrchestratorError as err:
        assert isinstance(err, error_type), f"{type(err).__name__} is not a {error_type.__name__}: {err}"
        message = str(err)
        for part in must_name:
            assert part in message, f"message does not name {part!r}: {message}"
        return err


def names_one_of(message: str, words: Iterable[str]) -> bool:
    """Whether ``message`` mentions one of ``words`` as a whole word (a field, key or column)."""
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", message) for word in words)


def describe(value: Any) -> str:
    """How a test labels an example in an assertion message (short, one line)."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
