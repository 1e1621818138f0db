// Draws the page's plotly figures from the JSON beside each one (sites that set
// trust_html_output = true). Loaded with `defer`, after plotly.js.
(function () {
  "use strict";
  if (typeof Plotly === "undefined") return;
  document.querySelectorAll("script.plotly-data").forEach(function (data) {
    var target = data.previousElementSibling;
    if (!target || !target.classList.contains("plotly-figure")) return;
    var spec = JSON.parse(data.textContent);
    var config = Object.assign({ responsive: true }, spec.config || {});
    Plotly.newPlot(target, spec.data || [], spec.layout || {}, config);
  });
})();
