"""The hosts and queues page in a real browser: hosts with their state (reachable, GPUs used and
free), a project's batch job on the real SLURM of ``tests/infra`` as ``orch queue`` shows it, a
host checked for real, and a local dask dashboard reached through the server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from infra.services import require_service
from lifecycle_helpers import put_run, put_step
from web_support import RequestLog, WebProject, free_port, wait_until

from orchestrator.project import Project
from orchestrator.store import RunState, StepState
from orchestrator.store.host_health import HostState

pytestmark = pytest.mark.integration

HOSTS_TOML = """
[hosts.ci-slurm-jobs]
kind = "slurm"
description = "tests/infra/slurm.sh without pilots"
work_dir = "{work}"
shared_fs = true
max_jobs = 2
default_queue = "{partition}"

[hosts.ci-slurm-jobs.queues.{partition}]
cores = 8
memory = "8000M"
gpus = 2
gpu_request = "--gres=gpu:{{n}}"
walltime = "01:00:00"

[hosts.ci-slurm-jobs.pilot]
enabled = false

[hosts.gpubox]
kind = "ssh"
description = "a GPU box that is switched off"
work_dir = "/tmp/orch-gpubox"
gpus = 2

[hosts.gpubox.ssh]
host = "127.0.0.1"
port = {dead_port}
user = "nobody"
"""


@pytest.fixture
def slurm_job(web_env: Any) -> Iterator[tuple[str, dict[str, str]]]:
    """A real SLURM job (sleeping), cancelled afterwards."""
    env = {**web_env.env, **require_service("slurm")}
    partition = env.get("ORCH_TEST_SLURM_PARTITION", "debug")
    job = subprocess.run(["sbatch", "--parsable", "-p", partition, "-o", "/dev/null", "-J", "orch-web-test",
                          "--wrap", "sleep 300"], capture_output=True, text=True, env=env, check=True,
                         timeout=30).stdout.strip().split(";")[0]
    yield job, env
    subprocess.run(["scancel", job], env=env, check=False, timeout=30)


def test_hosts_their_state_and_the_queue(logged_in: Any, project_factory: Callable[[str], WebProject],
                                         slurm_job: tuple[str, dict[str, str]], shot: Callable[..., Path]) -> None:
    page = logged_in
    job_id, env = slurm_job
    made = project_factory("hostsview")
    (made.path / "hosts.toml").write_text(HOSTS_TOML.format(
        work=made.path / "work", partition=env.get("ORCH_TEST_SLURM_PARTITION", "debug"), dead_port=free_port()))
    # the project's store as a scheduler leaves it: a step on the cluster in a real job, one
    # holding a GPU of the box, and the box reported unreachable
    with Project.load(made.path).open_store() as store:
        on_cluster = store.runs.create("testkit.sleep", {"count": 1}, name="on-cluster", host="ci-slurm-jobs")
        on_box = store.runs.create("testkit.sleep", {"count": 1, "gpus": 1}, name="on-box", host="gpubox")
        for run in (on_cluster, on_box):
            put_run(store, run.id, RunState.RUNNING)
        (cluster_step,) = store.steps.add(on_cluster.id, [{"name": "sleep_0", "func": "x:y"}]).values()
        (box_step,) = store.steps.add(on_box.id, [{"name": "sleep_0", "func": "x:y",
                                                   "resources": {"gpus": 1}}]).values()
        put_step(store, cluster_step, StepState.RUNNING, host="ci-slurm-jobs", job_id=job_id)
        put_step(store, box_step, StepState.RUNNING, host="gpubox", gpus=[0])
        store.hosts.report("gpubox", HostState.UNREACHABLE, "ssh nobody@127.0.0.1: connection refused")

    page.click("a.navlink:has-text('Hosts')")
    page.wait_for_selector("#hosts-table")
    assert page.get_attribute("#host-local", "data-state") == "ok"
    box = page.locator("#host-gpubox")
    assert box.get_attribute("data-state") == "unreachable"
    assert "connection refused" in box.inner_text() and "hostsview" in box.inner_text()
    assert "1 free · 1 used" in box.locator("td.gpus").inner_text()
    assert page.locator("#host-ci-slurm-jobs").count() == 1

    queue = page.locator("#queue-hostsview")
    queue.locator(f"tr[data-job='{job_id}']").wait_for(timeout=20_000)
    row = queue.locator(f"tr[data-job='{job_id}']").inner_text()
    assert "on-cluster" in row and ("running" in row or "pending" in row), row
    shot("hosts")

    page.locator("#host-gpubox button:has-text('Check')").click()
    result = page.locator("td.check-cell[data-host='gpubox'] .host-check")
    result.wait_for(timeout=30_000)
    assert "FAILED" in result.inner_text()
    shot("checked")


def test_a_dask_dashboard_through_the_server(logged_in: Any, project_factory: Callable[[str], WebProject],
                                             orch: Callable[..., str], requests_made: RequestLog,
                                             shot: Callable[..., Path]) -> None:
    page = logged_in
    project = project_factory("dashboards")
    orch("run", str(project.path), "testkit.hold", "seconds=300", "--name", "hold")
    try:
        link = f"#host-local a.dash:has-text('{project.name}')"

        def dashboard_listed() -> bool:
            page.goto("/hosts")
            return page.locator(link).count() == 1

        wait_until(dashboard_listed, 60, "the local host's dashboard is listed", every_s=0.5)
        with page.context.expect_page() as opened:
            page.click(link)
        dashboard = opened.value
        dashboard.wait_for_load_state()
        assert dashboard.url.startswith(f"{page.url.split('/hosts')[0]}/p/{project.name}/dashboard/local/")
        assert "Dask" in dashboard.inner_text("body")  # dask's own page, as it serves it
        workers = dashboard.goto(f"/p/{project.name}/dashboard/local/info/main/workers.html")
        assert workers is not None and workers.status == 200
        assert "Workers" in dashboard.title()
        # dask's page links a stylesheet on a CDN: the relay's Content-Security-Policy keeps it from leaving
        assert any(not url.startswith(page.url.split("/hosts")[0]) for url in requests_made.blocked)
        shot("workers", page=dashboard)
        counts = json.loads(dashboard.goto(f"/p/{project.name}/dashboard/local/json/counts.json").text())
        assert counts["workers"] >= 1
    finally:
        orch("cancel", str(project.path), "hold")
