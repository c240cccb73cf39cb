"""The form pages through Starlette's test client, on a small real project (simulated movies,
motion-corrected, picked, extracted and classified in this process): a protocol's form shows
every param with its default, help and condition; a bad value comes back beside its field and
creates nothing; a good one creates the run; pointer choosers list outputs of the right type;
"copy as new run" fills the form in; the hosts chooser shows limits and health; every wizard
answers with a panel and a picture. The browser's condition evaluator is compared with the
server's (with node, where there is one: static/forms-conditions.js)."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from orchestrator.app.forms import FormRejected, copy_of_run
from orchestrator.objects.params import FloatParam, IntParam
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.protocol.conditions import evaluate_condition
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState
from orchestrator.store.host_health import HostState
from orchestrator.web.app import create_app
from orchestrator.web.settings import WebSettings
from orchestrator.web.wizards.png import encode_png

FORMS_JS = Path(__file__).resolve().parents[2] / "orchestrator" / "web" / "static" / "forms-conditions.js"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHAIN = [
    ("sim", "emtools.simulate", {"n_micrographs": 2, "particles_per_micrograph": 12, "box": 32, "frames": 4,
                                 "snr": 0.3}),
    ("mc", "emtools.motioncorr", {"movies": "sim.movies", "max_iterations": 2}),
    ("pick", "emtools.pick", {"micrographs": "mc.micrographs", "particle_diameter": 60, "threshold_sigma": 3}),
    ("extract", "emtools.extract", {"coordinates": "pick.coordinates", "box_size": 32}),
    ("classify", "emtools.classify2d", {"particles": "extract.particles", "n_classes": 2, "iterations": 1,
                                        "angle_step": 30}),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project whose runs finished: movies, micrographs, picks, particles, classes, a volume."""
    project = Project.create(tmp_path_factory.mktemp("forms") / "proj")
    with project.open_store() as store:
        for name, protocol, params in CHAIN:
            planner.create_run(store, project, discover(), protocol, {k: str(v) for k, v in params.items()},
                               name=name)
    assert daemon.serve(project, idle_exit_s=0.5, workers=2) == 0
    with project.open_store() as store:
        for run in store.runs.list():
            assert run.run_state is RunState.FINISHED, (run.name, run.error)
    return project


def logged_in(folder: Path) -> tuple[TestClient, str]:
    app = create_app(WebSettings(projects=(folder,), token="the-token", secret="s" * 32))
    app.state.start_scheduler = False  # the runs a test creates stay queued: no scheduler is started
    web = TestClient(app, base_url="http://127.0.0.1:8765", follow_redirects=False)
    assert web.get("/login?token=the-token").status_code == 303
    csrf = web.get("/").text.split('data-csrf="', 1)[1].split('"', 1)[0]
    return web, csrf


@pytest.fixture(scope="module")
def client(project: Project) -> tuple[TestClient, str]:
    return logged_in(project.path)


def field_block(page: str, name: str) -> str:
    """The HTML of one field (from its wrapper to the next one)."""
    start = page.rindex('<div class="field', 0, page.index(f'data-field="{name}"'))
    following = re.compile(r'<div class="field[ "]').search(page, start + 1)
    return page[start:following.start() if following else len(page)]


def run_count(project: Project) -> int:
    with project.open_store() as store:
        return len(store.runs.list())


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_chooser_lists_the_protocols_with_what_they_read_and_make(client: tuple[TestClient, str]) -> None:
    web, _csrf = client
    page = web.get("/p/proj/new")
    assert page.status_code == 200
    assert 'href="/p/proj/new/emtools.pick"' in page.text and "Particle picking" in page.text
    assert 'id="protocol-search"' in page.text and "SetOfCoordinates" in page.text


