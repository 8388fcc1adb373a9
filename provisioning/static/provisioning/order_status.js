// The "Preparing your eSIM" page (provisioning/order.html): asks the status endpoint every few
// seconds until the activation code is ready, then shows the QR code, the code and the iOS link
// without a reload. No inline script (the Content-Security-Policy forbids it).
(function () {
  "use strict";
  var root = document.getElementById("esim-order");
  if (!root) { return; }
  var url = root.getAttribute("data-status-url");
  var done = ["released", "downloaded", "installed", "failed", "cancelled"];
  if (done.indexOf(root.getAttribute("data-status")) !== -1) { return; }
  var delay = 2000;
  function show(body) {
    var state = document.getElementById("order-state");
    if (state) { state.textContent = body.label; state.className = "badge esim-" + body.status; }
    if (body.status === "failed" || body.status === "cancelled") { window.location.reload(); return true; }
    var steps = document.getElementById("install-steps");
    if (steps && body.steps_html) { steps.outerHTML = body.steps_html; }  // rendered by our template
    if (!body.ready) { return false; }
    document.getElementById("install-qr").innerHTML = body.qr_svg;  // our own SVG (segno), not user input
    document.getElementById("lpa-code").value = body.lpa;
    document.getElementById("ios-install").setAttribute("href", body.ios_install_url);
    document.getElementById("preparing").hidden = true;
    document.getElementById("install").hidden = false;
    if (body.line_url) {
      document.getElementById("renewal-link").setAttribute("href", body.renewal_url);
      document.getElementById("line-link").setAttribute("href", body.line_url);
      document.getElementById("after-purchase").hidden = false;
    }
    var title = document.getElementById("order-title");
    title.textContent = title.getAttribute("data-ready-title");
    root.setAttribute("data-status", body.status);
    return true;
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && show(body)) { return; }
        delay = Math.min(delay * 1.5, 15000);
        window.setTimeout(poll, delay);
      })
      .catch(function () { window.setTimeout(poll, 15000); });
  }
  window.setTimeout(poll, delay);
})();
