// Admin pages: progressive enhancement only; every page works without this file.
(function () {
  "use strict";

  // Copy buttons: <button class="copy" data-copy="#selector">
  document.querySelectorAll("button.copy[data-copy]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var src = document.querySelector(btn.getAttribute("data-copy"));
      if (!src) return;
      var note = btn.parentNode.querySelector(".copied");
      var done = function () { if (note) { note.textContent = "Copied"; setTimeout(function () { note.textContent = ""; }, 2000); } };
      var text = src.value !== undefined ? src.value : src.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { src.select(); document.execCommand("copy"); done(); });
      } else {
        src.select();
        document.execCommand("copy");
        done();
      }
    });
  });

  // Live parts: an element with data-poll="URL" is refreshed from URL (JSON {"cells": {"css selector": text}}).
  document.querySelectorAll("[data-poll]").forEach(function (root) {
    var url = root.getAttribute("data-poll");
    var every = parseInt(root.getAttribute("data-poll-seconds") || "5", 10) * 1000;
    var timer = null;
    function tick() {
      if (document.hidden) { timer = setTimeout(tick, every); return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && data.cells) {
            Object.keys(data.cells).forEach(function (sel) {
              var el = root.querySelector(sel);
              if (el) el.textContent = String(data.cells[sel]);
            });
          }
          if (data && data.stamp) {
            var stamp = document.querySelector(".poll-stamp");
            if (stamp) stamp.textContent = data.stamp;
          }
          if (!data || data.live !== false) timer = setTimeout(tick, every);
        })
        .catch(function () { timer = setTimeout(tick, every * 2); });
    }
    timer = setTimeout(tick, every);
  });
})();
