"""The testkit protocols. Each is a few lines: params, outputs, and ``steps``."""

from __future__ import annotations

from orch_testkit.steps import (
    derive_step,
    flaky_step,
    gather_step,
    hold_step,
    noop_step,
    part_step,
    particles_step,
    select_step,
    sleep_step,
    write_files_step,
)
from orchestrator.protocol import (
    BoolParam,
    FloatParam,
    IntParam,
    PointerParam,
    Protocol,
    ProtocolError,
    ResolvedParams,
    Resources,
    StepGraph,
    StrParam,
)

_COUNT_HELP = "How many independent steps the run has."


class Noop(Protocol):
    """K steps that do nothing: the scheduler's per-step overhead, and nothing else."""

    name = "testkit.noop"
    label = "No-op steps"
    params = [IntParam("count", default=1, min=0, help=_COUNT_HELP)]

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        for i in range(p.count):
            graph.add(f"noop_{i}", noop_step)
        return graph


class Sleep(Protocol):
    """K independent steps, each sleeping ``seconds`` with the given resources."""

    name = "testkit.sleep"
    label = "Sleeping steps"
    params = [
        IntParam("count", default=1, min=0, help=_COUNT_HELP),
        FloatParam("seconds", default=1.0, min=0.0, help="How long each step sleeps."),
        IntParam("cpus", default=1, min=1, help="CPUs each step asks for."),
        IntParam("gpus", default=0, min=0, help="GPUs each step asks for (it reports which it got)."),
        IntParam("mpi_ranks", default=1, min=1, help="MPI ranks each step asks for (it starts none)."),
        IntParam("memory_mb", optional=True, min=1, help="Memory each step asks for, in MB (empty: none)."),
    ]

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        resources = Resources(p.cpus, p.gpus, memory_mb=p.memory_mb, mpi_ranks=p.mpi_ranks)
        for i in range(p.count):
            graph.add(f"sleep_{i}", sleep_step, {"seconds": p.seconds}, resources=resources)
        return graph


class Fail(Protocol):
    """One step that fails its first ``fail_times`` attempts (or always), for retry tests."""

    name = "testkit.fail"
    label = "Failing step"
    params = [
        BoolParam("fail_always", default=False, help="Fail on every attempt."),
        IntParam("fail_times", default=1, min=0, condition="not fail_always",
                 help="Attempts that fail before one succeeds."),
        IntParam("retries", optional=True, min=0, help="Retries of the step (empty: the host's default)."),
    ]  # fmt: skip

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        args = {"fail_times": p.fail_times, "fail_always": p.fail_always}
        graph.add("flaky", flaky_step, args, outputs=["fail_counter.txt"], retries=p.retries)
        return graph


class Produce(Protocol):
    """Write ``count`` files of ``size`` bytes into the run dir and publish them as an output."""

    name = "testkit.produce"
    label = "Produce files"
    params = [
        IntParam("count", default=3, min=0, help="Number of files."),
        IntParam("size", default=1024, min=0, help="Size of each file in bytes."),
        IntParam("seed", default=0, help="Seed of the file contents (same seed, same bytes)."),
    ]
    outputs = {"files": "Files"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        files = [f"out/file_{i:04d}.bin" for i in range(p.count)]
        args = {"folder": "out", "count": p.count, "size": p.size, "seed": p.seed}
        graph.add("write_files", write_files_step, args, outputs=files)
        return graph


class Fanout(Protocol):
    """K parallel steps, then one ``gather`` step that sums their values (1 + 2 + ... + K)."""

    name = "testkit.fanout"
    label = "Fan-out and gather"
    params = [IntParam("count", default=4, min=1, help="Number of parallel steps.")]
    outputs = {"total": "Value"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        files = [f"parts/part_{i:04d}.json" for i in range(p.count)]
        parts = [graph.add(f"part_{i}", part_step, {"index": i}, outputs=[files[i]]) for i in range(p.count)]
        graph.add("gather", gather_step, {"parts": files}, deps=parts, inputs=files, outputs=["total.json"])
        return graph


class Chain(Protocol):
    """Derive a summary file from the files of another run (a ``testkit.produce`` run)."""

    name = "testkit.chain"
    label = "Derive from another run"
    params = [
        PointerParam("source", type_name="Files", help="Output to read, e.g. 12.files or produce.files."),
        StrParam("out", default="derived.txt", pattern=r"[\w.\-]+", help="Name of the derived file."),
    ]
    outputs = {"derived": "Files"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        sources = [str(path) for path in p.input("source").files()]
        graph = StepGraph()
        graph.add("derive", derive_step, {"sources": sources, "out": p.out}, inputs=sources, outputs=[p.out])
        return graph


class Hold(Protocol):
    """One step that writes its pid to ``hold.pid`` and sleeps: for kill and cancel tests."""

    name = "testkit.hold"
    label = "Hold a worker"
    params = [FloatParam("seconds", default=3600.0, min=0.0, help="How long the step holds on.")]

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        graph.add("hold", hold_step, {"seconds": p.seconds, "pid_file": "hold.pid"}, outputs=["hold.pid"])
        return graph


class Particles(Protocol):
    """Register a synthetic particle set (no images): a source for the set protocols."""

    name = "testkit.particles"
    label = "Make a particle set"
    params = [
        IntParam("count", default=100, min=0, help="Number of particles."),
        IntParam("classes", default=3, min=1, help="Particles are dealt into this many classes."),
        IntParam("seed", default=0, help="Seed of the defocus values."),
    ]
    outputs = {"particles": "SetOfParticles"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        graph = StepGraph()
        graph.add("particles", particles_step, {"count": p.count, "classes": p.classes, "seed": p.seed})
        return graph


class Select(Protocol):
    """Select the particles of one class of another run's set into a new set (read a set, register one)."""

    name = "testkit.select"
    label = "Select a class"
    params = [
        PointerParam("particles", type_name="SetOfParticles", help="A particle set, e.g. particles.particles."),
        IntParam("class_id", default=1, min=1, help="The class to keep."),
    ]
    outputs = {"selected": "SetOfParticles", "classes": "SetOfClasses2D"}

    def steps(self, p: ResolvedParams) -> StepGraph:
        value = p.input("particles").value
        set_id = value.get("set_id") if isinstance(value, dict) else None
        if not isinstance(set_id, int):
            raise ProtocolError(f"input 'particles' ({p.input('particles')}) carries no set id")
        graph = StepGraph()
        graph.add("select", select_step, {"particles_set": set_id, "class_id": p.class_id})
        return graph


PROTOCOLS: tuple[type[Protocol], ...] = (Noop, Sleep, Fail, Produce, Fanout, Chain, Hold, Particles, Select)
