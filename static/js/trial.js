// Progressive enhancement for the trial page: the form works without this file.
// - Keyboard: every radio button carries its key in data-key (decided on the server, app/participants/keys.py,
//   and shown next to it), so the key shown is the key that selects. Enter submits once a label and a
//   confidence are chosen. Key hints are shown only when this script runs and the device is not touch-first.
// - The time from the page being shown to the answer is measured in the browser (rt_ms).
(function () {
  "use strict";
  var form = document.getElementById("trial-form");
  if (!form) { return; }
  var shown = (window.performance && performance.now) ? performance.now() : Date.now();
  var byKey = {};
  var radios = form.querySelectorAll('input[type="radio"][data-key]');
  for (var i = 0; i < radios.length; i++) {
    var k = radios[i].getAttribute("data-key");
    if (k) { byKey[k] = radios[i]; }
  }
  var coarse = window.matchMedia && window.matchMedia("(hover: none) and (pointer: coarse)").matches;
  if (!coarse) { form.classList.add("keys-on"); }
  window.addEventListener("touchstart", function () { form.classList.remove("keys-on"); },
    { once: true, passive: true });

  function chosen(name) { return form.querySelector('input[name="' + name + '"]:checked') !== null; }
  var missing = form.querySelector(".key-missing");

  // The key pressed, as the character on it; the physical key's digit or letter when the layout gives
  // another character (AZERTY's unshifted "&" on the 1 key, a Cyrillic letter on the A key).
  function keyOf(ev) {
    var key = (ev.key || "").toLowerCase();
    if (byKey[key]) { return key; }
    var m = /^(?:Digit|Numpad)([0-9])$/.exec(ev.code || "") || /^Key([A-Z])$/.exec(ev.code || "");
    return m ? m[1].toLowerCase() : key;
  }

  var sent = false;
  function submit() {
    if (form.requestSubmit) { form.requestSubmit(); } else { form.querySelector('button[type="submit"]').click(); }
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) { return; }
    var t = ev.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
              (t.tagName === "INPUT" && t.type !== "radio" && t.type !== "hidden"))) { return; }
    if (ev.key === "Enter") {
      ev.preventDefault();
      if (chosen("label") && chosen("confidence")) { submit(); } else if (missing) { missing.hidden = false; }
      return;
    }
    var radio = byKey[keyOf(ev)];
    if (radio) {
      radio.checked = true;
      radio.focus();
      if (missing) { missing.hidden = true; }
      ev.preventDefault();
    }
  });

  form.addEventListener("submit", function (ev) {
    if (sent) { ev.preventDefault(); return; }  // a double click or Enter twice sends once
    var now = (window.performance && performance.now) ? performance.now() : Date.now();
    form.querySelector('input[name="rt_ms"]').value = String(Math.round(now - shown));
    sent = true;
  });
})();
