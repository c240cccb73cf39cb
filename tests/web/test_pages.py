"""The web interface in a real browser (Debian's chromium), against a real ``orch web`` and real
schedulers: log in, projects, the live flowchart, the run panel, logs followed live, cancel,
and what the server refuses (paths out of its folders, a POST without the CSRF token)."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from web_support import CHART, WebEnv, WebProject, WebServer, chart_nodes, click_node, wait_until

pytestmark = pytest.mark.integration

PIPELINE = {"runs": [
    {"name": "produce", "protocol": "testkit.produce", "params": {"count": 3, "size": 1024}},
    {"name": "derive", "protocol": "testkit.chain", "params": {"source": "produce.files"}},
]}
RUN_TIMEOUT_S = 90


@dataclass
class Pipeline:
    """A project for the two-run pipeline: submitted once (by whichever test needs it first)."""

    project: WebProject
    orch: Callable[..., str]
    ids: dict[str, int] | None = None

    def submit(self) -> dict[str, int]:
        if self.ids is None:
            workflow = self.project.path / "pipeline.json"
            workflow.write_text(json.dumps(PIPELINE))
            runs = json.loads(self.orch("run", str(self.project.path), "--workflow", str(workflow), "--json"))["runs"]
            self.ids = {run["name"]: run["id"] for run in runs}
        return self.ids

    def finished(self) -> dict[str, int]:
        from orchestrator.app.status import project_status

        ids = self.submit()

        wait_until(lambda: all(run.state == "finished" for run in project_status(self.project.path).runs),
                   RUN_TIMEOUT_S, "the pipeline's runs finished", every_s=0.3)
        return ids


@pytest.fixture(scope="module")
def pipeline(project_factory: Callable[[str], WebProject], orch: Callable[..., str]) -> Pipeline:
    return Pipeline(project_factory("flow"), orch)


def test_login_with_the_printed_link(page: Any, web_server: WebServer, shot: Callable[..., Path]) -> None:
    page.goto("/")
    assert urlsplit(page.url).path == "/login"
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    assert "not the token this server printed" in page.inner_text("main")
    shot("refused")
    page.goto(web_server.login_url)
    assert urlsplit(page.url).path == "/" and page.inner_text("h1") == "Projects"


def test_projects_page_creates_and_deletes_with_confirmation(logged_in: Any, web_env: WebEnv,
                                                             shot: Callable[..., Path]) -> None:
    page = logged_in
    folder = web_env.projects_dir / "webmade"
    page.click("summary:has-text('New project')")
    page.fill("input[name=path]", str(folder))
    page.fill("input[name=name]", "webmade")
    page.click("form[hx-post='/projects'] button[type=submit]")
    page.wait_for_selector("#project-webmade")
    assert "Created project webmade" in page.inner_text("#project-list")
    assert (folder / "project.json").exists()
    shot("created")
    page.click("summary:has-text('New project')")  # the form stays open after creating: close it

    row = page.locator("#project-webmade")
    row.locator("summary:has-text('Delete')").click()
    row.locator("input[name=confirm]").fill("not-its-name")
    row.locator("button:has-text('Delete project')").click()
    page.wait_for_selector("#project-webmade .notice.error, .notice.error")
    assert "type the project's name" in page.inner_text("#project-list")
    assert (folder / "project.json").exists()  # a wrong name deletes nothing

    page.reload()
    row = page.locator("#project-webmade")
    row.locator("summary:has-text('Delete')").click()
    row.locator("input[name=confirm]").fill("webmade")
    row.locator("button:has-text('Delete project')").click()
    page.wait_for_selector("text=Deleted project webmade")
    shot("deleted")
    assert not (folder / "project.json").exists()
    page.reload()
    assert page.locator("#project-webmade").count() == 0


def test_the_flowchart_turns_green_without_reloading(logged_in: Any, pipeline: Pipeline,
                                                     shot: Callable[..., Path]) -> None:
    page = logged_in
    page.goto(f"/p/{pipeline.project.name}")
    page.wait_for_selector("#live.connected")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    page.evaluate("window.orchSamePage = 'still here'")
    assert chart_nodes(page) == {}

    ids = pipeline.submit()
    wanted = {str(run_id) for run_id in ids.values()}
    wait_until(lambda: set(chart_nodes(page)) == wanted, 20, "the new runs appear in the flowchart")
    first_seen = {node_id: node["state"] for node_id, node in chart_nodes(page).items()}
    shot("submitted")
    seen: dict[str, list[str]] = {node_id: [] for node_id in wanted}

    def all_green() -> bool:
        for node_id, node in chart_nodes(page).items():
            if not seen[node_id] or seen[node_id][-1] != node["state"]:
                seen[node_id].append(node["state"])
        return all(states[-1] == "finished" for states in seen.values())

    wait_until(all_green, RUN_TIMEOUT_S, f"every box turns finished (states seen: {seen})", every_s=0.05)
    shot("finished")
    assert set(first_seen.values()) != {"finished"}, "the boxes were drawn before the runs ran"
    assert navigations == [] and page.evaluate("window.orchSamePage") == "still here", "the page was reloaded"
    assert "2 finished" in page.inner_text("#counts")
    border = page.evaluate(f"(id) => {CHART}.getElementById(String(id)).style('border-color')", ids["derive"])
    assert border == "rgb(31,157,87)", border  # the finished colour, as drawn


def test_the_run_panel_tabs(logged_in: Any, pipeline: Pipeline, shot: Callable[..., Path]) -> None:
    page = logged_in
    ids = pipeline.finished()
    page.goto(f"/p/{pipeline.project.name}")
    click_node(page, ids["derive"])
    page.wait_for_selector(".run-panel h2:has-text('derive')")
    page.wait_for_selector("#tab-body dl.facts")  # the summary comes first
    expected = {
        "Summary": ["Params", "produce.files"],
        "Inputs & outputs": ["produce", "derived"],
        "Steps": ["derive", "finished"],
        "Logs": [],
        "Citations": ["citations"],
        "Provenance": [],
    }
    for label, words in expected.items():
        page.evaluate("document.getElementById('tab-body').insertAdjacentHTML('beforeend', '<i id=stale></i>')")
        page.click(f".tabs button:has-text('{label}')")
        page.wait_for_function("() => !document.getElementById('stale')")  # the tab's content came
        body = page.inner_text("#tab-body")
        assert page.locator("#tab-body .notice.error").count() == 0, f"tab {label}: {body}"
        for word in words:
            assert word.lower() in body.lower(), f"tab {label} lacks {word!r}: {body[:400]}"
        if label == "Logs":
            page.wait_for_selector("#log-state:has-text('run finished')")
        if label == "Provenance":
            assert "Lineage" in body or "provenance" in body.lower()
        shot(label.split()[0].lower())
    page.click(".tabs button:has-text('Inputs & outputs')")
    page.click("#tab-body a.run-link:has-text('produce')")  # from an input to the run that made it
    page.wait_for_selector(".run-panel h2:has-text('produce')")


def test_a_log_followed_live_then_the_run_cancelled(logged_in: Any, project_factory: Callable[[str], WebProject],
                                                    orch: Callable[..., str], shot: Callable[..., Path]) -> None:
    page = logged_in
    project = project_factory("holding")
    run = json.loads(orch("run", str(project.path), "testkit.hold", "seconds=300", "--name", "hold", "--json"))
    run_id = run["runs"][0]["id"] if "runs" in run else run["id"]
    page.goto(f"/p/{project.name}")
    wait_until(lambda: chart_nodes(page).get(str(run_id), {}).get("state") == "running", 60,
               "the hold run shows as running")
    click_node(page, run_id)
    page.wait_for_selector(".run-panel h2:has-text('hold')")
    page.click(".tabs button:has-text('Logs')")
    page.wait_for_selector("#log-state:has-text('following')")

    log = project.path / "runs" / "hold" / "logs" / "hold.log"
    wait_until(log.exists, 20, f"{log} exists")
    for line in ("hold says hello", "hold says 2"):
        with log.open("a") as stream:  # what the step's own prints do: its stdout is this file
            stream.write(line + "\n")
        page.wait_for_selector(f"#log:has-text('[hold] {line}')", timeout=10_000)
    shot("following")

    pid = int((project.path / "runs" / "hold" / "hold.pid").read_text())
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(".run-actions button:has-text('Cancel')")
    page.wait_for_selector("text=cancelled run hold")
    wait_until(lambda: chart_nodes(page)[str(run_id)]["state"] == "cancelled", 20, "the box turns cancelled")
    wait_until(lambda: not _alive(pid), 20, f"the held step's process {pid} ended")
    shot("cancelled")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


HOSTILE = ["/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e/%2e%2e/orchestrator/web/app.py",
           "/p/x/..%2f..%2fetc%2fpasswd", "/p/%2e%2e/%2e%2e/etc/passwd",
           "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd"]
LITERAL = ["/static/../app.py", "/static/../../../../etc/passwd", "/p/x/../../etc/passwd"]


def test_hostile_paths_are_refused(logged_in: Any, web_server: WebServer, shot: Callable[..., Path]) -> None:
    page = logged_in
    for path in HOSTILE:
        answer = page.request.get(web_server.url + path)
        assert answer.status in (400, 404), f"{path}: {answer.status}"
        assert "create_app" not in answer.text() and "root:" not in answer.text(), path
    # a browser tidies ".." away before sending: these go as they are, with the session's cookie
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    netloc = urlsplit(web_server.url).netloc
    for path in LITERAL:
        connection = http.client.HTTPConnection(netloc, timeout=10)
        connection.request("GET", path, headers={"Cookie": cookie})
        answer = connection.getresponse()
        text = answer.read().decode(errors="replace")
        connection.close()
        assert answer.status in (400, 404), f"{path}: {answer.status}"
        assert "create_app" not in text and "root:" not in text, path
    shown = page.goto(web_server.url + "/static/%2e%2e/app.py")
    assert shown is not None and shown.status == 404
    shot("refused")


def test_a_post_without_the_csrf_token_is_refused(logged_in: Any, project_factory: Callable[[str], WebProject]) -> None:
    page = logged_in
    project = project_factory("keepme")
    answer = page.request.post(f"/projects/{project.name}/delete", form={"confirm": project.name})
    assert answer.status == 403 and "CSRF" in answer.text()
    wrong = page.request.post(f"/projects/{project.name}/delete", form={"confirm": project.name},
                              headers={"X-CSRF-Token": "a-guess"})
    assert wrong.status == 403
    assert (project.path / "project.json").exists()
    # the page's own token is accepted (here the confirmation is wrong, so nothing is deleted either)
    page.goto("/")
    token = page.evaluate("document.body.dataset.csrf")
    checked = page.request.post(f"/projects/{project.name}/delete", form={"confirm": "nope"},
                                headers={"X-CSRF-Token": token})
    assert checked.status == 400 and (project.path / "project.json").exists()


def test_a_server_of_one_project_serves_only_it(start_web_server: Callable[..., WebServer], page: Any,
                                                project_factory: Callable[[str], WebProject]) -> None:
    mine, other = project_factory("alone"), project_factory("other")
    server = start_web_server(str(mine.path))
    page.goto(server.login_url)
    names = page.locator("table.projects tbody a.strong").all_inner_texts()
    assert names == [mine.name]
    assert page.locator("summary:has-text('New project')").count() == 0  # creating needs --all
    assert page.request.get(f"{server.url}/p/{other.name}").status == 404
