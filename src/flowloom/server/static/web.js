// FlowLoom web: light progressive enhancement only; every page works without it.
(function () {
  "use strict";
  // Ask before destructive form posts (revoking keys and roles).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  // Select a freshly shown secret when it gets focus, so it is easy to copy.
  document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
})();
