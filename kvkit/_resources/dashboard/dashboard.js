// kvkit dashboard: refresh the server-rendered content every few seconds and ask before
// purging. The page works without this script; it adds no rendering of its own.
(function () {
  "use strict";
  var body = document.body;
  var every = parseFloat(body.getAttribute("data-refresh") || "0") * 1000;
  var url = body.getAttribute("data-fragment");
  var busy = false;

  function refresh() {
    if (busy || !url || document.hidden) return;
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        document.getElementById("content").innerHTML = html;
      })
      .catch(function (error) {
        var status = document.getElementById("status");
        if (status) {
          status.className = "status fail";
          status.textContent = "dashboard unreachable: " + error.message;
        }
      })
      .then(function () {
        busy = false;
      });
  }

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  if (every > 0 && url) window.setInterval(refresh, every);
})();
