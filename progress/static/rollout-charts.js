// The admin page's pictures: the two paths side by side over the current stage or the last
// day (uPlot, served from /static/vendor/uplot), each rollout change and guard decision as a
// marker on every chart, and the stage timeline. Data: GET /api/v1/admin/rollout/charts.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = window.AdminApi.TOKEN_KEY;
  const COLOURS = { legacy: "#a15c00", verified: "#1d6f42" };
  const MARK_COLOURS = { rollout: "#6b3fa0", guard: "#c2410c" };
  const count = (v) => (Math.abs(v) >= 10 ? v.toFixed(0) : String(Number(v.toFixed(1))));
  const FIGURES = [
    ["falseLockScreens", "False lock screens shown", count, "learners shown a lock that the primary contradicts, per interval"],
    ["completionSuccessRate", "Completion success rate", (v) => String(Number((100 * v).toFixed(1))) + "%", "share of completions answered with success"],
    ["cacheUpdateP95Seconds", "Cache update p95", (v) => (v >= 1 ? v.toFixed(1) + " s" : (1000 * v).toFixed(0) + " ms"), "95th percentile from DB commit to cache updated"],
    ["accessChecksPerMinute", "Access checks per minute", count, "access checks answered, per minute"],
  ];
  const POINTS = { show: true, size: 5 }; // a stage's first minutes may have one point
  let range = "stage";
  let plots = [];

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "the start";
  }

  function item(list, text, className) {
    const li = document.createElement("li");
    li.textContent = text;
    if (className) li.className = className;
    list.appendChild(li);
    return li;
  }

  function fillTimeline(stages) {
    const list = $("timeline");
    list.replaceChildren();
    stages.forEach((s, i) => {
      const li = item(list, s.percentage + "%");
      const detail = document.createElement("span");
      detail.className = "muted";
      detail.textContent = s.by ? " " + when(s.since) + ", by " + s.by : " from the start";
      li.appendChild(detail);
      if (s.reason) li.title = s.reason;
      if (i === stages.length - 1) li.setAttribute("aria-current", "step");
    });
  }

  function fillMarks(markers) {
    const list = $("marks");
    list.replaceChildren();
    if (!markers.length) {
      item(list, "None in this range.", "placeholder");
      return;
    }
    markers.forEach((m) => {
      const li = item(list, when(m.at) + " — " + m.label + " (" + m.by + ")", "mark-" + m.kind);
      li.title = m.detail;
    });
  }

  // Draws each marker as a vertical line across the plot area.
  function markerPlugin(markers) {
    return {
      hooks: {
        draw: [
          (u) => {
            const ctx = u.ctx;
            const { top, height } = u.bbox;
            markers.forEach((m) => {
              const t = Date.parse(m.at) / 1000;
              if (t < u.scales.x.min || t > u.scales.x.max) return;
              const x = Math.round(u.valToPos(t, "x", true));
              ctx.save();
              ctx.strokeStyle = MARK_COLOURS[m.kind];
              ctx.lineWidth = 2 * devicePixelRatio;
              ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + height);
              ctx.stroke();
              ctx.restore();
            });
          },
        ],
      },
    };
  }

  function drawCharts(data) {
    plots.forEach((p) => p.destroy());
    plots = [];
    const root = $("charts");
    root.replaceChildren();
    const from = Date.parse(data.from) / 1000;
    const to = Date.parse(data.to) / 1000;
    // Every figure first, then the plots: each is sized to its place in the finished grid.
    const places = FIGURES.map(([key, title, format, meaning]) => {
      const figure = document.createElement("figure");
      figure.className = "chart";
      figure.dataset.figure = key;
      const caption = document.createElement("figcaption");
      caption.textContent = title;
      const help = document.createElement("span");
      help.className = "muted";
      help.textContent = " — " + meaning;
      caption.appendChild(help);
      figure.appendChild(caption);
      root.appendChild(figure);
      return { key, format, figure };
    });
    places.forEach(({ key, format, figure }) => {
      const values = data.figures[key];
      const any = ["legacy", "verified"].some((p) => values[p].some((v) => v !== null));
      if (!data.times.length || !any) {
        const empty = document.createElement("p");
        empty.className = "placeholder";
        empty.textContent = "No data in this range yet.";
        figure.appendChild(empty);
        return;
      }
      const area = document.createElement("div");
      figure.appendChild(area);
      const show = (u, v) => (v == null ? "–" : format(v));
      const options = {
        width: chartWidth(figure),
        height: 170,
        scales: { x: { time: true, range: () => [from, to] }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
        axes: [{}, { values: (u, ticks) => ticks.map(format), size: 64 }],
        series: [
          {},
          { label: "legacy", stroke: COLOURS.legacy, width: 2, spanGaps: true, value: show, points: POINTS },
          { label: "verified", stroke: COLOURS.verified, width: 2, spanGaps: true, value: show, points: POINTS },
        ],
        plugins: [markerPlugin(data.markers)],
      };
      plots.push(new window.uPlot(options, [data.times, values.legacy, values.verified], area));
    });
    drawBounds(data, from, to);
  }

  // The guard's sequential tests: verified's share minus legacy's, in points (a share of
  // 0.001 is 0.1 point), the confidence bound on it at each evaluation, and the margin; the
  // check passes once the upper bound is below the margin, and fails once the lower bound is
  // above it. The scale keeps zero and the margin apart on screen: a bound many margins
  // wide early in a stage runs off the chart rather than flattening the margin onto zero.
  const BOUND_UNITS = { errors: "points of success rate", "updates over the budget": "points of updates over the budget" };
  const pts = (v) => String(Number(v.toPrecision(2))) + " pt";

  function level(u, value, colour, label) {
    const ctx = u.ctx;
    const { left, width } = u.bbox;
    const y = Math.round(u.valToPos(value, "y", true));
    ctx.save();
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = devicePixelRatio;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + width, y);
    ctx.stroke();
    ctx.font = 12 * devicePixelRatio + "px system-ui, sans-serif";
    ctx.textAlign = "left"; // uPlot leaves the axes' alignment set
    ctx.textBaseline = "bottom";
    ctx.fillText(label, left + 4 * devicePixelRatio, y - 3 * devicePixelRatio);
    ctx.restore();
  }

  function boundRange(b) {
    const margin = 100 * Math.max(...b.margin.filter((v) => v != null), 0) || 0.1;
    // Beyond three margins up or two down the bound is still far from deciding: off the chart.
    const seen = [...b.lower, ...b.upper, ...b.statistic].filter((v) => v != null).map((v) => 100 * v);
    const top = Math.min(3 * margin, Math.max(1.6 * margin, ...seen));
    const bottom = Math.max(-2 * margin, Math.min(-0.6 * margin, ...seen));
    return [bottom, top];
  }

  function drawBounds(data, from, to) {
    const root = $("charts");
    const scaled = (values) => values.map((v) => (v == null ? null : 100 * v));
    data.bounds.forEach((b) => {
      const units = BOUND_UNITS[b.counting] || "points";
      const figure = document.createElement("figure");
      figure.className = "chart";
      figure.dataset.bound = b.check;
      const caption = document.createElement("figcaption");
      caption.textContent = "Guard's bound: " + b.check.replace(/_/g, " ") + ", in " + units;
      const help = document.createElement("span");
      help.className = "muted";
      help.textContent =
        " — verified's share of " + (b.counting || "outcomes") + " minus legacy's, with its confidence bound;" +
        " it passes once the upper bound is under the red margin line";
      caption.appendChild(help);
      figure.appendChild(caption);
      const area = document.createElement("div");
      figure.appendChild(area);
      root.appendChild(figure);
      const show = (u, v) => (v == null ? "–" : pts(v));
      const range = boundRange(b);
      const options = {
        width: chartWidth(figure),
        height: 170,
        scales: { x: { time: true, range: () => [from, to] }, y: { range: () => range } },
        axes: [{}, { values: (u, ticks) => ticks.map(pts), size: 64 }], // the caption names the unit
        series: [
          {},
          { label: "difference", stroke: "#1d2330", width: 2, points: POINTS, value: show },
          { label: "lower", stroke: "#2b6cff", dash: [4, 4], points: POINTS, value: show },
          { label: "upper", stroke: "#2b6cff", dash: [4, 4], points: POINTS, value: show },
          { label: "margin", stroke: "#b42318", width: 2, value: show },
        ],
        plugins: [markerPlugin(data.markers)],
      };
      const series = [b.times, scaled(b.statistic), scaled(b.lower), scaled(b.upper), scaled(b.margin)];
      // How far above "no difference" the margin line is drawn, in CSS pixels (tests read it).
      const margin = 100 * (b.margin.find((v) => v != null) || 0);
      options.hooks = {
        draw: [
          (u) => {
            // "No difference" and the margin across the whole chart, named where they run.
            level(u, 0, "#5a6275", "no difference");
            if (margin > 0) level(u, margin, "#b42318", "margin " + pts(margin));
            figure.dataset.marginAboveZeroPx = String(Math.round(u.valToPos(0, "y") - u.valToPos(margin, "y")));
          },
        ],
      };
      plots.push(new window.uPlot(options, series, area));
    });
  }

  function chartWidth(figure) {
    return Math.max(200, figure.clientWidth - 16);
  }

  function describeSource(data) {
    const from = data.source === "prometheus" ? "Prometheus" : "the rollout guard's evaluations";
    return "From " + from + ", " + when(data.from) + " to now." + (data.note ? " " + data.note + "." : "");
  }

  async function refresh() {
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    try {
      const data = await window.AdminApi.call("GET", "/rollout/charts?range=" + range);
      $("charts-source").textContent = describeSource(data);
      fillTimeline(data.stages);
      fillMarks(data.markers);
      drawCharts(data);
      document.body.dataset.chartsReady = range;
    } catch (error) {
      if (error.status !== 401 && error.status !== 403) {
        $("charts-source").textContent = "Could not load the charts: " + error.message;
      }
    }
  }

  document.querySelectorAll("[data-range]").forEach((button) => {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      document.querySelectorAll("[data-range]").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      refresh();
    });
  });

  // A narrower window (a phone turned, a resized tab) redraws the charts to fit.
  let width = window.innerWidth;
  window.addEventListener("resize", () => {
    if (Math.abs(window.innerWidth - width) < 20) return;
    width = window.innerWidth;
    plots.forEach((p) => p.setSize({ width: chartWidth(p.root.closest("figure")), height: 170 }));
  });

  // admin-rollout.js announces each refresh (and so each change it made).
  document.addEventListener("rollout:changed", refresh);
})();
