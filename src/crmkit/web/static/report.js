// Draws every <canvas data-chart='{"type", "labels", "datasets"}'> with Chart.js.
(function () {
  "use strict";
  const palette = ["#3f7cac", "#d49a2a", "#3c9d5d", "#b04848", "#8aa1b1", "#7a5ea8", "#c7663a", "#4aa3a1"];
  function draw(canvas) {
    const spec = JSON.parse(canvas.dataset.chart);
    const round = spec.type === "pie" || spec.type === "doughnut";
    const datasets = spec.datasets.map(function (d, i) {
      const colour = d.color || palette[i % palette.length];
      return {
        label: d.label,
        data: d.data,
        backgroundColor: round ? spec.labels.map(function (_, j) { return palette[j % palette.length]; }) : colour,
        borderColor: colour,
        fill: false,
      };
    });
    canvas.chart = new window.Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: { responsive: true, maintainAspectRatio: false, animation: false },
    });
  }
  function drawAll(root) {
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (!canvas.chart) { draw(canvas); }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (event) { drawAll(event.target); });
})();
