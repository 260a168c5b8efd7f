// Viewing conditions (app/participants/viewing.py): fills the hidden fields of a participant form with the
// device pixel ratio, the viewport and screen size in CSS px, whether the page was touched and, on a trial
// page, the rendered size of the image at each scale. The server checks every value; nothing else is sent.
(function () {
  "use strict";
  var form = document.querySelector("form[data-viewing]");
  if (!form) { return; }
  var touched = false;
  window.addEventListener("touchstart", function () { touched = true; }, { passive: true });
  function set(name, value) {
    var input = form.querySelector('input[name="' + name + '"]');
    if (input) { input.value = String(value); }
  }
  function px(x) { return String(Math.round(x * 100) / 100); }
  function measure() {
    var de = document.documentElement;
    set("dpr", Math.round((window.devicePixelRatio || 1) * 1000) / 1000);
    set("vw", Math.round(de.clientWidth || window.innerWidth || 0));
    set("vh", Math.round(de.clientHeight || window.innerHeight || 0));
    set("sw", Math.round((window.screen && screen.width) || 0));
    set("sh", Math.round((window.screen && screen.height) || 0));
    set("touch", touched ? "1" : "0");
    var sizes = [];
    var imgs = document.querySelectorAll("div.stimulus img[data-scale]");
    for (var i = 0; i < imgs.length; i++) {
      var r = imgs[i].getBoundingClientRect();
      sizes.push(imgs[i].getAttribute("data-scale") + ":" + px(r.width) + "x" + px(r.height));
    }
    if (sizes.length) { set("rendered", sizes.join(",")); }
  }
  measure();
  form.addEventListener("submit", measure, true);  // capture: before trial.js's handler, at the moment of sending
})();
