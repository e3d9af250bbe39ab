// The run pages. Times: the server writes them in UTC with their date and zone; here they
// are shown in the reader's own zone. The run page, live: new entries arrive over
// Server-Sent Events as HTML the server rendered (and escaped); without JavaScript the page
// refreshes itself instead (<noscript> meta).
(function () {
  "use strict";

  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function localTimes(root) {
    var zone = "";
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(new Date());
      parts.forEach(function (p) { if (p.type === "timeZoneName") zone = p.value; });
    } catch (e) {
      return; // no Intl: the UTC text stays
    }
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) return;
      if (!el.title) el.title = el.textContent;
      el.textContent = at.getFullYear() + "-" + two(at.getMonth() + 1) + "-" + two(at.getDate()) +
        " " + two(at.getHours()) + ":" + two(at.getMinutes()) + ":" + two(at.getSeconds()) +
        (zone ? " " + zone : "");
    });
  }

  localTimes(document);
  var live = document.getElementById("live");
  if (!live || live.dataset.active !== "yes" || !window.EventSource) return;
  var source = new EventSource("/runs/" + live.dataset.run + "/live?after=" + live.dataset.after);

  function fragment(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html;
    return holder.content;
  }

  function place(message) {
    var old = document.getElementById(message.key);
    live.dataset.after = String(message.seq);
    if (message.html === "") {  // taken off the page (a phase heading left empty)
      if (old) old.remove();
      return;
    }
    var list = document.getElementById(message.section + "-list");
    if (!list) return;
    var section = document.getElementById(message.section + "-section");
    if (section) section.hidden = false;
    var empty = document.getElementById("empty");
    if (empty && message.section === "transcript") empty.remove();
    if (old) old.replaceWith(fragment(message.html));
    else list.appendChild(fragment(message.html));
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
    localTimes(summary);
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
