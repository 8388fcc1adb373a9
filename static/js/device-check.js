// The catalogue's "Is my phone compatible?" answered as the customer types. The form is a plain GET
// that the server answers the same way (accounts.catalogue.find_devices), so without this script
// nothing is lost; this file only saves the round trip. No inline script (Content-Security-Policy).
(function () {
  "use strict";
  var form = document.getElementById("device-check");
  var input = document.getElementById("device");
  var result = document.getElementById("device-result");
  var data = document.getElementById("device-index");
  if (!form || !input || !result || !data) { return; }
  var rows = JSON.parse(data.textContent);  // [brand, model, family label, caveat]
  function normal(text) { return text.toLowerCase().replace(/[^0-9a-z+]/g, ""); }
  function find(query) {
    var wanted = normal(query.slice(0, 60));
    if (wanted.length < 2) { return null; }
    var matches = rows.filter(function (row) {
      var name = normal(row[1]);
      var names = [name, normal(row[0]) + name, name.replace(/^galaxy/, "")];
      return names.some(function (n) { return n.indexOf(wanted) === 0 || (n.length >= 4 && wanted.indexOf(n) !== -1); });
    });
    var exact = matches.filter(function (row) {
      return wanted.indexOf(normal(row[1])) !== -1 || normal(row[0] + row[1]) === wanted;
    });
    if (exact.length) {
      var longest = Math.max.apply(null, exact.map(function (row) { return normal(row[1]).length; }));
      matches = exact.filter(function (row) { return normal(row[1]).length === longest; });
    }
    return matches.slice(0, 8);
  }
  function show() {
    var matches = find(input.value.trim());
    result.textContent = "";
    if (matches === null) { return; }
    if (!matches.length) {
      var p = document.createElement("p");
      p.textContent = form.getAttribute("data-no");
      result.appendChild(p);
      return;
    }
    var list = document.createElement("ul");
    list.className = "device-matches";
    matches.forEach(function (row) {
      var item = document.createElement("li");
      var strong = document.createElement("strong");
      strong.textContent = form.getAttribute("data-yes").replace("__MODEL__", row[1]);
      item.appendChild(strong);
      [row[2], row[3]].forEach(function (text) {
        if (!text) { return; }
        var note = document.createElement("span");
        note.className = "muted";
        note.textContent = text;
        item.appendChild(document.createElement("br"));
        item.appendChild(note);
      });
      list.appendChild(item);
    });
    result.appendChild(list);
  }
  input.addEventListener("input", show);
}());
