// The study's minimum window width is checked before a participant is assigned: this script writes the
// window's width (CSS px) into the form and sends it at once. Without JavaScript the form sends "nojs" when
// the participant presses Continue, and the server lets them through (it cannot measure).
(function () {
  "use strict";
  var form = document.getElementById("screen-check");
  if (!form) { return; }
  var width = Math.round(document.documentElement.clientWidth || window.innerWidth || 0);
  if (width > 0) {
    form.querySelector('input[name="lp_vw"]').value = String(width);
    form.submit();
  }
})();
