"""At submit: does the run fit its host? A step no host can ever give what it asks is refused now.

Every front end creates runs through :func:`orchestrator.scheduler.planner.create_run` (the CLI,
workflow files, the Python API), which calls :func:`check_run_fits` before anything is stored.
It builds the run's steps (``protocol().build_steps(params)``) and checks them with the same
per-kind function the scheduler uses when the run starts (:mod:`orchestrator.hosts.fit`):

- a step too big for its host raises :class:`~orchestrator.hosts.fit.DoesNotFitHost`
  (``orch run`` exits 2, nothing is queued); so does a protocol whose steps cannot be built;
- a run whose inputs are other runs' outputs not produced yet cannot build its steps (a
  protocol makes them from its inputs, and declares no resources apart from them): it is
  checked when the scheduler starts it, and fails then with the same message.

The local host is checked as its hosts file describes it (``orch daemon --workers N`` can change
a worker's share: the check at start uses the daemon's own numbers); ``nvidia-smi`` runs only
when a step asks for GPUs and the file does not say how many there are.
"""

from __future__ import annotations

from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.hosts.config.model import HostConfig, HostKind
from orchestrator.hosts.fit import check_steps
from orchestrator.hosts.local_host import local_host_spec
from orchestrator.project import Project
from orchestrator.protocol import OutputRef, Protocol, ResolvedParams, StepGraph
from orchestrator.scheduler import planner
from orchestrator.store import ProjectStore, RunState


class StepsNotBuilt(UsageError):
    """A protocol's ``steps`` failed on params and inputs that are all there."""


def check_run_fits(store: ProjectStore, project: Project, protocol: type[Protocol], params: ResolvedParams,
                   host: HostConfig) -> bool:
    """Raise DoesNotFitHost when a step of the run cannot run on ``host``; False when the steps
    cannot be built yet (an input is not produced: the scheduler checks at start), else True."""
    graph = buildable_steps(store, project, protocol, params)
    if graph is None:
        return False
    local = None
    if host.kind == HostKind.LOCAL:
        local = local_host_spec(host, find_gpus=any(step.resources.gpus for step in graph))
    check_steps(host, graph, local)
    return True


def buildable_steps(store: ProjectStore, project: Project, protocol: type[Protocol],
                    params: ResolvedParams) -> StepGraph | None:
    """The run's steps, or None while one of its inputs comes from a run that has not finished."""
    refs: dict[str, OutputRef] = {}
    for param_name, pointer in params.pointers().items():
        producer = store.runs.get(pointer.run)
        if producer.run_state is not RunState.FINISHED:
            return None
        refs[param_name] = planner.output_ref(store, project, producer, pointer.output)
    try:
        return protocol().build_steps(params.bind_inputs(refs) if refs else params)
    except OrchestratorError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's error, named and handed on, as at start
        raise StepsNotBuilt(f"protocol {protocol.name}: its steps cannot be built from these params: "
                            f"{type(exc).__name__}: {exc}") from exc
