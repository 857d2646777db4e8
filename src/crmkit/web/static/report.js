// Draws the charts of reports: each <canvas data-chart> holds a whole Chart.js configuration
// as JSON (one on a report's page, several on a plugin's dashboard).
(function () {
  if (!window.Chart) return;
  // numbers on the axes in the page's language ("1 600"), not the browser's ("1,600")
  window.Chart.defaults.locale = document.documentElement.lang || undefined;
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    const config = JSON.parse(canvas.dataset.chart);
    config.options = Object.assign({ maintainAspectRatio: false }, config.options || {});
    new window.Chart(canvas, config);
  });
})();