def test_the_form_shows_every_param_with_its_default_help_and_condition(client: tuple[TestClient, str]) -> None:
    web, _csrf = client
    page = web.get("/p/proj/new/emtools.pick")
    assert page.status_code == 200
    text = html.unescape(page.text)
    pick = discover().protocol("emtools.pick")
    for param in pick.params:
        block = html.unescape(field_block(page.text, param.name))
        assert param.help in block, param.name
        if param.default is not None and param.kind in ("int", "float"):
            assert f'value="{param.default}"' in block, param.name
    assert 'data-condition="method == \'template\'"' in text  # templates and angle_step
    assert text.count("data-condition=") == 2
    assert "<legend>Picker</legend>" in text and "<legend>Inputs</legend>" in text  # declared sections
    assert 'data-wizard="particle_diameter"' in text and 'data-wizard="pick_threshold"' in text
    assert '<script src="/static/forms.js"' in text


def test_a_bad_value_comes_back_beside_its_field_and_nothing_is_created(
        client: tuple[TestClient, str], project: Project) -> None:
    web, csrf = client
    before = run_count(project)
    answer = web.post("/p/proj/new/emtools.pick", headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
                      data={"micrographs": "mc.micrographs", "particle_diameter": "-4", "threshold_sigma": "lots",
                            "method": "blob", "run:name": "pick"})
    assert answer.status_code == 400
    assert "nothing was created" in answer.text
    diameter = html.unescape(field_block(answer.text, "particle_diameter"))
    assert "must be >= 1.0, got -4.0" in diameter and "invalid" in diameter
    assert "expected a finite number, got 'lots'" in html.unescape(field_block(answer.text, "threshold_sigma"))
    assert "already exists" in html.unescape(field_block(answer.text, "run:name"))
    assert 'value="-4"' in diameter  # what the user typed stays in the field
    assert run_count(project) == before


def test_a_pointer_of_the_wrong_type_is_refused_beside_it(client: tuple[TestClient, str]) -> None:
    web, csrf = client
    answer = web.post("/p/proj/new/emtools.pick", headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
                      data={"micrographs": "extract.particles"})
    assert answer.status_code == 400
    assert "is a SetOfParticles, expected a SetOfMicrographs" in html.unescape(field_block(answer.text, "micrographs"))


def test_a_good_form_creates_the_run_and_sends_the_browser_to_it(
        client: tuple[TestClient, str], project: Project) -> None:
    web, csrf = client
    answer = web.post("/p/proj/new/emtools.pick", headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
                      data={"micrographs": "mc.micrographs", "method": "blob", "particle_diameter": "70",
                            "threshold_sigma": "2.5", "run:name": "pick-web", "run:host": "local"})
    assert answer.status_code == 200, answer.text
    with project.open_store() as store:
        run = store.runs.get("pick-web")
    assert answer.headers["HX-Redirect"] == f"/p/proj?run={run.id}"
    assert run.run_state is RunState.QUEUED and run.params["particle_diameter"] == 70.0
    assert run.params["micrographs"] == "mc.micrographs"


def test_a_form_post_without_the_csrf_header_is_refused(client: tuple[TestClient, str], project: Project) -> None:
    web, _csrf = client
    before = run_count(project)
    answer = web.post("/p/proj/new/testkit.noop", data={"count": "1"})
    assert answer.status_code == 403 and run_count(project) == before


def test_the_live_check_files_problems_by_field(client: tuple[TestClient, str]) -> None:
    web, _csrf = client
    answer = web.get("/p/proj/new/emtools.extract/check",
                     params={"coordinates": "pick.coordinates", "box_size": "31", "bin_factor": "2"}).json()
    assert answer == {"fields": {"box_size": ["31 is not a multiple of bin_factor 2"]}, "general": []}
    assert web.get("/p/proj/new/emtools.extract/check",
                   params={"coordinates": "pick.coordinates", "box_size": "32"}).json()["fields"] == {}


def test_pointer_choices_list_only_outputs_of_the_right_type(client: tuple[TestClient, str]) -> None:
    web, _csrf = client
    micrographs = web.get("/p/proj/new/emtools.pick/pointer-choices/micrographs").text
    assert 'value="mc.micrographs"' in micrographs
    assert "extract.particles" not in micrographs and "pick.coordinates" not in micrographs
    particles = web.get("/p/proj/new/emtools.classify2d/pointer-choices/particles").text
    assert 'value="extract.particles"' in particles and 'value="classify.particles"' in particles
    assert "mc.micrographs" not in particles
    assert web.get("/p/proj/new/emtools.pick/pointer-choices/particle_diameter").status_code == 404


