/* Behaviour shared by every page: copy buttons, tabs, the toast, htmx errors shown in place. */
(function () {
  "use strict";

  function toast(text) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.classList.add("show");
    clearTimeout(box._timer);
    box._timer = setTimeout(function () { box.classList.remove("show"); }, 2200);
  }
  window.orchToast = toast;

  /* fn, called once calls have stopped for ms (a field's checks while the user types) */
  window.orchDebounce = function (fn, ms) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  };
  document.addEventListener("orchToast", function (event) { toast(event.detail.value || String(event.detail)); });

  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.getElementById(copy.getAttribute("data-copy"));
      var text = source ? source.textContent : "";
      var done = function () { toast("BibTeX copied"); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
      } else { fallbackCopy(text); done(); }
      return;
    }
    var tab = event.target.closest(".tabs button");
    if (tab) {
      tab.parentNode.querySelectorAll("button").forEach(function (b) { b.classList.remove("active"); });
      tab.classList.add("active");
    }
  });

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
  }

  /* htmx puts error responses nowhere by default: show the server's message in the target. */
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
      if (event.detail.xhr.getResponseHeader("content-type") &&
          event.detail.xhr.getResponseHeader("content-type").indexOf("text/plain") === 0) {
        event.detail.serverResponse = '<div class="notice error" role="alert"></div>';
        var message = event.detail.xhr.responseText;
        setTimeout(function () {
          var notes = document.querySelectorAll(".notice.error:empty");
          notes.forEach(function (n) { n.textContent = message; });
        }, 0);
      }
    }
  });
})();
