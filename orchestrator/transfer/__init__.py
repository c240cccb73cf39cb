"""Staging files to and from hosts that do not share the project's file system.

``Stager(store, target).stage_in(run_id, paths, remote_dir)`` before a step runs on such a
host, ``stage_out(run_id, remote_paths, local_dir)`` after; see :mod:`orchestrator.transfer.stager`.
Names are imported on first use, so that ``orch`` commands reading transfer status from the
store do not load the SSH stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Stager": "stager", "StageReport": "report", "Progress": "progress", "ProgressCallback": "progress",
    "TransferError": "errors", "TransferInterrupted": "errors", "VerificationError": "errors",
    "RemoteAgentError": "errors", "SourceChangedError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