def test_copy_as_new_run_fills_the_form_in(client: tuple[TestClient, str], project: Project) -> None:
    web, _csrf = client
    page = web.get("/p/proj/new/emtools.pick?copy=pick")
    assert page.status_code == 200
    assert 'value="60.0"' in field_block(page.text, "particle_diameter")
    assert re.search(r'<option value="mc\.micrographs" selected>', field_block(page.text, "micrographs"))
    assert "a copy of run" in page.text
    with project.open_store() as store:
        pick_id = store.runs.get("pick").id
    assert copy_of_run(project, pick_id, "emtools.pick").fields["micrographs"] == "mc.micrographs"
    wrong = web.get("/p/proj/new/emtools.extract?copy=pick")
    assert wrong.status_code == 400 and "cannot be copied as a emtools.extract run" in html.unescape(wrong.text)


WIZARD_CASES = [
    ("emtools.pick", "particle_diameter", {"micrographs": "mc.micrographs"}, "mc.micrographs"),
    ("emtools.pick", "threshold_sigma", {"micrographs": "mc.micrographs", "particle_diameter": "60"},
     "mc.micrographs"),
    ("emtools.extract", "box_size", {"coordinates": "pick.coordinates"}, "pick.coordinates"),
    ("emtools.classify2d", "mask_diameter", {"particles": "extract.particles"}, "classify.classes"),
    ("emtools.refine3d", "mask_diameter", {"wizard:sample": "sim.volume"}, "sim.volume"),
    ("emtools.refine3d", "initial_lowpass", {"initial_model": "sim.volume"}, "sim.volume"),
]


@pytest.mark.parametrize(("protocol", "param", "fields", "sample"), WIZARD_CASES)
def test_every_wizard_answers_with_its_panel_and_a_picture(client: tuple[TestClient, str], protocol: str,
                                                            param: str, fields: dict[str, str], sample: str) -> None:
    web, _csrf = client
    panel = web.get(f"/p/proj/new/{protocol}/wizard/{param}", params=fields)
    assert panel.status_code == 200, panel.text
    assert f'data-param="{param}"' in panel.text and 'class="wizard-data"' in panel.text
    assert f'<option value="{sample}" selected>' in panel.text  # the form's own input, or the classes
    data = json.loads(html.unescape(panel.text.split('class="wizard-data">', 1)[1].split("</script>", 1)[0]))
    assert data["min"] <= data["value"] <= data["max"]
    image = web.get(f"/p/proj/new/{protocol}/wizard/{param}/image.png",
                    params={"wizard:sample": sample, "wizard:value": "20"})
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    width, height = png_size(image.content)
    assert width > 16 and height > 16


def test_the_threshold_wizard_sends_the_picks_of_every_threshold(client: tuple[TestClient, str]) -> None:
    web, _csrf = client
    panel = web.get("/p/proj/new/emtools.pick/wizard/threshold_sigma",
                    params={"micrographs": "mc.micrographs", "particle_diameter": "60", "threshold_sigma": "3"})
    data = json.loads(html.unescape(panel.text.split('class="wizard-data">', 1)[1].split("</script>", 1)[0]))
    scores = [score for _x, _y, score in data["picks"]]
    assert scores and min(scores) >= data["min"] and scores == sorted(scores, reverse=True)
    assert data["radius_px"] == pytest.approx(30 / data["pixel_size_a"])


def test_a_wizard_without_data_to_draw_on_says_so(tmp_path: Path) -> None:
    Project.create(tmp_path / "empty")
    web, _csrf = logged_in(tmp_path / "empty")
    panel = web.get("/p/empty/new/emtools.refine3d/wizard/initial_lowpass")
    assert panel.status_code == 200 and "no finished run of this project" in panel.text
    assert web.get("/p/empty/new/emtools.refine3d/wizard/seed").status_code == 404


HOSTS_TOML = """
[hosts.gpubox]
kind = "ssh"
description = "four GPUs in the next room"
work_dir = "/data/orch-work"
cores = 64
memory = "256G"
gpus = 4
workers = 4

[hosts.gpubox.ssh]
host = "gpubox.example.org"
"""


