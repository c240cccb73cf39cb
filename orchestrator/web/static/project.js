/* The project page: the runs as a flowchart (cytoscape + dagre) and a table, kept live through
   server-sent events; selecting a run loads its panel. */
(function () {
  "use strict";
  var meta = document.getElementById("project-meta");
  var project = meta.getAttribute("data-project");
  var data = JSON.parse(document.getElementById("graph-data").textContent);
  var runs = {};      // id -> run
  var selected = null;
  var sortKey = null, sortDir = 1;
  var COLORS = { running: "#2f6fde", queued: "#8a94a8", finished: "#1f9d57", failed: "#d23c3c",
                 cancelled: "#d08a12", created: "#aab2c0" };

  function label(run) {
    var steps = run.steps || {};
    var total = 0, done = steps.finished || 0;
    Object.keys(steps).forEach(function (k) { total += steps[k]; });
    var progress = total ? " · " + done + "/" + total : "";
    return run.name + "\n" + run.protocol.split(".").pop() + progress;
  }

  function elements() {
    var els = [];
    Object.keys(runs).forEach(function (id) {
      var run = runs[id];
      els.push({ group: "nodes", data: { id: String(run.id), label: label(run), state: run.state } });
    });
    data.edges.forEach(function (e, i) {
      if (runs[e.source] && runs[e.target]) {
        els.push({ group: "edges", data: { id: "e" + i, source: String(e.source), target: String(e.target),
                                           label: e.output } });
      }
    });
    return els;
  }

  data.runs.forEach(function (run) { runs[run.id] = run; });

  var cy = cytoscape({
    container: document.getElementById("chart"),
    elements: elements(),
    minZoom: 0.05, maxZoom: 3,
    textureOnViewport: true,      // pan and zoom a picture of the chart, not every box again
    hideEdgesOnViewport: true,
    style: [
      { selector: "node", style: {
          "shape": "round-rectangle", "width": 180, "height": 48, "background-color": "#fff",
          "border-width": 2, "border-color": function (n) { return COLORS[n.data("state")] || "#aab2c0"; },
          "label": "data(label)", "text-wrap": "wrap", "text-valign": "center", "font-size": 13,
          "color": "#1d2330", "font-family": "system-ui, sans-serif", "min-zoomed-font-size": 6 } },
      { selector: "node[state = 'running']", style: { "background-color": "#e6effd" } },
      { selector: "node[state = 'finished']", style: { "background-color": "#e9f7ef" } },
      { selector: "node[state = 'failed']", style: { "background-color": "#fdecec" } },
      { selector: "node[state = 'cancelled']", style: { "background-color": "#fdf4e3" } },
      { selector: "node:selected", style: { "border-width": 4, "border-color": "#1d2330" } },
      { selector: "edge", style: {
          "width": 1.5, "line-color": "#9aa3b5", "target-arrow-color": "#9aa3b5",
          "target-arrow-shape": "triangle", "curve-style": "bezier", "label": "data(label)",
          "font-size": 9, "color": "#6b7385", "text-background-color": "#f5f6f8", "min-zoomed-font-size": 7,
          "text-background-opacity": 1, "text-background-padding": 2 } }
    ]
  });

  function layout() {
    // Up to a few hundred runs: dagre (layers, then fewer crossings). Beyond, a layered layout
    // in one pass (layer = longest path from the runs that read nothing; order in a layer = the
    // mean position of the runs read), linear in runs and links, where dagre's crossing
    // reduction takes most of a second on a thousand runs.
    if (cy.nodes().length > 400) {
      layered();
    } else {
      cy.layout({ name: "dagre", rankDir: "TB", nodeSep: 30, rankSep: 42, edgeSep: 10, fit: false,
                  ranker: cy.nodes().length > 150 ? "longest-path" : "network-simplex", animate: false }).run();
    }
    fit();
  }
  function layered() {
    var level = {}, parents = {}, children = {}, pending = {}, queue = [];
    cy.nodes().forEach(function (n) { parents[n.id()] = []; children[n.id()] = []; pending[n.id()] = 0; });
    cy.edges().forEach(function (e) {
      var s = e.source().id(), t = e.target().id();
      if (s === t) return;
      parents[t].push(s); children[s].push(t); pending[t] += 1;
    });
    Object.keys(pending).forEach(function (id) { if (!pending[id]) { queue.push(id); level[id] = 0; } });
    var order = [];
    while (queue.length) {            // Kahn's topological order: each run after those it reads
      var id = queue.shift(); order.push(id);
      children[id].forEach(function (c) {
        level[c] = Math.max(level[c] || 0, level[id] + 1);
        if (--pending[c] === 0) queue.push(c);
      });
    }
    var rows = [], slot = {}, positions = {};
    order.forEach(function (id) { (rows[level[id]] || (rows[level[id]] = [])).push(id); });
    rows.forEach(function (row, depth) {   // a layer is placed once the layers above it are
      var keyed = row.map(function (id, i) {
        var p = parents[id].filter(function (q) { return slot[q] !== undefined; });
        return { id: id, key: p.length ? p.reduce(function (a, q) { return a + slot[q]; }, 0) / p.length : i };
      });
      keyed.sort(function (a, b) { return a.key - b.key; });
      keyed.forEach(function (item, i) { slot[item.id] = i; positions[item.id] = { x: i * 210, y: depth * 92 }; });
    });
    cy.nodes().positions(function (n) { return positions[n.id()] || { x: 0, y: 0 }; });
  }

  var t0 = performance.now();
  layout();
  window.orchFlowchartMs = performance.now() - t0;   // read by bench/web.py

  /* fit the chart, but never zoom in past life size nor out past legibility: a long chain
     is then shown from its start, and the user pans (drag) or zooms (wheel) along it */
  function fit() {
    cy.fit(undefined, 30);
    if (cy.zoom() > 1.1) { cy.zoom(1.1); cy.center(); }
    if (cy.zoom() < 0.55) {
      var roots = cy.nodes().roots();
      cy.zoom(0.55);
      cy.pan({ x: 30, y: 30 });
      if (roots.length) {
        var first = roots[0].renderedPosition();   // the chart's start, top left
        cy.panBy({ x: 40 + 90 * cy.zoom() - first.x, y: 50 - first.y + 30 });
      }
    }
  }
  cy.on("tap", "node", function (event) { select(Number(event.target.id())); });
  document.getElementById("fit").addEventListener("click", function () { cy.fit(undefined, 30); });

  function select(id) {
    selected = id;
    cy.$(":selected").unselect();
    var node = cy.getElementById(String(id));
    if (node) node.select();
    document.querySelectorAll("#runs-body tr").forEach(function (tr) {
      tr.classList.toggle("selected", Number(tr.getAttribute("data-id")) === id);
    });
    htmx.ajax("GET", "/p/" + encodeURIComponent(project) + "/runs/" + id, { target: "#panel", swap: "innerHTML" });
  }
  window.orchSelectRun = select;
  window.orchChart = cy;

  document.getElementById("panel").addEventListener("click", function (event) {
    var link = event.target.closest(".run-link");
    if (link) { event.preventDefault(); select(Number(link.getAttribute("data-run"))); }
  });

  /* the table */
  function stepsCell(run) {
    var steps = run.steps || {}, total = 0;
    Object.keys(steps).forEach(function (k) { total += steps[k]; });
    if (!total) return '<span class="muted">—</span>';
    var bar = '<span class="steps-bar">';
    ["finished", "running", "queued", "pending", "failed", "cancelled"].forEach(function (state) {
      if (steps[state]) bar += '<span style="width:' + (100 * steps[state] / total) + '%;background:' +
        (COLORS[state] || "#c6ccd8") + '"></span>';
    });
    bar += "</span>";
    var text = (steps.finished || 0) + "/" + total;
    if (steps.running) text += " · " + steps.running + " running";
    if (steps.failed) text += " · " + steps.failed + " failed";
    return bar + text;
  }
  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function duration(s) {
    if (s === null || s === undefined) return "—";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }
  function row(run) {
    return '<tr data-id="' + run.id + '"' + (run.id === selected ? ' class="selected"' : "") + '>' +
      '<td><span class="badge ' + esc(run.state) + '">' + esc(run.state) + "</span></td>" +
      "<td><strong>" + esc(run.name) + '</strong> <span class="muted small">#' + run.id + "</span></td>" +
      "<td>" + esc(run.protocol) + "</td><td>" + esc(run.host) + "</td><td>" + duration(run.duration_s) + "</td>" +
      "<td>" + stepsCell(run) + "</td><td>" + run.outputs.map(function (o) {
        return '<span title="' + esc(o.type) + '">' + esc(o.name) + "</span>"; }).join(", ") + "</td></tr>";
  }
  function renderTable() {
    var filter = document.getElementById("filter").value.toLowerCase();
    var list = Object.keys(runs).map(function (id) { return runs[id]; }).filter(function (run) {
      return !filter || [run.name, run.protocol, run.state, run.host].join(" ").toLowerCase().indexOf(filter) >= 0;
    });
    if (sortKey) {
      list.sort(function (a, b) {
        var x = a[sortKey], y = b[sortKey];
        if (x === y) return 0; if (x === null || x === undefined) return 1; if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * sortDir;
      });
    }
    document.getElementById("runs-body").innerHTML = list.map(row).join("");
  }
  function renderCounts() {
    var counts = {};
    Object.keys(runs).forEach(function (id) { counts[runs[id].state] = (counts[runs[id].state] || 0) + 1; });
    document.getElementById("counts").innerHTML = ["running", "queued", "failed", "finished", "cancelled", "created"]
      .filter(function (s) { return counts[s]; })
      .map(function (s) { return '<span class="badge ' + s + '">' + counts[s] + " " + s + "</span>"; }).join("");
  }
  document.getElementById("runs-body").addEventListener("click", function (event) {
    var tr = event.target.closest("tr[data-id]");
    if (tr) select(Number(tr.getAttribute("data-id")));
  });
  document.querySelectorAll("th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-sort");
      sortDir = sortKey === key ? -sortDir : 1; sortKey = key; renderTable();
    });
  });
  document.getElementById("filter").addEventListener("input", renderTable);
  function show(view) {
    var chart = view === "chart";
    document.getElementById("chart").hidden = !chart;
    document.getElementById("table-view").hidden = chart;
    document.getElementById("show-chart").classList.toggle("active", chart);
    document.getElementById("show-table").classList.toggle("active", !chart);
    document.getElementById("fit").hidden = !chart;
    if (chart) { cy.resize(); fit(); }
  }
  document.getElementById("show-chart").addEventListener("click", function () { show("chart"); });
  document.getElementById("show-table").addEventListener("click", function () { show("table"); });
  renderTable(); renderCounts();

  /* live updates */
  var liveBadge = document.getElementById("live");
  function applyChanges(change) {
    data.last_event = change.last_event;
    var sched = document.getElementById("scheduler");
    sched.className = "scheduler " + (change.scheduler.running ? "on" : "off");
    sched.textContent = change.scheduler.running ? "scheduler running" : "scheduler idle";
    if (change.structure) {
      fetch("/p/" + encodeURIComponent(project) + "/graph.json", { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (fresh) {
          data = fresh; runs = {};
          fresh.runs.forEach(function (run) { runs[run.id] = run; });
          cy.elements().remove(); cy.add(elements()); layout(); renderTable(); renderCounts();
          if (selected !== null && runs[selected]) cy.getElementById(String(selected)).select();
        });
      return;
    }
    change.runs.forEach(function (run) {
      var before = runs[run.id];
      runs[run.id] = run;
      var node = cy.getElementById(String(run.id));
      if (node && node.length) { node.data("state", run.state); node.data("label", label(run)); }
      if (before && before.state !== run.state && run.id === selected) {
        htmx.ajax("GET", "/p/" + encodeURIComponent(project) + "/runs/" + run.id, { target: "#panel", swap: "innerHTML" });
      }
    });
    renderTable(); renderCounts();
  }
  function connect() {
    var source = new EventSource("/p/" + encodeURIComponent(project) + "/live?since=" + data.last_event);
    source.addEventListener("open", function () { liveBadge.className = "live connected"; liveBadge.textContent = "● live"; });
    source.addEventListener("runs", function (event) { applyChanges(JSON.parse(event.data)); });
    source.addEventListener("error", function () {
      liveBadge.className = "live lost"; liveBadge.textContent = "● reconnecting";
    });
  }
  connect();

  /* the logs tab: follow a run's logs through server-sent events */
  var logSource = null;
  document.body.addEventListener("htmx:afterSwap", function () {
    var pre = document.getElementById("log");
    if (!pre || pre._following) return;
    pre._following = true;
    var stepSelect = document.getElementById("log-step");
    function follow() {
      if (logSource) logSource.close();
      pre.textContent = "";
      var url = pre.getAttribute("data-url") + (stepSelect.value ? "?step=" + encodeURIComponent(stepSelect.value) : "");
      var state = document.getElementById("log-state");
      state.textContent = "following…";
      logSource = new EventSource(url);
      logSource.addEventListener("log", function (event) {
        var chunk = JSON.parse(event.data);
        var prefix = stepSelect.value ? "" : "[" + chunk.step + "] ";
        var text = prefix ? chunk.text.replace(/^(?=.)/gm, prefix) : chunk.text;
        pre.appendChild(document.createTextNode(text));
        if (pre.textContent.length > 2000000) { pre.textContent = pre.textContent.slice(-1000000); }
        if (document.getElementById("log-scroll").checked) pre.scrollTop = pre.scrollHeight;
      });
      logSource.addEventListener("ended", function (event) {
        state.textContent = "run " + JSON.parse(event.data).state; logSource.close();
      });
      logSource.addEventListener("error", function () { state.textContent = "log stream closed"; });
    }
    stepSelect.addEventListener("change", follow);
    follow();
  });
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    if (logSource && event.detail.target && (event.detail.target.id === "tab-body" || event.detail.target.id === "panel")) {
      logSource.close(); logSource = null;
    }
  });
})();

/* Forms: the page opened as /p/NAME?run=ID (a new run just launched from its form) selects that run. */
(function () {
  "use strict";
  var wanted = new URLSearchParams(window.location.search).get("run");
  if (!wanted || !/^\d+$/.test(wanted) || !window.orchSelectRun) return;
  window.orchSelectRun(Number(wanted));
})();
