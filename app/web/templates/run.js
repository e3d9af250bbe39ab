// The run page, live: new entries arrive over Server-Sent Events as HTML the server rendered
// (and escaped); without JavaScript the page refreshes itself instead (<noscript> meta).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || live.dataset.active !== "yes" || !window.EventSource) return;
  var source = new EventSource("/runs/" + live.dataset.run + "/live?after=" + live.dataset.after);

  function fragment(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html;
    return holder.content;
  }

  function place(message) {
    var list = document.getElementById(message.section + "-list");
    if (!list) return;
    var section = document.getElementById(message.section + "-section");
    if (section) section.hidden = false;
    var empty = document.getElementById("empty");
    if (empty && message.section === "transcript") empty.remove();
    var old = document.getElementById(message.key);
    if (old) old.replaceWith(fragment(message.html));
    else list.appendChild(fragment(message.html));
    live.dataset.after = String(message.seq);
  }

  source.addEventListener("entry", function (event) {
    place(JSON.parse(event.data));
  });
  source.addEventListener("summary", function (event) {
    var summary = document.getElementById("summary");
    var timeline = summary.querySelector("details.timeline");
    var wasOpen = timeline ? timeline.open : null;
    var typed = summary.querySelector("textarea");
    var text = typed ? typed.value : "";
    summary.replaceChildren(fragment(JSON.parse(event.data).html));
    timeline = summary.querySelector("details.timeline");
    if (timeline && wasOpen !== null) timeline.open = wasOpen;
    typed = summary.querySelector("textarea");
    if (typed && text) typed.value = text;
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
