// The receipt's Print button; a file, not an inline script, so the Content-Security-Policy can
// forbid inline scripts.
document.getElementById("print-receipt").addEventListener("click", function () { window.print(); });
