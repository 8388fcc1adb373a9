// Copy buttons: <button data-copy-target="ID" data-copied-label="Copied">. No inline script, so a
// Content-Security-Policy can forbid inline scripts.
(function () {
  "use strict";
  function announce(button, text) {
    var status = button.parentNode.querySelector(".copy-status");
    if (status) { status.textContent = text; }
  }
  function fallbackCopy(field) {
    field.focus();
    field.select();
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var field = document.getElementById(button.getAttribute("data-copy-target"));
    if (!field) { return; }
    var text = field.value !== undefined ? field.value : field.textContent;
    var done = function () { announce(button, button.getAttribute("data-copied-label") || ""); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { if (fallbackCopy(field)) { done(); } });
    } else if (fallbackCopy(field)) {
      done();
    }
  });
})();
