"""The issue's walk through the web interface, in a real browser: create a project, launch the
demo pipeline from its forms on the local host, watch the runs turn green in the flowchart
without reloading, then open the particle gallery sorted by defocus, the class averages, the
volume slices and the FSC plot. A screenshot of every page is saved (see conftest.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_support import NODES_JS, WebEnv, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: the demo pipeline (examples/pipeline.json) at a size that runs in well under a minute here
SMALL = {"simulate": {"n_micrographs": 2, "particles_per_micrograph": 30, "frames": 6},
         "classify2d": {"n_classes": 2, "iterations": 2},
         "refine3d": {"max_iterations": 2, "global_iterations": 1}}
PIPELINE_TIMEOUT_S = 240
ALL_IMAGES_SHOWN = "[...document.images].every(i => i.complete && i.naturalWidth > 0)"


def demo_runs() -> list[dict[str, Any]]:
    runs = json.loads((ROOT / "examples" / "pipeline.json").read_text())["runs"]
    for run in runs:
        run["params"] = {**run["params"], **SMALL.get(run["name"], {})}
    return runs


def fill_form(page: Any, run: dict[str, Any]) -> None:
    """Fill the run's form as a user would: pointers from their chooser, choices by clicking."""
    for param, value in run["params"].items():
        field = page.locator(f"[data-field='{param}']")
        kind = field.get_attribute("data-kind")
        if kind == "pointer":
            page.select_option(f"select[name='{param}']", str(value))
        elif kind == "enum" and page.locator(f"input[type=radio][name='{param}']").count():
            page.check(f"input[type=radio][name='{param}'][value='{value}']")
        elif kind == "enum":
            page.select_option(f"select[name='{param}']", str(value))
        elif kind == "bool":
            page.set_checked(f"input[type=checkbox][name='{param}']", bool(value))
        else:
            page.fill(f"#f-{param}", str(value))
    page.fill("#f-run-name", run["name"])


def test_the_demo_pipeline_from_its_forms_to_the_viewers(logged_in: Any, web_env: WebEnv,
                                                         shot: Callable[..., Path]) -> None:
    page = logged_in
    folder = web_env.projects_dir / "demo"
    page.click("summary:has-text('New project')")
    page.fill("input[name=path]", str(folder))
    page.click("details.create button[type=submit]")
    page.wait_for_selector("#project-demo")
    shot("projects")
    page.click("#project-demo a:has-text('demo')")
    page.wait_for_url("**/p/demo")

    for index, run in enumerate(demo_runs()):
        page.goto(f"/p/demo/new/{run['protocol']}")
        fill_form(page, run)
        if index in (0, 3):
            shot(f"form-{run['name']}")
        page.click("button.launch")
        page.wait_for_url(re.compile(r"/p/demo\?run=\d+$"))

    # the project page as the last launch left it: from here on, no reload
    page.evaluate("window.__notReloaded = true")
    names = [run["name"] for run in demo_runs()]

    def states() -> dict[str, str]:
        return {node["label"].split("\n")[0]: node["state"] for node in page.evaluate(NODES_JS)}

    wait_until(lambda: all(states().get(name) == "finished" for name in names), PIPELINE_TIMEOUT_S,
               "every run of the demo pipeline turned green in the open page", every_s=1.0)
    assert page.evaluate("window.__notReloaded") is True
    shot("flowchart-finished")

    with_defocus = _particle_set(folder)
    page.goto(f"/p/demo/sets/{with_defocus}?sort=defocus_u&order=desc")
    page.wait_for_function(f"() => {ALL_IMAGES_SHOWN}")
    assert page.locator("select[name=sort]").input_value() == "defocus_u"
    shot("particles-by-defocus")

    page.goto("/p/demo/runs/classify2d/classes")
    page.wait_for_function(f"() => [...document.images].length > 0 && {ALL_IMAGES_SHOWN}")
    shot("class-averages")

    page.goto("/p/demo/runs/refine3d/volume/volume")
    page.wait_for_function(f"() => [...document.images].length >= 4 && {ALL_IMAGES_SHOWN}")
    shot("volume-slices")

    page.goto("/p/demo/runs/fsc/plots")
    page.wait_for_selector("img[src*='fsc'], svg, object")
    assert "0.143" in page.content() or page.locator("img[src*='fsc']").count() > 0
    shot("fsc-plot")


def _particle_set(folder: Path) -> int:
    """The id of the particle set extract registered (what the run panel's outputs tab links to)."""
    from orchestrator.app.outputs import list_outputs

    (particles,) = [out for out in list_outputs(folder, "extract") if out.name == "particles"]
    assert particles.set_id is not None
    return particles.set_id
