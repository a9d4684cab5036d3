// order-console: keeps the live part of a page fresh and draws the charts. Served from the
// console's own origin; the pages have no inline script (the Content Security Policy forbids it).
// The HTML it puts in place was rendered and escaped by the server.
"use strict";
(function () {
  const body = document.body;
  const interval = Math.max(200, Number(body.dataset.refreshMs) || 2000);
  // A request not answered in time is given up (a console that stopped answering would
  // otherwise hold the page on "live" for ever): the longest the server may take to answer
  // one (its database reads' limits and a margin, rendered by the server), never less than
  // two refreshes, so a slow answer that is still coming is waited for, not asked again.
  const patience = Math.max(2 * interval, Number(body.dataset.patienceMs) || 0);
  // The page is stale once its last good refresh is older than a few refreshes.
  const staleAfter = 3 * interval + patience;
  let lastGood = Date.now();
  const status = document.getElementById("live-status");
  const live = document.getElementById("live");
  const chartsBox = document.querySelector("[data-charts]");
  const charts = new Map();
  // A script or style the Content Security Policy blocked: counted where the browser tests
  // (and a curious engineer) can see it.
  document.addEventListener("securitypolicyviolation", function () {
    const root = document.documentElement;
    root.dataset.cspViolations = String(Number(root.dataset.cspViolations || 0) + 1);
  });
  const palette = ["#1f6feb", "#1a7f37", "#b42318", "#9a6700", "#8250df", "#0e7490", "#c2410c", "#475569"];

  function setStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  function signIn() {
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
  }

  // The answer to `url`, read whole within `patience` (aborted after that).
  async function get(url, accept, read) {
    const controller = new AbortController();
    const timer = setTimeout(function () { controller.abort(); }, patience);
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { accept: accept }, cache: "no-store", signal: controller.signal });
      if (response.status === 401) { signIn(); throw new Error("signed out"); }
      if (!response.ok) throw new Error(url + " answered " + response.status);
      return await read(response);
    } finally {
      clearTimeout(timer);
    }
  }

  async function refreshLive() {
    if (!live || !live.dataset.src) return;
    const text = await get(live.dataset.src, "text/html", function (r) { return r.text(); });
    const parsed = new DOMParser().parseFromString(text, "text/html");
    // Keep every <details> as the reader left it across refreshes (keyed by data-key).
    const state = new Map();
    live.querySelectorAll("details[data-key]").forEach(function (d) { state.set(d.dataset.key, d.open); });
    live.replaceChildren.apply(live, Array.from(parsed.body.childNodes));
    live.querySelectorAll("details[data-key]").forEach(function (d) {
      if (state.has(d.dataset.key)) d.open = state.get(d.dataset.key);
    });
  }

  // A chart fills its own cell of the grid (the padding of .chart aside).
  function chartWidth(box) {
    return Math.max(200, box.clientWidth - 12);
  }

  // Outcomes keep their meaning's colour on every chart: good green, failed red, retried amber.
  const meaning = {
    ok: "#1a7f37", placed: "#1f6feb", completed: "#1a7f37", cancelled: "#b42318",
    error: "#b42318", unavailable: "#d1242f", dlq: "#b42318", "DLQ visible": "#b42318",
    retry: "#9a6700", conflict: "#bc4c00", rejected: "#8250df", invalid: "#6e7781",
    duplicate: "#0e7490", obsolete: "#0e7490", p50: "#1f6feb", p99: "#8250df", "shed/s": "#b42318",
  };
  function colour(label, i) { return meaning[label] || palette[i % palette.length]; }

  // Between hovers, the legend shows the latest values (not dashes).
  function showLatest(plot) {
    const n = plot.data[0].length;
    if (n > 0 && plot.cursor.idx == null) plot.setLegend({ idx: n - 1 });
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function stamp(t) {
    const d = new Date(t * 1000);
    return two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + ":" + two(d.getUTCSeconds());
  }

  // Tick labels of the time axis: HH:MM (UTC), with seconds when ticks are less than a minute apart.
  function clock(u, splits, axis, space, increment) {
    return splits.map(function (t) {
      const d = new Date(t * 1000);
      const hm = two(d.getUTCHours()) + ":" + two(d.getUTCMinutes());
      return increment < 60 ? hm + ":" + two(d.getUTCSeconds()) : hm;
    });
  }

  function draw(spec) {
    let entry = charts.get(spec.id);
    const key = spec.labels.join("\u0000");
    if (entry && entry.key !== key) {
      entry.plot.destroy();
      entry.box.remove();
      charts.delete(spec.id);
      entry = undefined;
    }
    if (!entry) {
      const box = document.createElement("div");
      box.className = "chart";
      box.dataset.chart = spec.id;
      const title = document.createElement("p");
      title.className = "chart-title";
      title.textContent = spec.title;
      box.appendChild(title);
      chartsBox.appendChild(box);
      const series = [{ label: "UTC", value: function (u, t) { return t == null ? "" : stamp(t); } }].concat(spec.labels.map(function (label, i) {
        return { label: label, stroke: colour(label, i), width: 2, spanGaps: false };
      }));
      const plot = new window.uPlot({
        width: chartWidth(box),
        height: 170,
        series: series,
        scales: { x: { time: true } },
        // UTC, as every time on the page.
        tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
        axes: [{ values: clock, space: 60 }, { label: spec.unit || "", size: 50 }],
        legend: { show: true },
        hooks: { setCursor: [function (u) { showLatest(u); }] },
      }, spec.data, box);
      showLatest(plot);
      entry = { plot: plot, box: box, key: key };
      charts.set(spec.id, entry);
    } else {
      entry.plot.setData(spec.data);
      showLatest(entry.plot);
    }
  }

  async function refreshCharts() {
    if (!chartsBox) return;
    if (typeof window.uPlot !== "function") {
      chartsBox.textContent = "Charts are unavailable: the chart library is not part of this build.";
      return;
    }
    const specs = await get(chartsBox.dataset.charts, "application/json", function (r) { return r.json(); });
    const seen = new Set();
    specs.forEach(function (spec) { seen.add(spec.id); draw(spec); });
    fit();
    charts.forEach(function (entry, id) {
      if (!seen.has(id)) { entry.plot.destroy(); entry.box.remove(); charts.delete(id); }
    });
    chartsBox.dataset.ready = "true";
  }

  let running = false;
  async function cycle() {
    if (running) return;
    running = true;
    try {
      await Promise.all([refreshLive(), refreshCharts()]);
      lastGood = Date.now();
      setStatus("ok", "live");
    } catch (error) {
      if (error && error.name === "AbortError") {
        setStatus("error", "no answer within " + patience / 1000 + " s; retrying");
      } else {
        setStatus("error", "connection lost; retrying");
      }
    } finally {
      running = false;
      setTimeout(cycle, interval);
    }
  }

  function fit() {
    charts.forEach(function (entry) {
      const width = chartWidth(entry.box);
      if (Math.abs(width - entry.plot.width) > 1) entry.plot.setSize({ width: width, height: 170 });
    });
  }
  window.addEventListener("resize", fit);

  // Whatever a refresh is waiting for, a page not refreshed for a while never says "live".
  function watch() {
    const age = Date.now() - lastGood;
    if (age > staleAfter && status && status.dataset.state === "ok") {
      setStatus("error", "not updated for " + Math.round(age / 1000) + " s; retrying");
    }
  }

  if (live || chartsBox) {
    cycle();
    setInterval(watch, interval);
  }
})();
