"""The outcome record of one attempt that ran away from the store (pilot, batch job, SSH host).

Such an attempt never opens the project store (a SQLite store is only opened on its own
machine). It works in its attempt folder ``runs/<run>/jobs/<step>.a<attempt>/`` (created
owner-only) and ends by writing ``outcome.json`` there, atomically (a temporary file renamed
into place): how it ended, its result, where its log is, and the sets it registered (saved
beside it). It also hands the same record to the scheduler (as the dask task's result, or the
scheduler reads the file when the batch job ends). A scheduler killed with ``kill -9`` finds
finished remote attempts from these files when it starts again and records them instead of
running them a second time.

``started`` is created (exclusively) when the attempt begins: a second start of the same
attempt in the same folder (dask re-running a task whose worker left) is refused, so an
attempt never runs twice behind the scheduler's back.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

OUTCOME_FILE = "outcome.json"
STARTED_FILE = "started"
SETS_DIR = "sets"
JOBS_DIR = "jobs"


def attempt_dir(run_dir: str | os.PathLike[str], step_name: str, attempt: int) -> Path:
    """The folder of one attempt of one step: ``<run dir>/jobs/<step>.a<attempt>``."""
    return Path(run_dir) / JOBS_DIR / f"{step_name}.a{attempt}"


class OutcomeError(Exception):
    """An outcome record is missing its fields or is not JSON (a job killed while writing it
    cannot leave this: the record is renamed into place whole)."""


class AttemptReplayed(Exception):
    """This attempt already started once (in this attempt folder): it is not run a second time."""


@dataclass
class StepOutcome:
    """How one attempt ended, as the host that ran it reports it (plain, JSON-able data).

    Paths are as the host sees them; ``sets`` are file names inside the attempt folder's
    ``sets/``. ``error`` is ``"ExceptionType: message"`` when ``ok`` is false.
    """

    step_id: int
    run_id: int
    attempt: int
    ok: bool
    result: dict[str, Any] | None
    error: str | None
    log_path: str
    log_tail: str
    started_at: datetime
    duration_s: float
    peak_memory_mb: float
    worker: str
    pid: int
    proc_start: float | None
    host: str
    job_id: str | None = None
    gpus: list[Any] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    #: the step's declared output files, run-relative (what a recovery brings back from the host)
    outputs: list[str] = field(default_factory=list)
    #: added by the scheduler's side: where the whole log went (its copy here), or why it did not
    log_note: str = ""
    #: the programs the scheduler asked about, as this host found them: name -> {"path", "version"}
    programs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def started_fields(self) -> dict[str, Any]:
        """The step record's start fields from this outcome."""
        return {"worker": self.worker, "pid": self.pid, "proc_start": self.proc_start, "host": self.host,
                "gpus": list(self.gpus), "started_at": self.started_at, "job_id": self.job_id}

    def to_json(self) -> str:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        return json.dumps(data, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, where: str) -> StepOutcome:
        try:
            data = json.loads(text)
            data["started_at"] = datetime.fromisoformat(data["started_at"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise OutcomeError(f"{where}: not a valid outcome record ({exc})") from None


def make_attempt_dir(path: Path) -> Path:
    """Create the attempt folder readable by its owner only (it holds the step's payload)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def mark_started(path: Path) -> None:
    """Claim the attempt; :class:`AttemptReplayed` when it was claimed already."""
    make_attempt_dir(path)
    try:
        fd = os.open(path / STARTED_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AttemptReplayed(f"attempt folder {path} was started already: this attempt does not run twice") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{os.getpid()}\n")


def write_outcome(path: Path, outcome: StepOutcome) -> Path:
    """Write ``outcome.json`` into the attempt folder atomically (a temporary file renamed into place).

    Not fsynced: the record has to outlive the scheduler (a killed process), which the page cache
    and the rename give; a node that loses power loses the step's outputs with it anyway, and
    a record without them would be worse than none. On a shared file system a sync per step
    would cost a round trip to the server for every step of a pilot.
    """
    target = path / OUTCOME_FILE
    tmp = path / f".{OUTCOME_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(outcome.to_json())
    os.replace(tmp, target)
    return target


def read_outcome(path: Path) -> StepOutcome | None:
    """The outcome record in an attempt folder, or None when the attempt left none."""
    target = path / OUTCOME_FILE
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutcomeError(f"{target}: cannot read the outcome record ({exc})") from None
    return StepOutcome.from_json(text, str(target))
