"""The scheduler: takes runs whose inputs are ready and runs their steps as dask tasks.

One scheduler per project. Its loop:

1. every ``poll_interval_s``, read the store: queued runs to start, active runs that were
   cancelled meanwhile (``orch cancel`` writes the store; the scheduler follows);
2. submit the steps whose dependencies have finished (``Client.submit`` with the step's
   resources and a unique key), recording QUEUED with the step's hash in one transaction
   per batch;
3. handle finished tasks, pushed by dask's done-callbacks into a queue: a local worker has
   already recorded RUNNING/FINISHED/FAILED; a step that ran away from the store (pilot, batch
   job, SSH host) returns its outcome, recorded here. A failure is retried while the step's
   retry budget (counted in the store) lasts, a dead worker is recorded as the attempt's
   failure and retried, and a run whose steps are all done gets its outputs registered and is
   marked FINISHED in one transaction.

Every state change goes through :mod:`orchestrator.store.lifecycle`, fenced by the attempt:
a step that finished is never queued again, and an old attempt cannot write over a new one.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from distributed import Client, Future

from orchestrator.errors import OrchestratorError
from orchestrator.names import LOCAL_HOST
from orchestrator.plugins import PluginRegistry, discover
from orchestrator.project import Project
from orchestrator.protocol import Protocol, ResolvedParams, Step, StepGraph
from orchestrator.provenance.recorder import ProvenanceRecorder
from orchestrator.provenance.software import version_commands
from orchestrator.scheduler import planner
from orchestrator.scheduler.executors import HostExecutor, HostExecutors, HostUnusable
from orchestrator.scheduler.executors.local import LocalExecutor
from orchestrator.scheduler.outcomes import (
    export_input_sets,
    needs_exported_sets,
    record_outcome,
    record_plain_ends,
)
from orchestrator.store import ProjectStore, QueuedAttempt, RunOutput, RunRecord, RunState, StepState
from orchestrator.worker.outcome import StepOutcome, attempt_dir
from orchestrator.worker.processes import step_token
from orchestrator.worker.runtime import StepFailed, StepPayload

log = logging.getLogger(__name__)


@dataclass
class SchedulerConfig:
    poll_interval_s: float = 0.5
    default_retries: int = 2
    max_in_flight: int = 2000
    #: the name of the host whose cluster ``client`` is (runs of other hosts get their own executor)
    host: str = LOCAL_HOST
    worker_cpus: int = 1
    worker_gpus: int = 0
    gpu_sharing: bool = False


@dataclass
class ActiveRun:
    """What the scheduler keeps in memory about a run it is executing."""

    run: RunRecord
    protocol: type[Protocol]
    params: ResolvedParams
    graph: StepGraph
    executor: HostExecutor
    step_ids: dict[str, int]
    remaining: set[str]
    finished: set[str] = field(default_factory=set)
    in_flight: dict[str, Future] = field(default_factory=dict)
    #: the attempt of each step now in the store (the next one submitted is this + 1)
    attempts: dict[str, int] = field(default_factory=dict)
    #: where steps that cannot open the store read the run's input sets ("" when they need none)
    sets_dir: str = ""
    dependents: dict[str, list[str]] = field(default_factory=dict)
    waiting_deps: dict[str, int] = field(default_factory=dict)
    ready: deque[str] = field(default_factory=deque)


class Scheduler:
    """Executes a project's queued runs (see the module docstring).

    ``client`` is the dask client of the local host's cluster (or ``start_local`` starts that
    cluster when a local step first needs it); runs on other hosts go to executors made from
    the project's hosts files on first use (``executors``).
    """

    def __init__(self, project: Project, client: Client | None, store: ProjectStore | None = None,
                 registry: PluginRegistry | None = None, config: SchedulerConfig | None = None,
                 executors: HostExecutors | None = None,
                 start_local: Callable[[], tuple[Any, Client]] | None = None) -> None:
        self.project = project
        self.store = store or project.open_store()
        self.registry = registry or discover()
        self.config = config or SchedulerConfig()
        self.executors = executors or HostExecutors(
            LocalExecutor(client, self.config.host, self.config.worker_cpus, self.config.worker_gpus,
                          self.config.gpu_sharing, start=start_local), project.path, self.store)
        self.active: dict[int, ActiveRun] = {}
        self.done_queue: queue.Queue[tuple[int, str, Future]] = queue.Queue()
        self.key_owner: dict[str, tuple[int, str]] = {}
        self._last_poll = 0.0
        self.on_event: Callable[[str], None] = lambda message: None
        self.provenance = ProvenanceRecorder(self.store, project, self.registry)
        #: (host, plugin) whose programs' versions a step on that host has reported (provenance)
        self.programs_known: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ main loop
    def step_once(self, wait_s: float) -> None:
        now = time.monotonic()
        if now - self._last_poll >= self.config.poll_interval_s:
            self._last_poll = now
            self.poll_store()
            self.executors.tick()
        self.record_started()
        self.submit_ready()
        self.handle_completions(wait_s)

    def wake(self) -> None:
        """Read the store on the next loop rather than at the next poll (``orch run`` signals
        the daemon with SIGUSR1 after queueing, so a new run starts at once)."""
        self._last_poll = 0.0

    def run_until_idle(self, idle_exit_s: float | None = None, stop: Callable[[], bool] = lambda: False) -> None:
        """Loop until nothing is queued or running for ``idle_exit_s`` (forever if None)."""
        idle_since: float | None = None
        while not stop():
            self.step_once(wait_s=min(0.2, self.config.poll_interval_s))
            busy = bool(self.active) or self.provenance.busy or bool(self.store.runs.list([RunState.QUEUED]))
            if busy:
                idle_since = None
            elif idle_exit_s is not None:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= idle_exit_s:
                    return

    # ------------------------------------------------------------------ runs
    def poll_store(self) -> None:
        for run in self.store.runs.list([RunState.QUEUED, RunState.RUNNING]):
            if run.id not in self.active:
                self._try_start(run)
        for run_id in list(self.active):
            state = self.store.runs.get(run_id).run_state
            if state is RunState.CANCELLED:
                self._drop_run(run_id, "run cancelled")

    def _try_start(self, run: RunRecord) -> None:
        lifecycle = self.store.lifecycle
        try:
            protocol = self.registry.protocol(run.protocol)
            inputs = planner.resolve_inputs(self.store, self.project, run)
            params = protocol.validate(run.params, base_dir=self.project.path).bind_inputs(inputs)
            graph = protocol().build_steps(params)
        except planner.InputsNotReady:
            return
        except planner.InputsFailed as exc:
            lifecycle.fail_run(run.id, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any planning error fails the run with its message
            log.exception("run %s cannot start", run.name)
            lifecycle.fail_run(run.id, f"cannot start: {type(exc).__name__}: {exc}")
            return
        try:
            executor = self.executors.get(run.host)
            executor.check(graph)
        except HostUnusable as exc:
            lifecycle.fail_run(run.id, f"cannot start: {exc}")
            return
        run_dir = self.project.run_dir(run.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        sets_dir = ""
        if executor.reports and needs_exported_sets(self.store):
            try:
                sets_dir = str(export_input_sets(self.store, inputs.values(), run_dir))
            except OrchestratorError as exc:
                lifecycle.fail_run(run.id, f"cannot start: exporting its input sets: {exc}")
                return
        plan = planner.plan_run(self.store, run, graph, run_dir, self.config.default_retries)
        if run.run_state is RunState.QUEUED:
            lifecycle.start_run(run.id, message=f"{len(plan.to_run)} step(s) to run, {len(plan.kept)} unchanged")
        active = ActiveRun(self.store.runs.get(run.id), protocol, params, graph, executor, plan.step_ids,
                           remaining=set(plan.to_run), finished=set(plan.kept), sets_dir=sets_dir)
        for step in graph.topological_order():
            active.dependents.setdefault(step.name, [])
            for dep in step.deps:
                active.dependents.setdefault(dep, []).append(step.name)
        for name in plan.to_run:
            active.waiting_deps[name] = sum(1 for d in graph[name].deps if d not in active.finished)
            if active.waiting_deps[name] == 0:
                active.ready.append(name)
        active.attempts.update(self.store.steps.column(run.id, "attempt"))
        self.active[run.id] = active
        self.on_event(f"run {run.name} started")
        if not active.remaining:
            self._finish_run(active)

    def _finish_run(self, active: ActiveRun) -> None:
        run = active.run
        results = self.store.steps.column(run.id, "result")
        try:
            outputs = active.protocol().collect_outputs(active.params, results)
        except Exception as exc:  # noqa: BLE001 - a protocol's output error fails its run, not the scheduler
            self.store.lifecycle.fail_run(run.id, f"outputs: {exc}")
        else:
            records = []
            for output in outputs.values():
                value = output.value if isinstance(output.value, dict) or output.value is None else \
                    {"value": output.value}
                set_id = value.get("set_id") if value and output.type_name.startswith("SetOf") else None
                records.append(RunOutput(output.name, output.type_name, set_id=set_id, path=output.path,
                                         value=value))
            if self.store.lifecycle.finish_run(run.id, records, message=f"{len(active.finished)} step(s)"):
                self.provenance.submit(run.id)  # fingerprints are read beside the loop
        self.active.pop(run.id, None)
        self.on_event(f"run {run.name} ended")

    def _fail_run(self, active: ActiveRun, reason: str) -> None:
        self._drop_run(active.run.id, reason)
        self.store.lifecycle.fail_run(active.run.id, reason)

    def _drop_run(self, run_id: int, reason: str) -> None:
        """Stop scheduling a run: its unfinished steps are recorded CANCELLED first (so no worker's
        late end and no retry revives them), then its tasks, processes and jobs are stopped."""
        active = self.active.pop(run_id, None)
        if active is None:
            return
        in_flight_ids = {active.step_ids[name] for name in active.in_flight}
        records = [s for s in self.store.steps.list(run_id) if s.id in in_flight_ids]
        unfinished = [active.step_ids[name] for name in active.remaining if name not in active.finished]
        self.store.lifecycle.cancel_steps(unfinished, reason,
                                          sources=(StepState.PENDING, StepState.QUEUED, StepState.RUNNING))
        futures = list(active.in_flight.values())
        if futures or records:
            active.executor.cancel(futures, records, self.store.url)

    # ------------------------------------------------------------------ steps
    def submit_ready(self) -> None:
        """Submit ready steps, up to ``max_in_flight`` tasks handed to dask at once.

        Refills wait until half the budget is free: dask still holds plenty of work then, and
        the steps go out in large batches, each recorded QUEUED in one transaction, instead of
        a store write per completed step competing with the workers' own writes.
        """
        in_flight = sum(len(a.in_flight) for a in self.active.values())
        budget = self.config.max_in_flight - in_flight
        if in_flight and budget < self.config.max_in_flight // 2:
            return
        for active in list(self.active.values()):
            if budget <= 0:
                return
            batch: list[tuple[str, StepPayload, Step]] = []
            while active.ready and budget > 0:
                name = active.ready.popleft()
                batch.append(self._payload(active, name))
                budget -= 1
            if batch:
                self._submit(active, batch)

    def _payload(self, active: ActiveRun, name: str) -> tuple[str, StepPayload, Step]:
        step = active.graph[name]
        attempt = active.attempts.get(name, 0) + 1
        step_id = active.step_ids[name]
        run_dir = self.project.run_dir(active.run.name)
        executor = active.executor
        payload = StepPayload(
            store_url="" if executor.reports and needs_exported_sets(self.store) else self.store.url,
            project_dir=str(self.project.path), run_id=active.run.id, run_dir=str(run_dir), step_id=step_id,
            step_name=name, func=step.func, args=step.args, attempt=attempt,
            log_path=str(run_dir / "logs" / f"{name}.log"), host=active.run.host, params=active.run.params,
            token=step_token(self.store.url, step_id, attempt), programs=executor.programs,
            sets_dir=active.sets_dir, outputs=[str(p) for p in step.outputs],
            version_commands=self._version_commands(active))
        return name, payload, step

    def _version_commands(self, active: ActiveRun) -> dict[str, list[str]]:
        """The programs a step on another host asks the versions of, until one step there has
        told (provenance: once per host, plugin and scheduler process). The local host's are
        asked by the scheduler itself when it records a run."""
        if not active.executor.reports:
            return {}
        plugin = self.registry.plugin_of(active.run.protocol)
        if (active.run.host, plugin.name) in self.programs_known:
            return {}
        return version_commands(plugin, active.executor.programs)

    def _note_programs(self, active: ActiveRun, outcome: StepOutcome) -> None:
        if outcome.programs:
            self.store.host_programs.put(active.run.host, outcome.programs)
            self.programs_known.add((active.run.host, self.registry.plugin_of(active.run.protocol).name))

    def _submit(self, active: ActiveRun, batch: list[tuple[str, StepPayload, Step]]) -> None:
        """Queue a batch of new attempts in one transaction, then hand those queued to the host.

        An attempt the lifecycle refuses is not submitted: its step finished meanwhile (a worker
        that wrote FINISHED and then died looked like a failure) or the run is being cancelled.
        """
        run_dir = self.project.run_dir(active.run.name)
        queued_at = datetime.now(UTC)
        queued = set(self.store.lifecycle.queue_steps([
            QueuedAttempt(payload.step_id, payload.attempt, active.run.host,
                          hash=planner.current_hash(step, run_dir), queued_at=queued_at)
            for _name, payload, step in batch]))
        accepted = []
        for name, payload, step in batch:
            if payload.step_id in queued:
                active.attempts[name] = payload.attempt
                accepted.append((name, payload, step))
            else:
                self._not_queued(active, name)
        if not accepted:
            return
        keys = [f"step-{payload.step_id}-a{payload.attempt}-{active.run.id}" for _name, payload, _step in accepted]
        futures = active.executor.submit_many([(payload, step, key)
                                               for (_name, payload, step), key in zip(accepted, keys, strict=True)])
        for (name, _payload, _step), key, future in zip(accepted, keys, futures, strict=True):
            active.in_flight[name] = future
            self.key_owner[key] = (active.run.id, name)
            future.add_done_callback(lambda f, r=active.run.id, n=name: self.done_queue.put((r, n, f)))

    def _not_queued(self, active: ActiveRun, name: str) -> None:
        row = self.store.steps.get(active.step_ids[name])
        active.attempts[name] = row.attempt
        if row.step_state is StepState.FINISHED:
            log.info("step %s of run %s finished already: not run again", name, active.run.name)
            self._step_finished(active, name)
        elif row.step_state in (StepState.PENDING, StepState.FAILED):
            log.warning("step %s of run %s is at attempt %d in the store: queued again from there", name,
                        active.run.name, row.attempt)
            active.ready.append(name)  # its attempt count now follows the store's
        elif not row.step_state.is_final:
            log.warning("step %s of run %s is %s (attempt %d): not queued again", name, active.run.name, row.state,
                        row.attempt)

    def handle_completions(self, wait_s: float) -> None:
        try:
            first = self.done_queue.get(timeout=wait_s)
        except queue.Empty:
            return
        batch = [first]
        while True:
            try:
                batch.append(self.done_queue.get_nowait())
            except queue.Empty:
                break
        plain: list[tuple[ActiveRun, str, StepOutcome]] = []  # reported ends recorded together below
        for run_id, name, future in batch:
            self.key_owner.pop(str(future.key), None)
            active = self.active.get(run_id)
            if active is None or active.in_flight.get(name) is not future:
                continue  # the run was dropped, or this is a stale attempt
            del active.in_flight[name]
            if active.executor.reports and future.status == "finished":
                outcome = future.result()
                if isinstance(outcome, StepOutcome) and outcome.ok and not outcome.sets:
                    plain.append((active, name, outcome))
                    continue
            self._on_step_done(active, name, future)
        if plain:
            self._record_plain(plain)

    def _record_plain(self, plain: list[tuple[ActiveRun, str, StepOutcome]]) -> None:
        """Reported steps that ended well without sets: one transaction for the batch (a pilot
        finishes hundreds of short steps a second), then each on the usual path."""
        recorded = record_plain_ends(self.store, [outcome for _active, _name, outcome in plain])
        for active, _name, outcome in plain:
            self._note_programs(active, outcome)
        for active, name, outcome in plain:
            if self.active.get(active.run.id) is not active:
                continue  # a step before it in the batch finished or failed its run
            if outcome.step_id in recorded:
                self._step_finished(active, name)
            else:  # refused (cancelled, superseded): settle it as the one-by-one path does
                self._after_failure(active, name, "its end was not recorded")

    def _on_step_done(self, active: ActiveRun, name: str, future: Future) -> None:
        status = future.status
        if status == "cancelled":
            return
        step_id = active.step_ids[name]
        attempt = active.attempts[name]
        if status == "finished":
            if not active.executor.reports:
                # A local worker recorded its end itself; fetching the result would cost a round
                # trip per step.
                self._step_finished(active, name)
                return
            outcome = future.result()
            if isinstance(outcome, StepOutcome):
                self._record(active, name, outcome)
            row = self.store.steps.get(step_id)
            if row.step_state is StepState.FINISHED:
                self._step_finished(active, name)
                return
            error: BaseException = StepFailed(outcome.error if isinstance(outcome, StepOutcome) else "no outcome")
        else:
            error = future.exception() or RuntimeError("the task ended without a result")
        if not isinstance(error, StepFailed):
            # the worker could not record anything: it died, the task never started, or dask
            # re-ran an attempt whose worker left (refused: attempts run once)
            reason = f"worker lost: {type(error).__name__}: {error}"
            self.store.lifecycle.fail_step(step_id, attempt, reason, message=reason)
        self._after_failure(active, name, str(error))

    def _record(self, active: ActiveRun, name: str, outcome: StepOutcome) -> None:
        run_dir = self.project.run_dir(active.run.name)
        self._note_programs(active, outcome)
        try:
            record_outcome(self.store, outcome, attempt_dir(run_dir, name, outcome.attempt))
        except OrchestratorError as exc:  # e.g. a registered set the store refuses: the attempt failed
            log.warning("step %s of run %s: its end cannot be recorded: %s", name, active.run.name, exc)
            self.store.lifecycle.fail_step(outcome.step_id, outcome.attempt, f"recording its end failed: {exc}",
                                           started=outcome.started_fields())

    def _step_finished(self, active: ActiveRun, name: str) -> None:
        active.finished.add(name)
        active.remaining.discard(name)
        for child in active.dependents.get(name, []):
            if child in active.remaining:
                active.waiting_deps[child] -= 1
                if active.waiting_deps[child] == 0:
                    active.ready.append(child)
        if not active.remaining:
            self._finish_run(active)

    def _after_failure(self, active: ActiveRun, name: str, detail: str) -> None:
        """A failed attempt: retried while the step's budget in the store lasts, else the run fails."""
        row = self.store.steps.get(active.step_ids[name])
        if row.step_state is StepState.FINISHED:  # it finished, then its worker died: keep the end
            self._step_finished(active, name)
            return
        if self.store.runs.get(active.run.id).run_state is RunState.CANCELLED:
            self._drop_run(active.run.id, "run cancelled")
            return
        if row.failed_attempts <= row.max_retries:
            log.info("retrying step %s of run %s (attempt %d failed)", name, active.run.name, row.attempt)
            active.ready.append(name)
            return
        self._fail_run(active, f"step '{name}' failed after {row.failed_attempts} attempt(s): "
                               f"{(row.error or detail).splitlines()[0]}")

    def record_started(self) -> None:
        """Write RUNNING for the steps the hosts announced (steps away from the store tell through
        dask events, collected by their executors)."""
        for executor in self.executors.all():
            for step_id, attempt, fields in executor.started():
                self.store.lifecycle.start_step(step_id, attempt, **fields)

    def close_hosts(self) -> None:
        """Release the hosts this scheduler opened (pilots cancelled, pollers stopped, a local
        cluster it started closed; a client passed in stays its caller's), after the provenance
        records still being written."""
        self.provenance.close()
        self.executors.close()

    def close(self) -> None:
        self.close_hosts()
        self.store.close()

