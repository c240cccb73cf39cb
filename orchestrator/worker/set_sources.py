"""Where a step's input sets come from: the store itself, or files the scheduler exported.

The worker gives each step one :class:`~orchestrator.protocol.sets.SetSource` as
``ctx.sets``; the step calls ``ctx.open_set(set_id)`` and never learns which it got:

* :class:`StoreSetSource` reads the project store directly: on the store's own machine
  (local-host workers), or from any host with a PostgreSQL store it can reach;
* :class:`ExportedSetSource` reads ``set_<id>.npz`` files the scheduler exported into a
  folder (:func:`orchestrator.store.set_files.export_set`) for a step that runs where a
  SQLite store cannot be opened (pilots, batch jobs, SSH hosts).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from sqlalchemy import Engine, Table, select

from orchestrator.errors import NotFoundError
from orchestrator.protocol.sets import SetReader
from orchestrator.store.engine import make_engine
from orchestrator.store.project_store import normalise_url
from orchestrator.store.schema import ItemSetRow, Run
from orchestrator.store.set_files import ExportedSet, SetFileError, exported_set_path
from orchestrator.store.sets import ItemSet

_SETS = cast(Table, ItemSetRow.__table__)
_RUNS = cast(Table, Run.__table__)


class StoreSetSource:
    """Sets of the project that run ``run_id`` belongs to, read from the store at ``store_url``.

    The engine is made on first use, through SQLite itself and never a plain ``open()`` of
    the store's file: closing any descriptor of a file drops every POSIX lock the process
    holds on it, the WAL-mode lock of the worker's own store connection included, and
    another process that then closes its last connection believes it is alone, checkpoints
    and deletes the WAL under the worker ("disk I/O error", seen in the demo once per few
    runs). That is also why the store is not checked or upgraded here: the scheduler has
    done it. :meth:`close` (or the ``with`` block) disposes of the engine when the step ends.
    """

    def __init__(self, store_url: str, run_id: int) -> None:
        self.url = normalise_url(store_url)
        self.run_id = run_id
        self._engine: Engine | None = None
        self._project_id: int | None = None

    @property
    def where(self) -> str:
        return self.url.split("@")[-1]

    def _connect(self) -> tuple[Engine, int]:
        if self._engine is not None and self._project_id is not None:
            return self._engine, self._project_id
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                project_id = conn.execute(select(_RUNS.c.project_id).where(_RUNS.c.id == self.run_id)).scalar()
        except BaseException:
            engine.dispose()
            raise
        if project_id is None:
            engine.dispose()
            raise NotFoundError(f"run {self.run_id} is not in the store {self.where}")
        self._engine, self._project_id = engine, int(project_id)
        return engine, int(project_id)

    def open(self, set_id: int) -> SetReader:
        """The stored set ``set_id``; refused when it belongs to another project of the store."""
        engine, project_id = self._connect()
        with engine.connect() as conn:
            row = conn.execute(select(_SETS.c.run_id, _RUNS.c.project_id)
                               .select_from(_SETS.outerjoin(_RUNS, _RUNS.c.id == _SETS.c.run_id))
                               .where(_SETS.c.id == int(set_id))).first()
        if row is None:
            raise NotFoundError(f"set {set_id} does not exist in the store {self.where}")
        if row.run_id is not None and row.project_id != project_id:
            raise NotFoundError(f"set {set_id} belongs to another project of the store {self.where}")
        return ItemSet(engine, int(set_id))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine, self._project_id = None, None

    def __enter__(self) -> StoreSetSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExportedSetSource:
    """Sets exported into ``directory`` as ``set_<id>.npz`` (one file per set the step reads)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def open(self, set_id: int) -> SetReader:
        path = exported_set_path(self.directory, set_id)
        if not path.is_file():
            raise SetFileError(f"set {set_id} was not exported for this step: no {path.name} in {self.directory}")
        exported = ExportedSet(path)
        if exported.id != int(set_id):
            raise SetFileError(f"{path}: holds set {exported.id}, not set {set_id}")
        return exported

    def close(self) -> None:
        """Nothing to release (files are opened per read); here so both sources close alike."""


__all__ = ["ExportedSetSource", "StoreSetSource"]