def test_the_host_chooser_shows_limits_health_and_free_gpus(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "hosted")
    (project.path / "hosts.toml").write_text(HOSTS_TOML)
    with project.open_store() as store:
        store.hosts.report("gpubox", HostState.UNREACHABLE, "connection timed out")
    web, csrf = logged_in(project.path)
    page = html.unescape(web.get("/p/hosted/new/testkit.sleep").text)
    hosts = page[page.index('class="host-list"'):]
    assert 'value="local" checked' in hosts and 'value="gpubox"' in hosts
    assert "64 cores" in hosts and "256.0 GB" in hosts and "4 free" in hosts and "4 workers" in hosts
    assert "unreachable since" in hosts and "connection timed out" in hosts
    answer = web.post("/p/hosted/new/testkit.sleep", headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
                      data={"count": "1", "gpus": "9", "run:host": "gpubox"})
    assert answer.status_code == 400
    assert "9 GPU(s)" in html.unescape(field_block(answer.text, "run:host"))
    assert run_count(project) == 0


def test_form_rejected_files_each_problem_under_its_param() -> None:
    rejected = FormRejected("x.y")
    rejected.file(["param 'a': bad", "param 'b': worse\nstill", "the host is down"])
    assert rejected.by_param == {"a": ["bad"], "b": ["worse\nstill"]}
    assert rejected.general == ["the host is down"] and rejected.count == 3
    assert "3 problem(s)" in str(rejected)


def test_form_hints_are_described_only_when_declared() -> None:
    plain = IntParam("n", default=1).describe()
    assert "section" not in plain and "wizard" not in plain
    hinted = FloatParam("d", default=1.0, section="Picker", wizard="particle_diameter").describe()
    assert hinted["section"] == "Picker" and hinted["wizard"] == "particle_diameter"


def test_the_png_is_a_grey_image_of_the_array() -> None:
    pixels = (np.arange(12, dtype=np.uint8) * 20).reshape(3, 4)
    data = encode_png(pixels)
    assert png_size(data) == (4, 3)
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    rows = np.frombuffer(zlib.decompress(data[idat + 4:idat + 4 + length]), np.uint8).reshape(3, 5)
    assert (rows[:, 0] == 0).all() and (rows[:, 1:] == pixels).all()


CONDITIONS = [
    ("not fail_always", {"fail_always": False}),
    ("not fail_always", {"fail_always": True}),
    ("method == 'template'", {"method": "blob"}),
    ("method == \"template\"", {"method": "template"}),
    ("n > 1 and mode != 'fast'", {"n": 2, "mode": "slow"}),
    ("n > 1 or mode != 'fast'", {"n": 0, "mode": "fast"}),
    ("1 < n <= 3", {"n": 3}),
    ("1 < n <= 3", {"n": 4}),
    ("x > -1.5e0", {"x": -2.0}),
    ("m in ('a', 'b')", {"m": "b"}),
    ("m not in ['a', 'b']", {"m": "b"}),
    ("ref is None", {"ref": None}),
    ("ref is not None and not (n == 0)", {"ref": "3.volume", "n": 1}),
    ("flag == 1", {"flag": True}),
    ("(a, b) == (1, 2)", {"a": 1, "b": 2}),
]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the browser's evaluator is untested")
def test_the_browser_evaluates_conditions_as_the_server_does() -> None:
    script = ("const c = require(process.argv[1]); const cases = JSON.parse(process.argv[2]);"
              "console.log(JSON.stringify(cases.map(([t, v]) => c.evaluateCondition(t, v))));")
    done = subprocess.run(["node", "-e", script, str(FORMS_JS), json.dumps(CONDITIONS)], capture_output=True,
                          text=True, timeout=30, check=True)
    browser = json.loads(done.stdout)
    assert browser == [evaluate_condition(text, values) for text, values in CONDITIONS]
    unresolved = subprocess.run(["node", "-e", script, str(FORMS_JS), json.dumps([["n > 1", {}]])],
                                capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(unresolved.stdout) == [None]  # not known yet: the field stays shown
