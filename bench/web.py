"""Benchmark: the web interface (issue 11) served by a real ``orch web``, measured in a real browser.

Usage:
    .venv/bin/python bench/web.py [--quick] [--keep]

Figures (DESIGN.md's format: ``BENCH figure=<name> value=<v> unit=<u> n=<size>``):

- ``project_page_ms``: the project page (HTML with the whole graph) served, median of several
  requests, for a project of ``n`` runs (1,000; chains of ten linked runs, three steps each);
- ``flowchart_render_ms``: those runs laid out and fitted by the page (``window.orchFlowchartMs``),
  with ``flowchart_first_paint_ms`` (the browser's first contentful paint) and
  ``flowchart_drawn_ms`` (navigation start until the frame after the layout has been painted);
- ``gallery_page_cold_ms`` / ``gallery_page_warm_ms``: a gallery page of 100 particle thumbnails
  of a set of 1M particles (``/p/NAME/sets/ID``), from navigation until every picture has
  arrived (each ``<img>``, or the one sheet the tiles are cut from); cold: nothing rendered yet
  on the server, a browser with an empty cache; warm: the server's pictures made, again a
  browser with an empty cache (median of three). Reported as not available (a ``#`` line, no
  number) when the server has no such page;
- ``state_to_browser_ms``: a run's state written to the store (through the lifecycle, as the
  scheduler does) until the open page's flowchart node has it, median of several changes;
- ``log_follow_rss_growth_mb``: the server's RSS growth (peak minus before) while a page follows
  a step's log that grows by ``n`` MB (100) at a steady rate (``rate_mb_s``); also
  ``log_follow_throughput_mb_s``, the rate at which the text reached the page.

The project is written through the store API directly (a benchmark may; it is no front end).
``--quick``: 200 runs, 100,000 particles, a 10 MB log: under a minute on two cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

# bench/queue.py must not hide the standard library's queue (dask imports it): this folder last
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import numpy as np  # noqa: E402
import psutil  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LOGIN_LINK = re.compile(r"(http://[^\s/]+)/login\?token=(\S+)")
CHAIN = 10
STEPS_PER_RUN = 3
STACKS = 10
PER_STACK = 100
BOX = 64
THUMBNAILS = 100
#: the page's cytoscape instance (cytoscape keeps it on its container)
CHART = "document.getElementById('chart')._cyreg.cy"
#: when the frame after the layout has been painted (performance.now(): ms since navigation start)
DRAWN_PROBE = """
(function probe() {
  if (window.orchFlowchartMs !== undefined) {
    requestAnimationFrame(function () {
      requestAnimationFrame(function () { window.orchDrawnAt = performance.now(); });
    });
  } else { requestAnimationFrame(probe); }
})();
"""


@dataclass(frozen=True)
class Sizes:
    runs: int
    particles: int
    log_mb: int
    log_rate_mb_s: float
    page_repeats: int
    state_repeats: int


FULL = Sizes(runs=1000, particles=1_000_000, log_mb=100, log_rate_mb_s=20.0, page_repeats=7, state_repeats=7)
QUICK = Sizes(runs=200, particles=100_000, log_mb=10, log_rate_mb_s=20.0, page_repeats=3, state_repeats=3)


def bench(figure: str, value: float, unit: str, n: int, **extra: object) -> None:
    tail = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"BENCH figure={figure} value={value:.6g} unit={unit} n={n}{tail}", flush=True)


def not_available(figure: str, reason: str) -> None:
    print(f"# figure={figure} not available: {reason}", flush=True)


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the project

def build_project(root: Path, sizes: Sizes) -> tuple[Any, dict[str, Any]]:
    """A project of ``sizes.runs`` runs in chains of ten, mostly finished; a few left created
    (for the state changes), one running with a step whose log the bench writes; a particle set."""
    from orchestrator.project import Project
    from orchestrator.store import InputLink, QueuedAttempt

    project = Project.create(root / "bench")
    store = project.open_store()
    life = store.lifecycle
    ids: list[int] = []
    started = time.perf_counter()
    for i in range(sizes.runs):
        if i % CHAIN == 0:
            run = store.runs.create("testkit.produce", {"count": 3}, name=f"produce-{i:04d}")
        else:
            run = store.runs.create("testkit.chain", {"source": f"{ids[-1]}.files"}, name=f"derive-{i:04d}",
                                    inputs=[InputLink("source", ids[-1], "files")])
        ids.append(run.id)
        store.steps.add(run.id, [{"name": f"step_{k}", "func": "orch_testkit.steps:noop_step"}
                                 for k in range(STEPS_PER_RUN)])
    spare = ids[-sizes.state_repeats:]  # left CREATED: the state changes the browser must see
    for run_id in ids[:-sizes.state_repeats]:
        life.queue_run(run_id)
        life.start_run(run_id)
        if run_id % 17 == 0:
            life.fail_run(run_id, "a failure for the picture")
        else:
            life.finish_run(run_id, [])
    note(f"{sizes.runs} runs written in {time.perf_counter() - started:.1f} s")

    talk = store.runs.create("testkit.sleep", {"count": 1}, name="talker")
    (step_id,) = store.steps.add(talk.id, [{"name": "talk", "func": "orch_testkit.steps:sleep_step"}]).values()
    life.queue_run(talk.id)
    life.start_run(talk.id)
    life.queue_steps([QueuedAttempt(step_id, 1, "local")])
    life.start_step(step_id, 1, host="local")
    log = project.run_dir("talker") / "logs" / "talk.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()

    set_id = make_particles(project, store, ids[0], sizes.particles)
    store.close()
    return project, {"spare": spare, "talker": talk.id, "log": log, "set_id": set_id}


def make_particles(project: Any, store: Any, run_id: int, n: int) -> int:
    """A set of ``n`` particles whose images are in ten MRC stacks inside the project."""
    import mrcfile

    started = time.perf_counter()
    rng = np.random.default_rng(7)
    folder = project.path / "Extract"
    folder.mkdir()
    stacks = []
    yy, xx = np.mgrid[:BOX, :BOX] - BOX / 2
    blob = np.exp(-(xx**2 + yy**2) / (2 * 9.0**2)).astype(np.float32)
    for s in range(STACKS):
        path = folder / f"stack_{s:02d}.mrcs"
        images = blob[None] + rng.normal(0, 0.6, (PER_STACK, BOX, BOX)).astype(np.float32)
        with mrcfile.new(str(path), overwrite=True) as mrc:
            mrc.set_data(images)
            mrc.voxel_size = 2.0
        stacks.append(str(path))
    i = np.arange(n)
    stack_names = np.array(stacks, dtype=object)
    defocus = rng.uniform(8000, 30000, n)
    columns = {
        "image_index": i % PER_STACK + 1, "image_path": stack_names[(i // PER_STACK) % STACKS],
        "micrograph_id": i // 200 + 1, "coord_x": rng.integers(0, 4096, n), "coord_y": rng.integers(0, 4096, n),
        "defocus_u": defocus, "defocus_v": defocus - rng.uniform(0, 800, n), "defocus_angle": rng.uniform(0, 180, n),
        "class_id": i % 50 + 1,
    }
    pset = store.create_set("particles", "Particle", run_id=run_id,
                            properties={"acquisition": {"voltage_kv": 300, "cs_mm": 2.7, "amplitude_contrast": 0.1,
                                                        "pixel_size_a": 2.0}})
    pset.append_columns(columns)
    pset.close()
    note(f"{n} particles written in {time.perf_counter() - started:.1f} s (set {pset.id})")
    return int(pset.id)


# --------------------------------------------------------------------------- the server

@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    token: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(env: dict[str, str], cwd: Path) -> Server:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "web", "--all", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                               env=env, cwd=cwd)
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    for line in process.stdout:
        lines.append(line)
        match = LOGIN_LINK.search(line)
        if match:
            server = Server(process, match.group(1), match.group(2))
            break
        if time.monotonic() > deadline:
            break
    else:
        raise RuntimeError("orch web printed no login link:\n" + "".join(lines))
    threading.Thread(target=lambda: [None for _ in process.stdout or []], daemon=True).start()
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{server.url}/login", timeout=2).close()
            return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"orch web did not answer on {server.url}")


def project_page_ms(server: Server, project: str, repeats: int) -> float:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{server.url}/login?token={server.token}").close()
    timings = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        with opener.open(f"{server.url}/p/{project}") as answer:
            body = answer.read()
        if i:  # the first one warms the server's imports and caches
            timings.append((time.perf_counter() - started) * 1e3)
        assert b"graph-data" in body
    return statistics.median(timings)


# --------------------------------------------------------------------------- in the browser

def new_page(browser: Any, server: Server, height: int = 900) -> tuple[Any, Any]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": height})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{server.url}/login?token={server.token}")
    return context, page


SHOTS: Path | None = None


def shot(page: Any, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"bench-web-{name}.png"))


def flowchart(browser: Any, server: Server, project: str, repeats: int) -> dict[str, float]:
    context, page = new_page(browser, server)
    page.add_init_script(DRAWN_PROBE)
    layout, paint, drawn = [], [], []
    for _ in range(repeats):
        page.goto(f"/p/{project}")
        page.wait_for_function("window.orchDrawnAt !== undefined")
        layout.append(page.evaluate("window.orchFlowchartMs"))
        drawn.append(page.evaluate("window.orchDrawnAt"))
        paint.append(page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime"
                                   " || NaN"))
    nodes = page.evaluate(f"{CHART}.nodes().length")
    shot(page, "flowchart")
    context.close()
    return {"layout": statistics.median(layout), "paint": statistics.median(paint),
            "drawn": statistics.median(drawn), "nodes": nodes}


#: note when the run's node in the open page turns queued (Date.now(): the same clock as time.time())
WATCH_JS = f"""(id) => {{ window.orchSeen = null;
    const node = {CHART}.getElementById(String(id));
    node.on('data', () => {{
        if (node.data('state') === 'queued' && window.orchSeen === null) window.orchSeen = Date.now(); }}); }}"""


def state_to_browser(browser: Any, server: Server, project: Any, spare: list[int]) -> list[float]:
    context, page = new_page(browser, server)
    page.goto(f"/p/{project.name}")
    page.wait_for_selector("#live.connected")
    store = project.open_store()
    delays = []
    try:
        for run_id in spare:
            page.evaluate(WATCH_JS, run_id)
            written = time.time() * 1e3
            store.lifecycle.queue_run(run_id)
            page.wait_for_function("window.orchSeen !== null")
            delays.append(page.evaluate("window.orchSeen") - written)
            time.sleep(0.3)  # changes apart, not batched into one event
    finally:
        store.close()
        context.close()
    return delays


#: true once every picture of the gallery arrived (its <img>s, or the one sheet its tiles are cut
#: from); notes when (ms since navigation start) the first time it is
GALLERY_DONE_JS = """(wanted) => {
    if (window.orchGalleryDone !== undefined) return true;
    const tiles = document.querySelectorAll('.gallery .tile').length;
    const imgs = [...document.querySelectorAll('.gallery img')];
    const sheet = document.querySelector('.gallery[data-sheet]');
    if (tiles < wanted || !imgs.every(i => i.complete && i.naturalWidth > 0)) return false;
    if (sheet) {
        const url = new URL(sheet.getAttribute('data-sheet'), location.href).href;
        const loaded = performance.getEntriesByName(url).some(e => e.responseEnd > 0);
        if (!loaded) return false;
    }
    window.orchGalleryDone = performance.now();
    return true;
}"""


def gallery(browser: Any, server: Server, project: Any, set_id: int) -> tuple[float | None, list[float], str]:
    """(cold ms, warm ms list, why not) for the gallery page of THUMBNAILS pictures."""
    url = f"/p/{project.name}/sets/{set_id}?limit={THUMBNAILS}"
    shutil.rmtree(project.path / ".orch" / "thumbnails", ignore_errors=True)
    timings = []
    for _ in range(4):  # cold, then three warm
        # tall enough for every tile: pictures loaded lazily would wait for a scroll otherwise
        context, page = new_page(browser, server, height=6000)
        answer = page.goto(url, wait_until="commit")
        if answer is None or answer.status != 200:
            context.close()
            return None, [], f"GET {url} answered {answer.status if answer else 'nothing'}"
        try:
            page.wait_for_function(GALLERY_DONE_JS, arg=THUMBNAILS, timeout=60_000)
        except Exception as exc:  # noqa: BLE001 - a page still being written: say what it showed
            shown = page.evaluate("document.querySelectorAll('.gallery .tile').length")
            context.close()
            return None, [], f"the page showed {shown} tiles with pictures, not {THUMBNAILS} ({type(exc).__name__})"
        timings.append(page.evaluate("window.orchGalleryDone"))
        if len(timings) == 1:
            page.set_viewport_size({"width": 1400, "height": 900})
            shot(page, "gallery")
        context.close()
    return timings[0], timings[1:], ""


def log_follow(browser: Any, server: Server, project: Any, run_id: int, log: Path, sizes: Sizes) -> dict[str, float]:
    context, page = new_page(browser, server)
    page.goto(f"/p/{project.name}")
    page.wait_for_selector("#live.connected")
    page.evaluate("(id) => window.orchSelectRun(id)", run_id)
    page.click(".tabs button:has-text('Logs')")
    page.wait_for_selector("#log-state:has-text('following')")
    server_process = psutil.Process(server.process.pid)
    time.sleep(1.0)
    before = server_process.memory_info().rss
    peak = before
    marker = f"END-OF-LOG-{uuid.uuid4().hex}"
    line = ("x" * 99 + "\n").encode()
    chunk = line * (1024 * 1024 // len(line) // 4)  # ~256 KB
    total = sizes.log_mb * 1024 * 1024
    interval = len(chunk) / (sizes.log_rate_mb_s * 1024 * 1024)
    written = 0
    started = time.perf_counter()
    with log.open("ab") as stream:
        while written < total:
            stream.write(chunk)
            stream.flush()
            written += len(chunk)
            peak = max(peak, server_process.memory_info().rss)
            lag = started + written / len(chunk) * interval - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
        stream.write(f"{marker}\n".encode())
    while True:
        peak = max(peak, server_process.memory_info().rss)
        if page.evaluate("(m) => document.getElementById('log').textContent.includes(m)", marker):
            break
        if time.perf_counter() - started > 600:
            raise RuntimeError("the page never showed the end of the log")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    context.close()
    return {"growth_mb": (peak - before) / 2**20, "throughput": written / 2**20 / elapsed}


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: under a minute")
    parser.add_argument("--keep", action="store_true", help="keep the project folder (its path is printed)")
    parser.add_argument("--shots", type=Path, metavar="DIR", help="save screenshots of the pages measured there")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    global SHOTS
    SHOTS = args.shots
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: install it with `bash tests/infra/system-deps.sh browser`", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="orch-bench-web-"))
    home = root / "home"
    (home / ".config").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "ORCH_HOME": str(root / "orch-home"), "PYTHONUNBUFFERED": "1"}
    env.pop("ORCH_HOSTS", None)
    os.environ.update({k: env[k] for k in ("XDG_CONFIG_HOME", "ORCH_HOME")})  # the project goes on that list
    server = None
    try:
        project, made = build_project(root, sizes)
        server = start_server(env, root)
        n_runs = sizes.runs + 1
        bench("project_page_ms", project_page_ms(server, project.name, sizes.page_repeats), "ms", n_runs)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            chart = flowchart(browser, server, project.name, 3)
            assert chart["nodes"] == n_runs, chart
            bench("flowchart_render_ms", chart["layout"], "ms", n_runs)
            bench("flowchart_first_paint_ms", chart["paint"], "ms", n_runs)
            bench("flowchart_drawn_ms", chart["drawn"], "ms", n_runs)

            cold, warm, why = gallery(browser, server, project, made["set_id"])
            if cold is None:
                not_available("gallery_page_cold_ms", why)
                not_available("gallery_page_warm_ms", why)
            else:
                bench("gallery_page_cold_ms", cold, "ms", THUMBNAILS, set_size=sizes.particles)
                bench("gallery_page_warm_ms", statistics.median(warm), "ms", THUMBNAILS, set_size=sizes.particles)

            delays = state_to_browser(browser, server, project, made["spare"])
            bench("state_to_browser_ms", statistics.median(delays), "ms", n_runs, max=f"{max(delays):.0f}")

            followed = log_follow(browser, server, project, made["talker"], made["log"], sizes)
            bench("log_follow_rss_growth_mb", followed["growth_mb"], "MB", sizes.log_mb,
                  rate_mb_s=f"{sizes.log_rate_mb_s:g}")
            bench("log_follow_throughput_mb_s", followed["throughput"], "MB/s", sizes.log_mb)
            browser.close()
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"# kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
