/* The viewers pages: gallery controls and item dialog, class selection, volume sliders, CTF picker. */
(function () {
  "use strict";

  /* a picture that cannot be drawn says so instead of a broken-image icon */
  document.addEventListener("error", function (event) {
    var img = event.target;
    if (img.tagName === "IMG" && img.parentNode && img.parentNode.classList.contains("pic")) {
      img.parentNode.classList.add("broken");
    }
  }, true);

  /* gallery: a changed select applies at once (the filter waits for Enter or Apply) */
  document.querySelectorAll("[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.requestSubmit(); });
  });
  document.querySelectorAll(".viewer-controls").forEach(function (form) {
    form.addEventListener("submit", function () {  /* a new filter or order starts on its first page */
      Array.prototype.forEach.call(form.querySelectorAll("input, select"), function (field) {
        if (field.name && field.value === "") field.disabled = true;
      });
    });
  });

  /* gallery: an item opens in a dialog with every column (and, for a micrograph, its CTF) */
  var dialog = document.getElementById("item-dialog");
  function openItem(tile) {
    if (!dialog || !window.htmx) return;
    window.htmx.ajax("GET", tile.getAttribute("data-detail"), { target: "#item-body", swap: "innerHTML" })
      .then(function () { if (!dialog.open) dialog.showModal(); });
  }
  document.addEventListener("click", function (event) {
    var tile = event.target.closest(".tile[data-detail]");
    if (tile) { openItem(tile); return; }
    if (dialog && event.target === dialog) dialog.close();  /* a click on the backdrop */
  });
  document.addEventListener("keydown", function (event) {
    var tile = event.target.closest && event.target.closest(".tile[data-detail]");
    if (tile && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); openItem(tile); }
  });

  /* class averages: what the selection holds, and the button only when it holds something */
  var subset = document.getElementById("subset-form");
  function countClasses() {
    var boxes = subset.querySelectorAll("input[name=class_id]");
    var classes = 0, particles = 0;
    boxes.forEach(function (box) {
      if (box.checked) { classes += 1; particles += Number(box.closest(".class-tile").getAttribute("data-size")); }
    });
    var total = Number(subset.getAttribute("data-total")) || 0;
    document.getElementById("picked-classes").textContent = classes;
    document.getElementById("picked-particles").textContent = particles.toLocaleString();
    document.getElementById("picked-share").textContent = total ? (100 * particles / total).toFixed(1) : "0";
    var button = document.getElementById("make-subset");
    button.disabled = classes === 0 || button.hasAttribute("data-never");
  }
  if (subset) {
    subset.addEventListener("change", countClasses);
    subset.addEventListener("click", function (event) {
      var pick = event.target.closest("[data-pick]");
      if (!pick) return;
      var on = pick.getAttribute("data-pick") === "all";
      subset.querySelectorAll("input[name=class_id]").forEach(function (box) { box.checked = on; });
      countClasses();
    });
    countClasses();
  }

  /* volume: each slider moves its slice; a frame at a time, whatever the slider's speed */
  var volume = document.querySelector(".volume-grid");
  if (volume) {
    var token = volume.getAttribute("data-token"), size = volume.getAttribute("data-size");
    var pending = {};
    volume.querySelectorAll("input[type=range]").forEach(function (range) {
      var pane = range.closest(".volume-pane");
      var img = pane.querySelector("img.slice");
      var label = pane.querySelector(".slice-no");
      range.addEventListener("input", function () {
        label.textContent = range.value;
        if (pending[range.dataset.axis]) return;
        pending[range.dataset.axis] = true;
        requestAnimationFrame(function () {
          pending[range.dataset.axis] = false;
          img.src = img.dataset.base + "?axis=" + range.dataset.axis + "&index=" + range.value + "&size=" + size +
                    "&v=" + token;
          img.alt = "slice " + range.value + " along " + range.dataset.axis;
        });
      });
    });
    var axis = volume.querySelector(".projection-axis");
    if (axis) {
      axis.addEventListener("change", function () {
        var img = volume.querySelector("img.projection");
        img.src = img.dataset.base + "?axis=" + axis.value + "&size=" + size + "&v=" + token;
        img.alt = "maximum projection along " + axis.value;
      });
    }
  }

  /* plots: the CTF fit of another micrograph */
  document.querySelectorAll(".ctf-fit").forEach(function (box) {
    var pick = box.querySelector(".ctf-pick");
    if (!pick) return;
    pick.addEventListener("change", function () {
      var base = box.getAttribute("data-base") + encodeURIComponent(pick.value);
      box.querySelector(".ctf-1d").src = base + "/ctf.svg";
      box.querySelector(".ctf-2d").src = base + "/spectrum.png?size=384";
    });
  });
})();
