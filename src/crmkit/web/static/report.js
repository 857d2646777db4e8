// Draws a report's chart: the server gives the whole Chart.js configuration as JSON.
(function () {
  const canvas = document.getElementById("report-chart");
  if (!canvas || !window.Chart) return;
  const config = JSON.parse(canvas.dataset.chart);
  config.options = Object.assign({ maintainAspectRatio: false }, config.options || {});
  new window.Chart(canvas, config);
})();
