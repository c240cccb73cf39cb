/* The wizards beside a form's fields: the panel the server draws in the side column, the overlay
   drawn on its picture (a circle, boxes, picks), dragging and the slider, and the value written
   back into the field as if typed. One drawer per wizard kind (KINDS), as one module per kind on
   the server (orchestrator/web/wizards/). Used by forms.js through window.orchWizards. */
(function () {
  "use strict";

  function form() { return document.getElementById("run-form"); }

  var debounce = window.orchDebounce;

  var current = null;          /* the open wizard: {param, kind, sample, panel, data, redraw} */
  var placeholder = null;      /* what the dock showed before a wizard opened */

  function dock() { return document.getElementById("wizard-dock"); }

  function openWizard(param, extra) {
    var f = form(), place = dock();
    if (!f || !place) return;
    if (placeholder === null) placeholder = place.innerHTML;
    var query = new URLSearchParams(new FormData(f));
    Object.keys(extra).forEach(function (key) { query.set(key, extra[key]); });
    f.querySelectorAll(".wizard-open").forEach(function (b) { b.classList.toggle("active", b.getAttribute("data-param") === param); });
    place.classList.add("loading");
    htmx.ajax("GET", f.getAttribute("data-wizard-url") + encodeURIComponent(param) + "?" + query.toString(),
              { target: "#wizard-dock", swap: "innerHTML" }).then(function () { place.classList.remove("loading"); });
  }

  function closeWizard() {
    var place = dock();
    current = null;
    if (place && placeholder !== null) place.innerHTML = placeholder;
    placeholder = null;
    var f = form();
    if (f) f.querySelectorAll(".wizard-open.active").forEach(function (b) { b.classList.remove("active"); });
  }

  function fieldInput(name) {
    var f = form();
    return f ? f.elements[name] : null;
  }

  function readField(name) {
    var input = fieldInput(name);
    var number = input ? Number(String(input.value).trim()) : NaN;
    return String(input && input.value).trim() === "" ? NaN : number;
  }

  /* write a value the user set in the wizard into its field, as if typed */
  function writeField(name, value, integer) {
    var input = fieldInput(name);
    if (!input) return;
    var text = integer ? String(Math.round(value)) : String(Number(value.toFixed(2)));
    if (input.value === text) return;
    input.value = text;
    writing = true;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.dispatchEvent(new Event("change", { bubbles: true }));
    writing = false;
  }
  var writing = false;

  var reloadForReads = debounce(function () {
    if (current) openWizard(current.param, { "wizard:sample": current.sample, "wizard:index": current.data.index || 0 });
  }, 500);

  function wizardFieldChanged(name) {
    if (!current || writing) return;
    if (name === current.param) {
      var value = readField(name);
      if (isFinite(value)) { current.slider.value = value; current.redraw(value, false); }
    } else if (current.reads.indexOf(name) >= 0) {
      reloadForReads();
    }
  }

  function svgPoint(svg, event) {
    var point = svg.createSVGPoint();
    point.x = event.clientX; point.y = event.clientY;
    return point.matrixTransform(svg.getScreenCTM().inverse());
  }

  function el(name, attrs, parent) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function snap(value, data) {
    var step = Number(data.step) || 1;
    var v = Math.round(value / step) * step;
    return Math.min(Math.max(v, Number(data.min)), Number(data.max));
  }

  function fmt(value, digits) { return String(Number(value.toFixed(digits))); }

  /* Each kind: draw(value) puts the overlay for a value; drag(point, start) gives the value a drag sets. */
  var KINDS = {
    particle_diameter: function (panel, data, overlay) {
      var centre = { x: data.x, y: data.y };
      var circle = el("circle", { class: "shape" }, overlay);
      var handle = el("circle", { class: "handle", r: 6 }, overlay);
      var label = el("text", { class: "label" }, overlay);
      var moving = false;
      return {
        draw: function (value) {
          var r = value / 2 / data.pixel_size_a;
          circle.setAttribute("cx", centre.x); circle.setAttribute("cy", centre.y); circle.setAttribute("r", r);
          handle.setAttribute("cx", centre.x + r); handle.setAttribute("cy", centre.y);
          handle.setAttribute("r", Math.max(3, data.width / 120));
          label.setAttribute("x", centre.x); label.setAttribute("y", centre.y - r - data.width / 80);
          label.textContent = fmt(value, 1) + " Å";
          label.setAttribute("font-size", data.width / 32);
        },
        start: function (point, value) {
          var r = value / 2 / data.pixel_size_a;
          var d = Math.hypot(point.x - centre.x, point.y - centre.y);
          moving = d < r * 0.75;
          if (!moving && d > r * 1.6) { centre = { x: point.x, y: point.y }; moving = true; }
        },
        drag: function (point) {
          if (moving) { centre = { x: point.x, y: point.y }; return null; }
          return 2 * Math.hypot(point.x - centre.x, point.y - centre.y) * data.pixel_size_a;
        },
        readout: function (value) { return fmt(value, 1) + " Å · " + fmt(value / data.pixel_size_a, 1) + " px"; }
      };
    },

    box_size: function (panel, data, overlay) {
      var boxes = data.picks.map(function (p) {
        var g = el("g", {}, overlay);
        return { x: p[0], y: p[1], rect: el("rect", { class: "shape box" }, g),
                 ring: data.diameter_px ? el("circle", { class: "guide", cx: p[0], cy: p[1], r: data.diameter_px / 2 }, g) : null };
      });
      var anchor = boxes[0];
      return {
        draw: function (value) {
          boxes.forEach(function (b) {
            b.rect.setAttribute("x", b.x - value / 2); b.rect.setAttribute("y", b.y - value / 2);
            b.rect.setAttribute("width", value); b.rect.setAttribute("height", value);
          });
        },
        start: function (point) {
          var best = Infinity;
          boxes.forEach(function (b) {
            var d = Math.hypot(point.x - b.x, point.y - b.y);
            if (d < best) { best = d; anchor = b; }
          });
          if (data.picks.length === 1 && !data.diameter_px && best > 8) { anchor.x = point.x; anchor.y = point.y; }
        },
        drag: function (point) {
          return 2 * Math.max(Math.abs(point.x - anchor.x), Math.abs(point.y - anchor.y));
        },
        readout: function (value) {
          return fmt(value, 0) + " px · " + fmt(value * data.pixel_size_a, 0) + " Å" +
            (data.diameter_px ? " · " + fmt(value / data.diameter_px, 1) + "× the particle" : "");
        }
      };
    },

    pick_threshold: function (panel, data, overlay) {
      var picks = data.picks, radius = data.radius_px;
      var group = el("g", {}, overlay);
      var curve = panel.querySelector("svg.curve"), count = panel.querySelector(".pick-count");
      var lo = Number(data.min), hi = Number(data.max);
      var kept = function (value) {
        var above = picks.filter(function (p) { return p[2] >= value; });
        return data.max_picks > 0 ? above.slice(0, data.max_picks) : above;
      };
      /* the count of picks at every threshold, as a curve to click on */
      var samples = [], most = 1;
      for (var i = 0; i <= 60; i++) {
        var t = lo + (hi - lo) * i / 60, n = kept(t).length;
        samples.push([t, n]); most = Math.max(most, n);
      }
      var line = samples.map(function (s) {
        return (300 * (s[0] - lo) / (hi - lo)).toFixed(1) + "," + (58 - 54 * s[1] / most).toFixed(1);
      }).join(" ");
      el("polyline", { points: line, class: "curve-line" }, curve);
      var marker = el("line", { class: "curve-marker", y1: 0, y2: 60 }, curve);
      curve.addEventListener("click", function (event) {
        var box = curve.getBoundingClientRect();
        var value = snap(lo + (hi - lo) * (event.clientX - box.left) / box.width, data);
        current.set(value);
      });
      return {
        draw: function (value) {
          while (group.firstChild) group.removeChild(group.firstChild);
          var shown = kept(value);
          shown.forEach(function (p) { el("circle", { class: "pick", cx: p[0], cy: p[1], r: radius }, group); });
          var x = 300 * (value - lo) / (hi - lo);
          marker.setAttribute("x1", x); marker.setAttribute("x2", x);
          count.textContent = shown.length + " pick" + (shown.length === 1 ? "" : "s") + " at " + fmt(value, 1) + " σ";
        },
        start: function () {},
        drag: function () { return null; },
        readout: function (value) { return fmt(value, 1) + " σ · " + kept(value).length + " picks"; }
      };
    },

    mask_diameter: function (panel, data, overlay) {
      var half = data.box / 2;
      var tiles = data.tiles.map(function (t) {
        var g = el("g", {}, overlay);
        var label = el("text", { class: "tile-label", x: t.x + 2, y: t.y + data.box - 3, "font-size": Math.max(5, data.box / 8) }, g);
        label.textContent = t.short;
        el("title", {}, g).textContent = t.label;
        return { cx: t.x + half, cy: t.y + half, circle: el("circle", { class: "shape", cx: t.x + half, cy: t.y + half }, g) };
      });
      var anchor = tiles[0];
      return {
        draw: function (value) {
          var auto = value <= 0;
          var r = (auto ? data.auto_a : value) / 2 / data.pixel_size_a;
          tiles.forEach(function (t) { t.circle.setAttribute("r", r); t.circle.classList.toggle("auto", auto); });
        },
        start: function (point) {
          var best = Infinity;
          tiles.forEach(function (t) {
            var d = Math.hypot(point.x - t.cx, point.y - t.cy);
            if (d < best) { best = d; anchor = t; }
          });
        },
        drag: function (point) {
          return 2 * Math.hypot(point.x - anchor.cx, point.y - anchor.cy) * data.pixel_size_a;
        },
        readout: function (value) {
          return value <= 0 ? "0: 84 % of the box (" + fmt(data.auto_a, 0) + " Å)"
            : fmt(value, 1) + " Å · " + fmt(value / data.pixel_size_a, 1) + " px";
        }
      };
    },

    lowpass: function (panel, data) {
      var image = panel.querySelector(".lowpass-image"), label = panel.querySelector(".filtered-label");
      var base = panel.getAttribute("data-image");
      var load = debounce(function (value) {
        image.classList.add("stale");
        image.src = base + "&wizard:value=" + encodeURIComponent(value);
      }, 120);
      image.addEventListener("load", function () { image.classList.remove("stale"); });
      return {
        draw: function (value) {
          label.textContent = "low-passed to " + fmt(value, 1) + " Å";
          load(value);
        },
        start: function () {},
        drag: function () { return null; },
        readout: function (value) {
          return fmt(value, 1) + " Å · shell " + fmt(data.box * data.pixel_size_a / value, 1) + " of " + data.box / 2;
        }
      };
    }
  };

  function initWizard(panel) {
    var kind = panel.getAttribute("data-kind"), param = panel.getAttribute("data-param");
    var dataNode = panel.querySelector(".wizard-data");
    if (!dataNode || !KINDS[kind]) { current = null; return; }
    var data = JSON.parse(dataNode.textContent);
    var integer = panel.getAttribute("data-integer") === "true";
    var svg = panel.querySelector("svg.wizard-view"), overlay = svg ? svg.querySelector(".overlay") : null;
    var slider = panel.querySelector(".wizard-slider"), output = panel.querySelector(".wizard-value");
    var drawer = KINDS[kind](panel, data, overlay);
    var redraw = function (value, write) {
      drawer.draw(value);
      output.textContent = drawer.readout(value);
      if (write) writeField(param, value, integer);
    };
    var set = function (value) { slider.value = value; redraw(Number(slider.value), true); };
    var select = panel.querySelector(".wizard-sample-select");
    current = { param: param, kind: kind, sample: select ? select.value : "", data: data, slider: slider,
                reads: (panel.getAttribute("data-reads") || "").split(",").filter(Boolean), redraw: redraw, set: set };
    var start = readField(param);
    slider.value = isFinite(start) ? start : data.value;
    redraw(Number(slider.value), false);
    slider.addEventListener("input", function () { redraw(Number(slider.value), true); });
    if (select) select.addEventListener("change", function () { openWizard(param, { "wizard:sample": select.value }); });
    if (svg && overlay) {
      var dragging = false;
      svg.addEventListener("pointerdown", function (event) {
        dragging = true;
        svg.setPointerCapture(event.pointerId);
        drawer.start(svgPoint(svg, event), Number(slider.value));
        move(event);
      });
      var move = function (event) {
        if (!dragging) return;
        var value = drawer.drag(svgPoint(svg, event));
        if (value === null) { redraw(Number(slider.value), false); return; }
        set(snap(value, data));
      };
      svg.addEventListener("pointermove", move);
      svg.addEventListener("pointerup", function () { dragging = false; });
      svg.addEventListener("pointercancel", function () { dragging = false; });
    }
  }

  /* a click on a button of the wizards (open one, close it, another micrograph): true when handled */
  function onClick(target) {
    var open = target.closest(".wizard-open");
    if (open) { openWizard(open.getAttribute("data-param"), {}); return true; }
    if (target.closest(".wizard-close")) { closeWizard(); return true; }
    var step = target.closest(".wizard-index");
    if (step && current) {
      openWizard(current.param, { "wizard:sample": current.sample, "wizard:index": step.getAttribute("data-index") });
      return true;
    }
    return false;
  }

  window.orchWizards = { init: initWizard, fieldChanged: wizardFieldChanged, onClick: onClick, fieldInput: fieldInput };
})();
