"""Provenance records written beside the scheduler's loop, not in it.

Fingerprinting reads every file a run wrote and every raw file it read: for an import of a
session of movies that is terabytes, minutes of reading. The scheduler hands the finished run
to this recorder and goes on scheduling; one background thread builds and stores the records
in the order the runs finished. The scheduler counts pending records as work, so it does not
exit idle (nor does ``daemon.serve`` return) before they are written.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from orchestrator.plugins import PluginRegistry
from orchestrator.project import Project
from orchestrator.provenance.record import record_provenance
from orchestrator.store import ProjectStore

log = logging.getLogger(__name__)


class ProvenanceRecorder:
    """One thread that records the runs handed to it; ``busy`` while any is pending."""

    def __init__(self, store: ProjectStore, project: Project, registry: PluginRegistry) -> None:
        self.store, self.project, self.registry = store, project, registry
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[bool]] = set()
        self._lock = threading.Lock()

    def submit(self, run_id: int) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orch-provenance")
            future = self._pool.submit(record_provenance, self.store, self.project, self.registry, run_id)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[bool]) -> None:
        with self._lock:
            self._pending.discard(future)
        if future.exception() is not None:  # record_provenance reports its own errors; this is a bug
            log.error("provenance recorder failed: %r", future.exception())

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def close(self) -> None:
        """Write every pending record, then stop the thread."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
