// The fleet page, live: whenever the fleet changes, the server sends the changing part of
// the page again (rendered and escaped there) over Server-Sent Events; without JavaScript
// the page refreshes itself instead (<noscript> meta).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.active !== "yes" || !window.EventSource) return;
  var source = new EventSource("/fleets/" + live.dataset.fleet + "/live?version=" + live.dataset.version);

  source.addEventListener("fleet", function (event) {
    var message = JSON.parse(event.data);
    var holder = document.createElement("template");
    holder.innerHTML = message.html;
    document.getElementById("fleet-live").replaceChildren(holder.content);
    live.dataset.version = String(message.version);
  });
  source.addEventListener("end", function () {
    source.close();
    live.dataset.active = "no";
  });
  source.onerror = function () {
    // The stream closed for good (signed out, the server went away): reload to show why.
    if (source.readyState === EventSource.CLOSED) setTimeout(function () { location.reload(); }, 5000);
  };
})();
