"""The web server's guard, through Starlette's test client: login, CSRF, Host header, served
projects only, errors without tracebacks. (The pages themselves are tested in a real browser.)"""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from orchestrator.project import Project
from orchestrator.web.app import create_app
from orchestrator.web.settings import WebSettings


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


@pytest.fixture
def settings(project: Project) -> WebSettings:
    return WebSettings(projects=(project.path,), token="the-token", secret="s" * 32)


def client(settings: WebSettings) -> TestClient:
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8765", follow_redirects=False)


def logged_in(settings: WebSettings) -> tuple[TestClient, str]:
    web = client(settings)
    assert web.get("/login?token=the-token").status_code == 303
    page = web.get("/")
    assert page.status_code == 200
    csrf = page.text.split('data-csrf="', 1)[1].split('"', 1)[0]
    return web, csrf


def test_every_page_asks_for_a_login_first(settings: WebSettings) -> None:
    web = client(settings)
    for path in ("/", "/p/proj", "/p/proj/graph.json"):
        answer = web.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    assert web.get("/static/app.css").status_code == 200  # styles of the login page itself
    assert web.post("/projects", data={"path": "/tmp/x"}).status_code == 401


def test_a_wrong_token_is_refused(settings: WebSettings) -> None:
    web = client(settings)
    answer = web.post("/login", data={"token": "guess", "next": "/"})
    assert answer.status_code == 401 and "not the token" in answer.text
    assert web.get("/").status_code == 303


def test_the_login_never_sends_the_browser_to_another_site(settings: WebSettings) -> None:
    web = client(settings)
    answer = web.get("/login?token=the-token&next=//evil.example/")
    assert answer.headers["location"] == "/"


def test_a_state_change_without_the_csrf_token_is_refused(settings: WebSettings, project: Project) -> None:
    web, csrf = logged_in(settings)
    answer = web.post("/projects/proj/delete", data={"confirm": "proj"})
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert web.post("/projects/proj/delete", data={"confirm": "proj"},
                    headers={"X-CSRF-Token": "not-it"}).status_code == 403
    assert (project.path / "project.json").exists()  # nothing happened
    wrong_name = web.post("/projects/proj/delete", data={"confirm": "nope"}, headers={"X-CSRF-Token": csrf})
    assert wrong_name.status_code == 400 and "type the project's name" in html.unescape(wrong_name.text)
    assert (project.path / "project.json").exists()


def test_another_host_name_is_refused(settings: WebSettings) -> None:
    web, _csrf = logged_in(settings)
    answer = web.get("/", headers={"Host": "evil.example:8765"})
    assert answer.status_code == 400


def test_only_served_projects_and_no_traceback(settings: WebSettings, tmp_path: Path) -> None:
    other = Project.create(tmp_path / "other")
    web, _csrf = logged_in(settings)
    answer = web.get(f"/p/{other.name}")
    assert answer.status_code == 404 and "no project 'other' is served here" in html.unescape(answer.text)
    assert "Traceback" not in answer.text
    missing_run = web.get("/p/proj/runs/99")
    assert missing_run.status_code == 404 and "Traceback" not in missing_run.text


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                                  "/static/vendor/../../security.py"])
def test_static_files_never_leave_the_static_folder(settings: WebSettings, path: str) -> None:
    web, _csrf = logged_in(settings)
    answer = web.get(path)
    assert answer.status_code == 404 or "GuardMiddleware" not in answer.text
    assert "import" not in answer.text


def test_the_project_page_and_graph(settings: WebSettings) -> None:
    web, _csrf = logged_in(settings)
    page = web.get("/p/proj")
    assert page.status_code == 200 and "Select a run" in page.text
    graph = web.get("/p/proj/graph.json").json()
    assert graph["project"] == "proj" and graph["runs"] == [] and graph["edges"] == []


def test_a_websocket_is_refused_without_a_login(settings: WebSettings) -> None:
    from starlette.websockets import WebSocketDisconnect

    web = client(settings)
    with pytest.raises(WebSocketDisconnect), web.websocket_connect("/p/proj/live") as socket:
        socket.receive_text()


def test_an_unknown_page_says_so_once(settings: WebSettings) -> None:
    web, _csrf = logged_in(settings)
    answer = web.get("/no/such/page")
    assert answer.status_code == 404 and "there is no page at /no/such/page" in answer.text
    assert answer.text.count("Not Found") == 0


def test_a_run_action_answers_in_place_and_as_a_toast(settings: WebSettings, project: Project) -> None:
    import json

    from lifecycle_helpers import put_run

    from orchestrator.store import RunState

    with project.open_store() as store:
        run = store.runs.create("testkit.noop", {"count": 1}, name="old")
        put_run(store, run.id, RunState.FAILED, error="gone wrong")
    web, csrf = logged_in(settings)
    answer = web.post(f"/p/proj/runs/{run.id}/delete", headers={"X-CSRF-Token": csrf, "HX-Request": "true"})
    assert answer.status_code == 200 and "deleted run old" in answer.text
    assert json.loads(answer.headers["HX-Trigger"]) == {"orchToast": "deleted run old"}
    with project.open_store() as store:
        assert [r.name for r in store.runs.list()] == []
