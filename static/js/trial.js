// Progressive enhancement for the trial page: the form works without this file.
// - keys 1-9 and 0 pick labels 1-10; the confidence is picked with the mouse or Tab;
// - the time from the page being shown to the answer is measured in the browser (rt_ms).
(function () {
  "use strict";
  var form = document.getElementById("trial-form");
  if (!form) { return; }
  var shown = (window.performance && performance.now) ? performance.now() : Date.now();
  var labels = form.querySelectorAll('input[name="label"]');
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (ev.target && (ev.target.tagName === "INPUT" && ev.target.type === "number")) { return; }
    if (ev.key >= "0" && ev.key <= "9") {
      var i = ev.key === "0" ? 9 : parseInt(ev.key, 10) - 1;
      if (labels[i]) { labels[i].checked = true; labels[i].focus(); ev.preventDefault(); }
    }
  });
  var sent = false;
  form.addEventListener("submit", function (ev) {
    if (sent) { ev.preventDefault(); return; }  // a double click sends once
    var now = (window.performance && performance.now) ? performance.now() : Date.now();
    form.querySelector('input[name="rt_ms"]').value = String(Math.round(now - shown));
    sent = true;
  });
})();
