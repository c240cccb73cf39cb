"""The provenance records of a project's finished runs, one JSON document per run.

The record is built by :mod:`orchestrator.provenance` when a run finishes and written once
(a restarted run that finishes again replaces it). Readers (``orch show --provenance``,
``orch lineage``, exports) take it as it was written: versions and fingerprints of the day.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, insert, select

from orchestrator.store.clock import now
from orchestrator.store.engine import WRITE
from orchestrator.store.schema import HostProgramRow, Run, RunProvenanceRow

_PROVENANCE = cast(Table, RunProvenanceRow.__table__)
_PROGRAMS = cast(Table, HostProgramRow.__table__)
_RUNS = cast(Table, Run.__table__)


class RunProvenanceTable:
    """Provenance records of one project's runs."""

    def __init__(self, engine: Engine, project_id: int) -> None:
        self.engine = engine
        self.project_id = project_id

    def put(self, run_id: int, record: Mapping[str, Any]) -> None:
        """Keep ``record`` as run ``run_id``'s provenance (replacing an earlier one)."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(delete(_PROVENANCE).where(_PROVENANCE.c.run_id == run_id))
            conn.execute(insert(_PROVENANCE).values(run_id=run_id, recorded_at=now(), record=dict(record)))

    def get(self, run_id: int) -> dict[str, Any] | None:
        """Run ``run_id``'s provenance record, or None (not finished, or finished before records were kept)."""
        query = (select(_PROVENANCE.c.record).join(_RUNS, _RUNS.c.id == _PROVENANCE.c.run_id)
                 .where(_PROVENANCE.c.run_id == run_id, _RUNS.c.project_id == self.project_id))
        with self.engine.connect() as conn:
            record = conn.execute(query).scalar()
        return dict(record) if record is not None else None


class HostProgramsTable:
    """The external programs' paths and versions on each execution host, as steps there found them."""

    def __init__(self, engine: Engine, project_id: int) -> None:
        self.engine = engine
        self.project_id = project_id

    def put(self, host: str, programs: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep what a step on ``host`` found (``name -> {"path", "version"}``), replacing what was known."""
        if not programs:
            return
        asked_at = now()
        rows = [{"project_id": self.project_id, "host": host, "program": name, "path": found.get("path"),
                 "version": found.get("version"), "asked_at": asked_at} for name, found in programs.items()]
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(delete(_PROGRAMS).where(_PROGRAMS.c.project_id == self.project_id,
                                                 _PROGRAMS.c.host == host,
                                                 _PROGRAMS.c.program.in_(list(programs))))
            conn.execute(insert(_PROGRAMS), rows)

    def get(self, host: str) -> dict[str, dict[str, Any]]:
        """``name -> {"path", "version", "asked_at"}`` of the programs known on ``host``."""
        query = select(_PROGRAMS).where(_PROGRAMS.c.project_id == self.project_id, _PROGRAMS.c.host == host)
        with self.engine.connect() as conn:
            return {row.program: {"path": row.path, "version": row.version, "asked_at": row.asked_at.isoformat()}
                    for row in conn.execute(query)}
