"""The data viewers through Starlette's test client, on a small project made here by the real
scheduler (simulate -> motioncorr -> ctffind -> pick -> extract -> classify2d, refine3d -> fsc):
galleries sorted, filtered and paged; pictures cached and drawn again when their file changes;
class selection making a subset run; volume slices; plots; and no file outside the project,
whatever the path says.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from orchestrator.app import viewers as app_viewers
from orchestrator.em import mrc
from orchestrator.errors import NotFoundError
from orchestrator.plugins import discover
from orchestrator.project import Project
from orchestrator.scheduler import daemon, planner
from orchestrator.store import RunState
from orchestrator.web import thumbnails
from orchestrator.web.app import create_app
from orchestrator.web.settings import WebSettings

BOX, PIXEL = 32, 4.0
PIPELINE: list[tuple[str, str, dict[str, Any]]] = [
    ("simulate", "emtools.simulate", {"n_micrographs": 2, "particles_per_micrograph": 20, "box": BOX,
                                      "pixel_size": PIXEL, "snr": 1.0, "frames": 4, "seed": 3}),
    ("motioncorr", "emtools.motioncorr", {"movies": "simulate.movies"}),
    ("ctffind", "emtools.ctffind", {"micrographs": "motioncorr.micrographs", "tile_size": 128,
                                    "max_resolution": 9.0}),
    ("pick", "emtools.pick", {"micrographs": "ctffind.micrographs", "particle_diameter": 0.6 * BOX * PIXEL,
                              "min_distance": BOX * PIXEL}),
    ("extract", "emtools.extract", {"coordinates": "pick.coordinates", "box_size": BOX}),
    ("classify2d", "emtools.classify2d", {"particles": "extract.particles", "n_classes": 2, "iterations": 2,
                                          "angle_step": 30.0}),
    ("refine3d", "emtools.refine3d", {"particles": "extract.particles", "initial_model": "simulate.volume",
                                      "global_iterations": 1, "max_iterations": 2, "global_step": 30.0}),
    ("fsc", "emtools.fsc", {"volume": "refine3d.volume", "reference": "simulate.volume"}),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("viewers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCH_HOME", str(base / "orch-home"))
        made = Project.create(base / "proj")
        registry = discover()
        with made.open_store() as store:
            for name, protocol, params in PIPELINE:
                planner.create_run(store, made, registry, protocol, {k: str(v) for k, v in params.items()}, name=name)
        assert daemon.serve(made, idle_exit_s=0.5, workers=2) == 0
        with made.open_store() as store:
            for run in store.runs.list():
                assert run.run_state is RunState.FINISHED, (run.name, run.error)
        yield made


@pytest.fixture(scope="module")
def web(project: Project) -> tuple[TestClient, str]:
    settings = WebSettings(projects=(project.path,), token="the-token", secret="s" * 32)
    client = TestClient(create_app(settings), base_url="http://127.0.0.1:8765", follow_redirects=False)
    assert client.get("/login?token=the-token").status_code == 303
    csrf = client.get("/").text.split('data-csrf="', 1)[1].split('"', 1)[0]
    return client, csrf


def set_of(project: Project, run: str, output: str) -> int:
    with project.open_store() as store:
        set_id = store.outputs.get(store.runs.get(run).id, output).set_id
    assert set_id is not None
    return set_id


def columns(project: Project, set_id: int, names: list[str]) -> dict[str, np.ndarray]:
    with project.open_store() as store:
        return store.get_set(set_id).to_numpy(names)


def shown_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-detail="/p/proj/sets/\d+/items/(\d+)"', page)]


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def pictures(page: str) -> list[str]:
    found = re.findall(r'<img[^>]* src="(/p/proj/img/[^"]+)"', page)
    return list(dict.fromkeys(url.replace("&amp;", "&") for url in found))


# --------------------------------------------------------------------------- galleries

def test_a_gallery_is_sorted_filtered_and_paged(project: Project, web: tuple[TestClient, str]) -> None:
    client, _csrf = web
    particles = set_of(project, "extract", "particles")
    truth = columns(project, particles, ["id", "defocus_u", "micrograph_id"])
    order = truth["id"][np.argsort(-truth["defocus_u"].astype(float), kind="stable")]
    page = client.get(f"/p/proj/sets/{particles}?sort=defocus_u&order=desc&limit=5&offset=5&columns=defocus_u")
    assert page.status_code == 200
    assert shown_ids(page.text) == order[5:10].tolist()
    assert f"6–10 of {len(order)}" in page.text

    on_two = truth["id"][truth["micrograph_id"] == 2]
    filtered = client.get(f"/p/proj/sets/{particles}?where=micrograph_id%3D2&limit=100")
    assert shown_ids(filtered.text) == on_two.tolist() and f"of {len(on_two)}" in filtered.text
    past_the_end = client.get(f"/p/proj/sets/{particles}?limit=10&offset=100000")
    assert shown_ids(past_the_end.text) == truth["id"][(len(order) - 1) // 10 * 10:].tolist()
    jumped = client.get(f"/p/proj/sets/{particles}?limit=10&page=2")
    assert shown_ids(jumped.text) == truth["id"][10:20].tolist()


def test_the_layer_pages_a_sorted_set_without_losing_or_repeating_items(project: Project) -> None:
    particles = set_of(project, "extract", "particles")
    truth = columns(project, particles, ["id", "micrograph_name"])
    seen: list[int] = []
    offset = 0
    while True:
        page = app_viewers.gallery_page(project, particles, sort="micrograph_name", descending=True,
                                        offset=offset, limit=7)
        seen += [item["id"] for item in page.items]
        offset += 7
        if offset >= page.total:
            break
    assert sorted(seen) == sorted(truth["id"].tolist()) and len(seen) == len(set(seen))
    names = dict(zip(truth["id"].tolist(), truth["micrograph_name"].tolist(), strict=True))
    assert [names[i] for i in seen] == sorted(names.values(), reverse=True)


def test_a_wrong_filter_or_column_is_explained_on_the_page(project: Project, web: tuple[TestClient, str]) -> None:
    client, _csrf = web
    particles = set_of(project, "extract", "particles")
    for query, message in (("where=defocus_u%3D%3Dabc..", "range bound"), ("where=nonsense", "COLUMN=VALUE"),
                           ("sort=no_such_column", "has no column"), ("columns=bogus", "has no column")):
        answer = client.get(f"/p/proj/sets/{particles}?{query}")
        assert answer.status_code == 400 and message in answer.text, query
        assert "Traceback" not in answer.text
    assert client.get("/p/proj/sets/999").status_code == 404
    assert client.get(f"/p/proj/sets/{particles}?limit=0").status_code == 400


def test_micrographs_show_their_pictures_ctf_and_spectra(project: Project, web: tuple[TestClient, str]) -> None:
    client, _csrf = web
    micrographs = set_of(project, "ctffind", "micrographs")
    page = client.get(f"/p/proj/sets/{micrographs}")
    assert page.status_code == 200 and "dU" in page.text and "CTF res." in page.text
    urls = pictures(page.text)
    assert len(urls) == 2 and all("/img/image/runs/motioncorr/" in url for url in urls)
    picture = client.get(urls[0])
    assert picture.status_code == 200 and max(png_size(picture.content)) <= 256
    assert "immutable" in picture.headers["cache-control"]  # its URL carries the file's fingerprint
    item = client.get(f"/p/proj/sets/{micrographs}/items/1")
    assert item.status_code == 200 and "defocus_u" in item.text and "ctf.svg" in item.text
    spectrum = client.get(f"/p/proj/sets/{micrographs}/items/1/spectrum.png?size=128")
    assert spectrum.status_code == 200 and png_size(spectrum.content) == (128, 128)
    profile = client.get(f"/p/proj/sets/{micrographs}/items/1/ctf.svg")
    assert profile.status_code == 200 and b"<svg" in profile.content and b"fitted CTF" in profile.content
    spectra = client.get(f"/p/proj/sets/{micrographs}?view=spectrum")
    assert spectra.text.count("/spectrum.png?size=256") == 2


# --------------------------------------------------------------------------- the cache

def counting(patch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    calls: list[Any] = []
    original: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    patch.setattr(module, name, wrapper)
    return calls


def test_a_cached_gallery_page_reads_no_mrc_file(project: Project, web: tuple[TestClient, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    client, _csrf = web
    particles = set_of(project, "extract", "particles")
    path = f"/p/proj/sets/{particles}?limit=24&sort=defocus_v&zoom=l"
    first = client.get(path)
    urls = pictures(first.text)
    assert len(urls) == 1 and "/img/sheet.png?" in urls[0]  # a page's particles come as one sheet
    assert first.text.count(urls[0].replace("&", "&amp;")) == 24  # each tile shows its cell of it
    sheet = client.get(urls[0])
    width, height = png_size(sheet.content)
    assert (width, height) == (10 * BOX, 3 * BOX)
    reads = counting(monkeypatch, thumbnails, "read_pixels")
    headers = counting(monkeypatch, thumbnails.mrc, "read_header")
    again = client.get(path)
    assert pictures(again.text) == urls and client.get(urls[0]).content == sheet.content
    assert reads == [] and headers == []


def test_pictures_are_cached_and_drawn_again_when_the_file_changes(project: Project,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder = project.path / "runs" / "extract" / "cache-test"
    folder.mkdir(exist_ok=True)
    stack = folder / "stack.mrcs"
    rng = np.random.default_rng(1)
    mrc.write_stack(stack, rng.normal(size=(3, 40, 40)).astype(np.float32), PIXEL)
    wanted = thumbnails.Picture("stack", index=2, size=64)
    reads = counting(monkeypatch, thumbnails, "read_pixels")
    first = thumbnails.thumbnail(project.path, stack, wanted)
    assert png_size(first) == (40, 40) and len(reads) == 1
    assert thumbnails.thumbnail(project.path, stack, wanted) == first and len(reads) == 1
    kept = [path for path in thumbnails.cache_root(project.path).rglob("*.png") if path.read_bytes() == first]
    assert len(kept) == 1
    mrc.write_stack(stack, rng.normal(size=(3, 40, 40)).astype(np.float32), PIXEL)  # a new version
    second = thumbnails.thumbnail(project.path, stack, wanted)
    assert second != first and len(reads) == 2
    assert not kept[0].exists()  # the stale picture is removed, never served
    assert thumbnails.thumbnail(project.path, stack, wanted) == second and len(reads) == 2
    big = thumbnails.thumbnail(project.path, stack, thumbnails.Picture("stack", index=1, size=64))
    assert png_size(big) == (40, 40) and len(reads) == 3
    with pytest.raises(NotFoundError, match="the stack holds 3"):
        thumbnails.thumbnail(project.path, stack, thumbnails.Picture("stack", index=4, size=64))
    shutil.rmtree(folder)


def test_a_picture_is_shrunk_by_averaging_and_keeps_its_shape() -> None:
    image = np.arange(1000 * 600, dtype=np.float32).reshape(600, 1000)
    small = thumbnails.shrink(image, 256)
    assert max(small.shape) <= 256 and small.shape == (150, 250)
    assert png_size(thumbnails.to_png(small)) == (250, 150)
    flat = thumbnails.to_png(np.zeros((10, 10), dtype=np.float32))
    assert png_size(flat) == (10, 10)


# --------------------------------------------------------------------------- class averages

def test_selected_classes_make_a_subset_run(project: Project, web: tuple[TestClient, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    client, csrf = web
    page = client.get("/p/proj/runs/classify2d/classes")
    assert page.status_code == 200 and "Make subset run" in page.text and "Class 2" in page.text
    assert len(re.findall(r'name="class_id" value="(\d+)"', page.text)) == 2
    started: list[Project] = []
    monkeypatch.setattr("orchestrator.app.runs.ensure_scheduler", lambda p: started.append(p) or 0)
    no_token = client.post("/p/proj/runs/classify2d/classes/subset", data={"class_id": "1"})
    assert no_token.status_code == 403
    nothing = client.post("/p/proj/runs/classify2d/classes/subset", data={}, headers={"X-CSRF-Token": csrf})
    assert nothing.status_code == 400 and "no class selected" in nothing.text
    unknown = client.post("/p/proj/runs/classify2d/classes/subset", data={"class_id": "7"},
                          headers={"X-CSRF-Token": csrf})
    assert unknown.status_code == 400 and "has no class 7" in unknown.text
    made = client.post("/p/proj/runs/classify2d/classes/subset", data={"class_id": ["2"], "name": "keep2"},
                       headers={"X-CSRF-Token": csrf, "HX-Request": "true"})
    assert made.status_code == 200 and "keep2" in made.text and started
    assert daemon.serve(project, idle_exit_s=0.5, workers=1) == 0
    classified = columns(project, set_of(project, "classify2d", "particles"), ["id", "class_id"])
    subset = columns(project, set_of(project, "keep2", "particles"), ["id", "class_id"])
    assert sorted(subset["id"].tolist()) == sorted(classified["id"][classified["class_id"] == 2].tolist())
    assert set(subset["class_id"].tolist()) == {2}
    with project.open_store() as store:
        run = store.runs.get("keep2")
        assert run.protocol == "emtools.select_classes" and run.params["class_ids"] == "2"
        value = store.outputs.get(run.id, "particles").value
    assert value["size"] == len(subset["id"]) and value["box_size"] == BOX


# --------------------------------------------------------------------------- volumes and plots

def test_the_volume_viewer_slices_and_projects(web: tuple[TestClient, str]) -> None:
    client, _csrf = web
    page = client.get("/p/proj/runs/refine3d/volume/volume")
    assert page.status_code == 200 and page.text.count('type="range"') == 3 and "Maximum projection" in page.text
    base = "/p/proj/img/{kind}/runs/refine3d/maps/map.mrc"
    for axis in ("z", "y", "x"):
        answer = client.get(base.format(kind="slice") + f"?axis={axis}&index=5&size=256")
        assert answer.status_code == 200 and png_size(answer.content) == (BOX, BOX)
    projection = client.get(base.format(kind="projection") + "?axis=y&size=256")
    assert projection.status_code == 200 and png_size(projection.content) == (BOX, BOX)
    assert client.get(base.format(kind="slice") + f"?axis=z&index={BOX}").status_code == 404
    assert client.get(base.format(kind="slice") + "?axis=w").status_code == 400
    assert client.get(base.format(kind="slice") + "?size=100").status_code == 400
    assert client.get("/p/proj/runs/refine3d/volume/volume?map=half2").status_code == 200
    assert client.get("/p/proj/runs/refine3d/volume/fsc").status_code == 404  # not a Volume


def test_plots_render(web: tuple[TestClient, str]) -> None:
    client, _csrf = web
    expected = {"ctffind": ["defocus", "ctf_resolution", "steps"], "extract": ["per_micrograph", "steps"],
                "refine3d": ["fsc", "per_micrograph", "angles", "steps"], "fsc": ["fsc", "steps"],
                "classify2d": ["class_sizes", "per_micrograph", "steps"]}
    for run, plots in expected.items():
        page = client.get(f"/p/proj/runs/{run}/plots")
        assert page.status_code == 200, run
        sources = [url.replace("&amp;", "&") for url in re.findall(r'<img class="plot" src="([^"]+\.svg[^"]*)"',
                                                                    page.text)]
        assert sorted({re.search(r"/plots/(\w+)\.svg", url)[1] for url in sources  # type: ignore[index]
                       if "/plots/" in url}) == sorted(plots), run
        for url in sources:
            drawn = client.get(url)
            assert drawn.status_code == 200 and drawn.headers["content-type"].startswith("image/svg")
            assert b"<svg" in drawn.content, url
    assert client.get("/p/proj/runs/fsc/plots/nothing.svg").status_code == 404
    assert client.get("/p/proj/runs/fsc/plots/defocus.svg").status_code == 400  # which output?


def test_the_run_panel_links_each_output_to_its_viewer(web: tuple[TestClient, str]) -> None:
    client, _csrf = web
    refine = client.get("/p/proj/runs/refine3d/tab/io").text
    assert re.search(r"/runs/\d+/volume/volume", refine)
    assert re.search(r'href="/p/proj/sets/\d+"', refine) and re.search(r"/runs/\d+/plots", refine)
    classes = client.get("/p/proj/runs/classify2d/tab/io").text
    assert re.search(r"/runs/\d+/classes", classes)


# --------------------------------------------------------------------------- only the project's files

@pytest.fixture(scope="module")
def outside(project: Project) -> Path:
    """A real MRC file outside the project, and a symlink to it inside the project."""
    elsewhere = project.path.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    secret = elsewhere / "secret.mrc"
    mrc.write_image(secret, np.full((16, 16), 7.0, dtype=np.float32), 1.0)
    link = project.path / "runs" / "extract" / "link.mrc"
    if not link.is_symlink():
        link.symlink_to(secret)
    return secret


@pytest.mark.parametrize("path", [
    "/p/proj/img/image/%2e%2e/elsewhere/secret.mrc",
    "/p/proj/img/image/..%2felsewhere%2fsecret.mrc",
    "/p/proj/img/image/runs/%2e%2e/%2e%2e/elsewhere/secret.mrc",
    "/p/proj/img/image//{absolute}",
    "/p/proj/img/image/%2f{absolute}",
    "/p/proj/img/image/runs/extract/link.mrc",
    "/p/proj/img/image/.orch/tls/ca.crt",
    "/p/proj/img/image/runs/extract/no_such.mrc",
    "/p/proj/img/sheet.png?f=../elsewhere/secret.mrc&i=0.1",
    "/p/proj/img/sheet.png?f=runs/extract/link.mrc&i=0.1",
])
def test_no_file_outside_the_project_is_served(web: tuple[TestClient, str], outside: Path, path: str) -> None:
    client, _csrf = web
    answer = client.get(path.format(absolute=str(outside).lstrip("/")))
    assert answer.status_code in (403, 404), (path, answer.status_code)
    assert answer.headers["content-type"].startswith("text/html") and "Traceback" not in answer.text


def test_a_file_that_is_no_mrc_is_refused_with_its_reason(web: tuple[TestClient, str]) -> None:
    client, _csrf = web
    answer = client.get("/p/proj/img/image/store.sqlite")
    assert answer.status_code == 422 and "store.sqlite: not an MRC file" in answer.text
    assert "SQLite format" not in answer.text


def test_a_symlink_that_stays_inside_the_project_is_followed(project: Project, web: tuple[TestClient, str]) -> None:
    client, _csrf = web
    target = next((project.path / "runs" / "motioncorr" / "micrographs").glob("*.mrc"))
    link = project.path / "runs" / "motioncorr" / "inside_link.mrc"
    if not link.is_symlink():
        link.symlink_to(target)
    answer = client.get("/p/proj/img/image/runs/motioncorr/inside_link.mrc?size=64")
    assert answer.status_code == 200 and max(png_size(answer.content)) <= 64
    link.unlink()
