"""Tables of the transfer ledger (files sent to hosts without the shared file system).

Defined on the store's ``Base`` so that ``create_schema`` creates them with the rest.

``transfer_files`` says what each host holds: one row per (host, remote path) with the
fingerprint of the local file it is a copy of. Staging reads it (with a local ``stat``)
to send a file once per host, whatever the number of steps that read it, and to send it
again when it changed at the source. ``transfers`` is the journal: one row per file
moved, for the run's provenance and for ``orch transfer status`` while it moves.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.store.schema import Base


class TransferState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (TransferState.DONE, TransferState.FAILED)


class TransferDirection(enum.StrEnum):
    IN = "in"  # project -> host (stage-in)
    OUT = "out"  # host -> project (stage-out)


class TransferFile(Base):
    """The ledger: host ``host`` holds at ``remote_path`` a verified copy of ``local_path``."""

    __tablename__ = "transfer_files"
    __table_args__ = (UniqueConstraint("host", "remote_path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(128))
    remote_path: Mapped[str] = mapped_column(Text)
    local_path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)  # of the local file, when it was last known equal
    sha256: Mapped[str] = mapped_column(String(64))
    remote_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    direction: Mapped[str] = mapped_column(String(8))  # how the two copies came to be equal
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TransferRecord(Base):
    """One file moved (or moving) for a run: bytes, seconds, host, direction, outcome."""

    __tablename__ = "transfers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(128))
    direction: Mapped[str] = mapped_column(String(8))
    local_path: Mapped[str] = mapped_column(Text)
    remote_path: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    bytes_total: Mapped[int] = mapped_column(BigInteger)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    resumed_from: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes already there from a previous try
    seconds: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str | None] = mapped_column(String(32))  # e.g. "stream/openssh", "batch/paramiko"
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_transfers_state", TransferRecord.state)
Index("ix_transfer_files_local", TransferFile.host, TransferFile.local_path)
