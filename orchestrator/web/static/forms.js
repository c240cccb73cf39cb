/* The form pages: conditions that show and hide fields as the user types (forms-conditions.js),
   the problems the server finds shown beside their fields while the user types, the pointer
   choosers, the protocol search; the wizards are in forms-wizards.js. */
(function () {
  "use strict";

  var evaluateCondition = window.orchConditions.evaluateCondition;
  var wizards = window.orchWizards;

  /* ---------------- the form ---------------- */

  function form() { return document.getElementById("run-form"); }

  var debounce = window.orchDebounce;

  /* a field's typed value as conditions read it: undefined when it cannot be told yet */
  function typedValue(wrapper, params) {
    var name = wrapper.getAttribute("data-field"), kind = wrapper.getAttribute("data-kind");
    var spec = params[name] || {}, f = form(), text;
    if (kind === "bool") {
      var box = wrapper.querySelector("input[type=checkbox]");
      return box ? box.checked : spec.default;
    }
    if (kind === "enum" && wrapper.querySelector("input[type=radio]")) {
      var on = wrapper.querySelector("input[type=radio]:checked");
      text = on ? on.value : "";
    } else {
      var input = f.elements[name];
      text = input && input.value !== undefined ? String(input.value) : "";
    }
    if (text.trim() === "") return spec.default === undefined ? null : spec.default;
    if (kind === "int" || kind === "float") {
      var number = Number(text.trim());
      if (!isFinite(number) || (kind === "int" && !Number.isInteger(number))) return undefined;
      return number;
    }
    return text;
  }

  function applyConditions() {
    var f = form();
    if (!f) return;
    var params = JSON.parse(f.querySelector(".form-params").textContent);
    var values = {};
    var wrappers = Array.prototype.slice.call(f.querySelectorAll(".field[data-kind]"));
    /* in declaration order, as the server does: a hidden param keeps its default */
    wrappers.forEach(function (wrapper) {
      var name = wrapper.getAttribute("data-field"), condition = wrapper.getAttribute("data-condition");
      var shown = true;
      if (condition) {
        var result;
        try { result = evaluateCondition(condition, values); } catch (err) { result = null; }
        shown = result !== false;
      }
      wrapper.hidden = !shown;
      wrapper.querySelectorAll("input, select, button").forEach(function (el) { el.disabled = !shown; });
      values[name] = shown ? typedValue(wrapper, params) : (params[name] || {}).default;
    });
    f.querySelectorAll(".form-section").forEach(function (section) {
      section.hidden = !section.querySelector(".field:not([hidden])");
    });
  }

  /* ---------------- problems beside their fields ---------------- */

  var touched = {};
  var generation = 0;   /* a check sent before the form came back from a launch is not shown over its answer */

  function showProblems(answer) {
    var f = form();
    if (!f) return;
    f.querySelectorAll(".field[data-field]").forEach(function (wrapper) {
      var name = wrapper.getAttribute("data-field");
      if (!touched[name]) return;
      var problems = answer.fields[name] || [];
      var slot = wrapper.querySelector(".field-problems");
      if (!slot) return;
      slot.textContent = "";
      problems.forEach(function (text) {
        var line = document.createElement("div");
        line.className = "problem";
        line.textContent = text;
        slot.appendChild(line);
      });
      wrapper.classList.toggle("invalid", problems.length > 0);
    });
  }

  var checkNow = debounce(function () {
    var f = form();
    if (!f) return;
    var query = new URLSearchParams(new FormData(f)).toString(), sent = generation;
    fetch(f.getAttribute("data-check-url") + "?" + query, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) { if (answer && sent === generation) showProblems(answer); })
      .catch(function () { /* the check is a help; the launch checks again */ });
  }, 350);

  function onFieldEvent(event) {
    var f = form();
    if (!f || !f.contains(event.target)) return;
    var wrapper = event.target.closest(".field[data-field]");
    if (!wrapper) return;
    var name = wrapper.getAttribute("data-field");
    if (event.target.type === "checkbox") {
      var label = wrapper.querySelector(".switch-text");
      if (label) label.textContent = event.target.checked ? "yes" : "no";
    }
    applyConditions();
    var reset = wrapper.querySelector(".reset-default");
    if (reset && event.target.name === name) reset.hidden = String(event.target.value).trim() === reset.getAttribute("data-default");
    if (event.type === "change" || wrapper.getAttribute("data-kind") !== "str") {
      touched[name] = true;
      checkNow();
    }
    wizards.fieldChanged(name);
  }

  document.addEventListener("input", onFieldEvent);
  document.addEventListener("change", onFieldEvent);

  document.addEventListener("click", function (event) {
    var reset = event.target.closest(".reset-default");
    if (reset) {
      var input = wizards.fieldInput(reset.closest(".field").getAttribute("data-field"));
      if (input) {
        input.value = reset.getAttribute("data-default");
        input.dispatchEvent(new Event("input", { bubbles: true }));
        input.dispatchEvent(new Event("change", { bubbles: true }));
      }
      return;
    }
    var refresh = event.target.closest(".refresh-choices");
    if (refresh) { refreshChoices(refresh.getAttribute("data-param")); return; }
    wizards.onClick(event.target);
  });

  function refreshChoices(name) {
    var f = form(), select = f && f.elements[name];
    if (!select) return;
    var url = f.getAttribute("data-choices-url") + encodeURIComponent(name) + "?value=" + encodeURIComponent(select.value);
    fetch(url).then(function (r) { return r.ok ? r.text() : null; }).then(function (html) {
      if (html === null) return;
      select.innerHTML = html;
      window.orchToast && window.orchToast("outputs listed again");
      applyConditions();
    });
  }

  /* ---------------- the protocol chooser ---------------- */

  function initSearch() {
    var search = document.getElementById("protocol-search");
    if (!search) return;
    var filter = function () {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean), any = false;
      document.querySelectorAll(".plugin-group").forEach(function (group) {
        var shown = 0;
        group.querySelectorAll(".protocol-card").forEach(function (card) {
          var text = card.getAttribute("data-search");
          var match = words.every(function (w) { return text.indexOf(w) >= 0; });
          card.hidden = !match;
          if (match) shown++;
        });
        group.hidden = shown === 0;
        any = any || shown > 0;
      });
      document.getElementById("no-match").hidden = any;
    };
    search.addEventListener("input", filter);
    search.addEventListener("keydown", function (event) {
      if (event.key !== "Enter") return;
      var first = document.querySelector(".protocol-card:not([hidden])");
      if (first) window.location.href = first.getAttribute("href");
    });
    filter();
  }

  function onLoad(node) {
    if (node.querySelector && (node.id === "run-form" || node.querySelector("#run-form"))) {
      if (node.id === "run-form") { touched = {}; generation++; }
      applyConditions();
      var first = node.querySelector(".field.invalid:not([hidden])") || node.querySelector(".form-alert");
      if (first && node.id === "run-form") {
        first.scrollIntoView({ behavior: "smooth", block: "center" });
        var input = first.querySelector("input:not([type=hidden]), select");
        if (input) input.focus({ preventScroll: true });
      }
    }
    var panel = node.classList && node.classList.contains("wizard-panel") ? node : (node.querySelector && node.querySelector(".wizard-panel"));
    if (panel && !panel.classList.contains("empty-wizard")) wizards.init(panel);
  }

  if (window.htmx) htmx.onLoad(onLoad);
  document.addEventListener("DOMContentLoaded", function () {
    initSearch();
    applyConditions();
  });
})();
