// Copy buttons: <button data-copy-target="ID" data-copied-label="Copied">. No inline script, so a
// Content-Security-Policy can forbid inline scripts.
(function () {
  "use strict";
  function announce(button, text) {
    var status = button.parentNode.querySelector(".copy-status");
    if (status) { status.textContent = text; }
  }
  function selectedCopy(field) {
    // The old way, for browsers without the async clipboard API (or when it is refused). Even if
    // it fails, the code stays selected for the customer to copy by hand.
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
      navigator.clipboard.writeText(text).then(done, function () { if (selectedCopy(field)) { done(); } });
    } else if (selectedCopy(field)) {
      done();
    }
  });
})();
