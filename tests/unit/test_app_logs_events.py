"""The application layer's logs and events: read, follow until the run ends, filter by step."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from lifecycle_helpers import put_run, put_step

from orchestrator.app import events, logs
from orchestrator.errors import NotFoundError, UsageError
from orchestrator.project import Project
from orchestrator.store import RunState, StepState


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def make_run(project: Project, name: str, steps: dict[str, StepState], run_state: RunState) -> int:
    with project.open_store() as store:
        run = store.runs.create("testkit.fanout", {}, name=name)
        put_run(store, run.id, RunState.RUNNING)
        ids = store.steps.add(run.id, [{"name": step, "func": "orch_testkit.steps:part_step"} for step in steps])
        for step, state in steps.items():
            put_step(store, ids[step], state, **({"error": "boom"} if state is StepState.FAILED else {}))
        if run_state is not RunState.RUNNING:
            put_run(store, run.id, run_state, error="step b failed")
    return run.id


def write_log(project: Project, run: str, step: str, text: str) -> Path:
    path = logs.step_log_path(project, run, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_logs_of_every_step_or_one(project: Project) -> None:
    make_run(project, "broken", {"a": StepState.FINISHED, "b": StepState.FAILED, "c": StepState.PENDING},
             RunState.FAILED)
    write_log(project, "broken", "a", "reading\nwrote 3 files\n")
    write_log(project, "broken", "b", "Traceback\nValueError: no newline")
    read = logs.read_logs(project.path, "broken")
    assert read.run.name == "broken" and read.run.state == "failed"
    assert [(log.step, log.state, log.exists) for log in read.logs] == [
        ("a", "finished", True), ("b", "failed", True), ("c", "pending", False)]
    assert read.logs[1].text == "Traceback\nValueError: no newline"  # the unfinished last line too
    (only,) = logs.read_logs(project.path, "broken", "a").logs
    assert only.text == "reading\nwrote 3 files\n"
    with pytest.raises(NotFoundError, match="run broken has no step 'd'; its steps: a, b, c"):
        logs.read_logs(project.path, "broken", "d")


def test_follow_gives_whole_lines_until_the_run_ends(project: Project) -> None:
    run_id = make_run(project, "busy", {"a": StepState.RUNNING}, RunState.RUNNING)
    path = write_log(project, "busy", "a", "first line\nhalf")

    def finish() -> None:
        time.sleep(0.4)
        with path.open("a") as handle:
            handle.write(" line\nlast, no newline")
        with project.open_store() as store:
            put_run(store, run_id, RunState.FINISHED)

    writer = threading.Thread(target=finish)
    writer.start()
    items = list(logs.follow_logs(project.path, "busy", poll_s=0.05))
    writer.join()
    texts = [item.text for item in items if isinstance(item, logs.LogChunk)]
    assert texts[0] == "first line\n" and "".join(texts) == "first line\nhalf line\nlast, no newline"
    assert all(text.endswith("\n") for text in texts[:-1])  # whole lines while the run goes on
    assert items[-1] == logs.RunEnded("busy", "finished")


def test_follow_of_an_ended_run_returns_at_once(project: Project) -> None:
    make_run(project, "done", {"a": StepState.FINISHED}, RunState.FINISHED)
    write_log(project, "done", "a", "all")
    assert list(logs.follow_logs(project.path, "done", "a")) == [logs.LogChunk("a", "all"),
                                                                 logs.RunEnded("done", "finished")]


def test_events_of_a_run_a_step_and_after_an_id(project: Project) -> None:
    make_run(project, "broken", {"a": StepState.FINISHED, "b": StepState.FAILED}, RunState.FAILED)
    listed = events.list_events(project.path, "broken")
    assert (listed[0].kind, listed[0].state, listed[0].message) == ("run", "created", "created from testkit.fanout")
    assert listed[-1].state == "failed" and listed[-1].message == "step b failed"
    assert listed[0].time.tzinfo is not None
    step_b = events.list_events(project.path, "broken", step="b")
    assert [(e.step, e.state) for e in step_b] == [("b", "queued"), ("b", "running"), ("b", "failed")]
    assert set(step_b[0].to_dict()) == {"id", "time", "kind", "step", "state", "host", "job_id", "message"}
    later = events.list_events(project.path, "broken", after_id=listed[-3].id)
    assert [e.id for e in later] == [e.id for e in listed[-2:]]
    assert len(events.list_events(project.path, limit=2)) == 2
    assert [e.id for e in events.list_events(project.path)] == [e.id for e in listed]  # the only run
    with pytest.raises(UsageError, match="step 'b': name its run too"):
        events.list_events(project.path, step="b")
    with pytest.raises(NotFoundError, match="run broken has no step 'z'"):
        events.list_events(project.path, "broken", step="z")


def test_follow_events_ends_with_the_runs_last_event(project: Project) -> None:
    run_id = make_run(project, "nap", {"a": StepState.RUNNING}, RunState.RUNNING)

    def finish() -> None:
        time.sleep(0.3)
        with project.open_store() as store:
            (step,) = store.steps.list(run_id)
            store.lifecycle.finish_step(step.id, step.attempt, None)
            put_run(store, run_id, RunState.FINISHED)

    writer = threading.Thread(target=finish)
    writer.start()
    followed = list(events.follow_events(project.path, "nap", poll_s=0.05))
    writer.join()
    assert [(e.step, e.state) for e in followed[-2:]] == [("a", "finished"), (None, "finished")]
    assert [e.id for e in followed] == [e.id for e in events.list_events(project.path, "nap")]


def test_a_big_log_is_followed_a_bounded_read_at_a_time(project: Project) -> None:
    """A follower holds about one read (1 MiB) of a log, however big, and loses nothing."""
    make_run(project, "big", {"a": StepState.FINISHED}, RunState.FINISHED)
    line = "x" * 99 + "\n"
    text = line * 35_000 + "no newline at the end"  # 3.5 MB
    write_log(project, "big", "a", text)
    chunks = list(logs.follow_logs(project.path, "big", "a"))
    assert chunks[-1] == logs.RunEnded("big", "finished")
    pieces = [chunk.text for chunk in chunks[:-1]]
    assert "".join(pieces) == text
    assert len(pieces) >= 4 and max(len(piece) for piece in pieces) <= 2 * logs.MAX_READ
