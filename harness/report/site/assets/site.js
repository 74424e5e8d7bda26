/* hilbench results site: the index filter and the series trend chart (uPlot). Data comes from the
   page's data files (window.HIL_RUNS, window.HIL_SERIES); it is only ever put in as text. */
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page");

  function indexFilter() {
    var input = document.getElementById("filter");
    var select = document.getElementById("verdict");
    var shown = document.getElementById("shown");
    var rows = document.querySelectorAll("#series tbody tr");
    function apply() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var verdict = select.value;
      var n = 0;
      rows.forEach(function (tr) {
        var text = tr.getAttribute("data-text");
        var ok = (!verdict || tr.getAttribute("data-verdict") === verdict) &&
          words.every(function (w) { return text.indexOf(w) >= 0; });
        tr.hidden = !ok;
        if (ok) n++;
      });
      shown.textContent = String(n);
    }
    input.addEventListener("input", apply);
    select.addEventListener("change", apply);
    apply();
  }

  function fmtDate(t) { return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC"; }

  function trend() {
    var runs = window.HIL_RUNS, s = window.HIL_SERIES, el = document.getElementById("trend");
    var n = s.run.length, x = [], level = [], procs = [], stepLine = [], pins = [], regress = [];
    var maxP = 0;
    s.procs.forEach(function (p) { maxP = Math.max(maxP, p.length); });
    for (var k = 0; k < maxP; k++) procs.push([]);
    var pinned = {};
    s.pins.forEach(function (p) { pinned[p.run_id] = true; });
    var failed = {};
    s.verdicts.forEach(function (v) { if (v[1] === "regression") failed[v[0]] = true; });
    for (var i = 0; i < n; i++) {
      var r = s.run[i];
      x.push(runs.t[r]);
      level.push(s.level[i]);
      for (k = 0; k < maxP; k++) procs[k].push(k < s.procs[i].length ? s.procs[i][k] : null);
      stepLine.push(null);
      pins.push(pinned[runs.id[r]] ? s.level[i] : null);
      regress.push(failed[r] ? s.level[i] : null);
    }
    s.analysis.steps.forEach(function (st) {
      for (var j = st.start; j <= st.end; j++) stepLine[j] = st.level;
    });
    var data = [x, level, stepLine, pins, regress];
    var series = [
      {},
      { label: "run level", stroke: "#1e88e5", width: 1.5, points: { show: true, size: 5 } },
      { label: "step level", stroke: "#8e24aa", width: 2, dash: [6, 4], points: { show: false } },
      { label: "accepted baseline", stroke: "#2e7d32", width: 0, points: { show: true, size: 11, fill: "#2e7d32" } },
      { label: "regression", stroke: "#c62828", width: 0, points: { show: true, size: 9, fill: "#c62828" } },
    ];
    s.budgets.forEach(function (b) {
      data.push(x.map(function () { return b.limit; }));
      series.push({ label: b.name, stroke: "#e53935", width: 1, dash: [2, 3], points: { show: false } });
    });
    procs.forEach(function (p, k) {
      data.push(p);
      series.push({ label: maxP > 1 ? "process " + (k + 1) : "process", stroke: "rgba(120,120,120,0.7)", width: 0,
        points: { show: true, size: 3, fill: "rgba(120,120,120,0.7)" } });
    });
    var hover = document.getElementById("hover");
    function describe(i) {
      var r = s.run[i];
      return [
        "run " + runs.id[r] + (runs.label[r] ? "  (" + runs.label[r] + ")" : ""),
        "date " + fmtDate(runs.t[r]),
        "level " + (s.level[i] === null ? "-" : s.level[i].toFixed(1)) + " " + s.unit +
          "  processes " + s.procs[i].map(function (v) { return v.toFixed(1); }).join(", "),
        "models commit " + (s.commits[s.commit[i]] || "-"),
        "artifact " + (s.artifacts[s.art[i]] || "-"),
        "runtime " + (s.runtimes[s.rt[i]] || "-"),
      ].join("\n");
    }
    var opts = {
      width: Math.max(600, Math.min(1400, (el.clientWidth || 1000))),
      height: 360,
      // one run alone: a day either side of it (uPlot would otherwise spread one instant over years)
      scales: { x: n === 1 ? { time: true, auto: false, range: [x[0] - 86400, x[0] + 86400] } : { time: true } },
      cursor: { drag: { x: true, y: false }, points: { size: 8 } },
      legend: { live: false },
      series: series,
      axes: [{}, { label: s.metric + " (" + s.unit + ")", size: 70 }],
      hooks: {
        setCursor: [function (u) {
          var i = u.cursor.idx;
          if (i !== null && i !== undefined) {
            hover.textContent = describe(i);
            hover.setAttribute("data-run", runs.id[s.run[i]]);
          }
        }],
      },
    };
    var plot = new uPlot(opts, data, el);
    el.setAttribute("data-points", String(level.filter(function (v) { return v !== null; }).length));
    window.HIL_PLOT = plot;
  }

  if (page === "index") indexFilter();
  if (page === "series") trend();
})();
