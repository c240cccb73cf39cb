"""Tables of the project store (SQLAlchemy 2 declarative models).

One schema serves SQLite (the embedded default) and PostgreSQL (shared projects). Hot
paths (step transitions, set chunks) use Core statements on these tables; the ORM classes
exist so the schema reads as plain Python. Schema changes bump
:data:`orchestrator.store.migrations.SCHEMA_VERSION` and add an upgrade step there.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orchestrator.names import LOCAL_HOST


class RunState(enum.StrEnum):
    """Life of a protocol run. Only FINISHED, FAILED and CANCELLED are final."""

    CREATED = "created"  # saved, not submitted
    QUEUED = "queued"  # submitted: waits for its inputs or for the scheduler
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (RunState.FINISHED, RunState.FAILED, RunState.CANCELLED)


class StepState(enum.StrEnum):
    """Life of one step of a run."""

    PENDING = "pending"  # waits for the steps it depends on
    QUEUED = "queued"  # handed to the cluster
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (StepState.FINISHED, StepState.FAILED, StepState.CANCELLED)


class StreamState(enum.StrEnum):
    """A set is OPEN while items may still arrive (streaming), CLOSED once complete."""

    OPEN = "open"
    CLOSED = "closed"


def _state(length: int = 16) -> Any:
    return String(length)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class SchemaInfo(Base):
    """Key/value facts about the store itself: the app that wrote it and its schema version."""

    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(256))
    email: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Run(Base):
    """One execution of a protocol with its params: the unit a user creates and watches."""

    __tablename__ = "runs"
    # AUTOINCREMENT: a deleted run's id is never reused, so its events never point at another run
    __table_args__ = (UniqueConstraint("project_id", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    protocol: Mapped[str] = mapped_column(String(256))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(_state(), index=True)
    host: Mapped[str] = mapped_column(String(128), default=LOCAL_HOST)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)


class Step(Base):
    """One step of a run: a named function call, where it ran and how it went."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    func: Mapped[str] = mapped_column(String(512))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    deps: Mapped[list[Any]] = mapped_column(JSON, default=list)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hash: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(_state(), index=True)
    #: attempts started so far; never reused for a step, so a late write of an old attempt is told apart
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    #: attempts that failed since the run was last (re)started: the retry budget, kept across scheduler restarts
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    host: Mapped[str | None] = mapped_column(String(128))
    worker: Mapped[str | None] = mapped_column(String(256))
    pid: Mapped[int | None] = mapped_column(Integer)
    #: start time of the process ``pid`` (seconds since the epoch): with the pid, its identity
    proc_start: Mapped[float | None] = mapped_column(Float)
    job_id: Mapped[str | None] = mapped_column(String(64))
    gpus: Mapped[list[Any] | None] = mapped_column(JSON)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float | None] = mapped_column(Float)
    peak_memory_mb: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    accounting: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Output(Base):
    """A typed output of a run: a set, a file, or a small value (e.g. a resolution)."""

    __tablename__ = "outputs"
    __table_args__ = (UniqueConstraint("run_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    type_name: Mapped[str] = mapped_column(String(128))
    set_id: Mapped[int | None] = mapped_column(ForeignKey("sets.id", ondelete="SET NULL"))
    path: Mapped[str | None] = mapped_column(Text)
    value: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Provenance(Base):
    """Which run's output feeds which run's input (the edges of the project graph)."""

    __tablename__ = "provenance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consumer_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    param: Mapped[str] = mapped_column(String(128))
    producer_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    output_name: Mapped[str] = mapped_column(String(128))


class Event(Base):
    """Append-only log of every state change (triggers forbid UPDATE and DELETE)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    step_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str | None] = mapped_column(_state())
    host: Mapped[str | None] = mapped_column(String(128))
    job_id: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)


class ItemSetRow(Base):
    """A set's header: item type, size (kept current on every append), stream state."""

    __tablename__ = "sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    #: the step that registered the set (a re-run of that step replaces it)
    step_id: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    item_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    n_chunks: Mapped[int] = mapped_column(Integer, default=0)
    next_id: Mapped[int] = mapped_column(BigInteger, default=1)
    chunk_size: Mapped[int] = mapped_column(Integer)
    stream_state: Mapped[str] = mapped_column(_state())
    columns: Mapped[list[Any]] = mapped_column(JSON)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SetColumnChunk(Base):
    """One column of one chunk of a set: the raw little-endian array bytes and a zone map."""

    __tablename__ = "set_columns"
    set_id: Mapped[int] = mapped_column(ForeignKey("sets.id", ondelete="CASCADE"), primary_key=True)
    chunk_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    column: Mapped[str] = mapped_column(String(64), primary_key=True)
    n_items: Mapped[int] = mapped_column(Integer)
    item_size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    min_value: Mapped[float | None] = mapped_column(Float)
    max_value: Mapped[float | None] = mapped_column(Float)


class SetString(Base):
    """Dictionary of a string column: the set stores codes, this table their values."""

    __tablename__ = "set_strings"
    set_id: Mapped[int] = mapped_column(ForeignKey("sets.id", ondelete="CASCADE"), primary_key=True)
    column: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SetIndexEntry(Base):
    """Where a value of an indexed column sits: its chunks, and its first and last row in each.

    Equality queries read only those chunks, and of each column only that row range.
    """

    __tablename__ = "set_index"
    set_id: Mapped[int] = mapped_column(ForeignKey("sets.id", ondelete="CASCADE"), primary_key=True)
    column: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    chunk_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    first_row: Mapped[int] = mapped_column(Integer)
    last_row: Mapped[int] = mapped_column(Integer)


class HostHealth(Base):
    """Whether a host's queue or workers answer, as the scheduler last saw it (``orch status``,
    ``orch queue``): a host whose commands keep failing shows as unreachable, with why and since when."""

    __tablename__ = "host_health"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    host: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(Text)


class RunProvenanceRow(Base):
    """What a finished run was, kept for good (``orch show RUN --provenance``): the software and
    versions, params, hosts, jobs, who launched it and the fingerprints of its files, as one
    JSON document written when the run finishes (``orchestrator.provenance``)."""

    __tablename__ = "run_provenance"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class HostProgramRow(Base):
    """The version of an external program on one execution host, as a step there found it
    (``relion_refine --version`` through the host's modules and ``programs``): asked once per
    host and scheduler process, and named in the provenance of the runs that ran there."""

    __tablename__ = "host_programs"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    host: Mapped[str] = mapped_column(String(128), primary_key=True)
    program: Mapped[str] = mapped_column(String(256), primary_key=True)
    path: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(Text)
    asked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ix_events_time", Event.time)
Index("ix_steps_run_state", Step.run_id, Step.state)
