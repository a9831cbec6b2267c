// Streams and Demand charts as SVG. The series come from the API already downsampled on the server
// (min/max/mean per bucket), so the browser draws at most max_points buckets whatever the range.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 1200, PAD = { l: 56, r: 14, t: 12, b: 26 };

  function el(name, attrs, title) {
    const node = document.createElementNS(SVG, name);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (title) { const t = document.createElementNS(SVG, "title"); t.textContent = title; node.appendChild(t); }
    return node;
  }

  const fmtTime = (ms, span) => {
    const iso = new Date(ms).toISOString();
    return span > 3 * 86400000 ? iso.slice(5, 10) : iso.slice(11, 16);
  };

  function frame(H, x0, x1, y0, y1) {
    if (y1 <= y0) { y0 -= 1; y1 += 1; }
    const pad = (y1 - y0) * 0.06;
    y0 -= pad; y1 += pad;
    const sx = (t) => PAD.l + (t - x0) / Math.max(x1 - x0, 1) * (W - PAD.l - PAD.r);
    const sy = (v) => PAD.t + (1 - (v - y0) / (y1 - y0)) * (H - PAD.t - PAD.b);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    for (let i = 0; i <= 4; i++) {
      const v = y0 + (y1 - y0) * i / 4;
      svg.appendChild(el("line", { x1: PAD.l, x2: W - PAD.r, y1: sy(v), y2: sy(v), stroke: "#eef1f4" }));
      const label = el("text", { x: PAD.l - 6, y: sy(v) + 4, "font-size": 11, "text-anchor": "end", fill: "#5d6875" });
      label.textContent = Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
      svg.appendChild(label);
    }
    for (let i = 0; i <= 8; i++) {
      const t = x0 + (x1 - x0) * i / 8;
      const label = el("text", { x: sx(t), y: H - 8, "font-size": 11, "text-anchor": "middle", fill: "#5d6875" });
      label.textContent = fmtTime(t, x1 - x0);
      svg.appendChild(label);
    }
    return { svg, sx, sy };
  }

  function line(points, attrs) {
    return el("polyline", { points: points.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" "), fill: "none", ...attrs });
  }

  function band(upper, lower, attrs) {
    const pts = upper.concat(lower.slice().reverse());
    return el("polygon", { points: pts.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" "), ...attrs });
  }

  async function streams(data) {
    const summary = document.getElementById("stream-summary");
    if (!data.device_id) { summary.textContent = "no device"; return; }
    const q = new URLSearchParams({ metric: data.metric, from: data.from, to: data.to, max_points: data.max_points });
    let series;
    try {
      series = await Console.api("GET", `/api/v1/devices/${encodeURIComponent(data.device_id)}/readings?${q}`);
    } catch (err) { summary.textContent = `readings unavailable: ${err.message}`; return; }
    const pts = series.points;
    const readings = pts.reduce((n, p) => n + p.count, 0);
    summary.textContent = `${data.device_id} · ${data.metric}: ${readings.toLocaleString()} readings in ${pts.length} buckets of ${Math.round(series.bucket_ms / 1000)} s (min/max/mean each)`;
    summary.dataset.points = String(pts.length);
    const values = pts.flatMap((p) => [p.min, p.max]);
    data.alerts.forEach((a) => { if (a.observed != null) values.push(a.observed); if (a.expected != null) values.push(a.expected); });
    const { svg, sx, sy } = frame(340, data.from, data.to, Math.min(...values, 0), Math.max(...values, 1));
    data.alerts.forEach((a) => {
      const end = a.cleared_ts || data.to;
      svg.appendChild(el("rect", { x: sx(a.ts), y: PAD.t, width: Math.max(1, sx(Math.min(end, data.to)) - sx(a.ts)), height: 340 - PAD.t - PAD.b, fill: "#ffebe9", opacity: 0.6 }));
    });
    if (pts.length) {
      const half = series.bucket_ms / 2;
      svg.appendChild(band(pts.map((p) => [sx(p.ts + half), sy(p.max)]), pts.map((p) => [sx(p.ts + half), sy(p.min)]), { fill: "#8fb8ff", opacity: 0.45 }));
      svg.appendChild(line(pts.map((p) => [sx(p.ts + half), sy(p.mean)]), { stroke: "#1f6feb", "stroke-width": 1.3 }));
    }
    data.alerts.forEach((a) => {
      svg.appendChild(el("line", { x1: sx(a.ts), x2: sx(a.ts), y1: PAD.t, y2: 340 - PAD.b, stroke: "#cf222e", "stroke-dasharray": "3 3", "data-alert": a.id }, a.message || "alert"));
      if (a.expected != null) svg.appendChild(el("circle", { cx: sx(a.ts), cy: sy(a.expected), r: 4, fill: "#fff", stroke: "#1a7f37", "stroke-width": 2 }, `expected ${a.expected}`));
      if (a.observed != null) svg.appendChild(el("circle", { cx: sx(a.ts), cy: sy(a.observed), r: 4, fill: "#cf222e" }, `observed ${a.observed}`));
    });
    document.getElementById("stream-chart").appendChild(svg);
    const scores = data.alerts.filter((a) => a.score != null);
    const sc = frame(180, data.from, data.to, 0, 1);
    scores.forEach((a) => {
      sc.svg.appendChild(el("line", { x1: sc.sx(a.ts), x2: sc.sx(a.ts), y1: sc.sy(0), y2: sc.sy(a.score), stroke: "#cf222e", "stroke-width": 2 }, `score ${a.score}`));
      if (a.threshold != null) sc.svg.appendChild(el("line", { x1: sc.sx(a.ts) - 6, x2: sc.sx(a.ts) + 6, y1: sc.sy(a.threshold), y2: sc.sy(a.threshold), stroke: "#5d6875" }, `threshold ${a.threshold}`));
    });
    document.getElementById("score-chart").appendChild(sc.svg);
  }

  async function demand(data) {
    const summary = document.getElementById("demand-summary");
    if (!data.site || !data.sku || !data.bands.length) { summary.textContent = "no forecasts for this choice"; return; }
    const day = (d) => Date.parse(`${d}T00:00:00Z`);
    const first = day(data.bands[0].day), last = day(data.bands[data.bands.length - 1].day) + 86400000;
    const from = first - 28 * 86400000;
    let actual = { days: [] };
    try {
      actual = await Console.api("GET", `/api/v1/sites/${encodeURIComponent(data.site)}/demand?${new URLSearchParams({ sku: data.sku, from, to: last })}`);
    } catch (err) { summary.textContent = `picks unavailable: ${err.message}`; }
    const picks = actual.days.filter((d) => d.day_start_ts <= Date.now());
    const values = data.bands.flatMap((b) => [b.p50, b.p90]).concat(picks.map((d) => d.units));
    const { svg, sx, sy } = frame(360, from, last, 0, Math.max(...values, 1));
    const mid = (b) => day(b.day) + 43200000;
    svg.appendChild(band(data.bands.map((b) => [sx(mid(b)), sy(b.p90)]), data.bands.map((b) => [sx(mid(b)), sy(b.p50)]), { fill: "#ffd8a8", opacity: 0.7 }));
    svg.appendChild(line(data.bands.map((b) => [sx(mid(b)), sy(b.p50)]), { stroke: "#bf8700", "stroke-width": 1.5 }));
    svg.appendChild(line(data.bands.map((b) => [sx(mid(b)), sy(b.p90)]), { stroke: "#fb8500", "stroke-width": 1, "stroke-dasharray": "4 3" }));
    picks.forEach((d) => svg.appendChild(el("circle", { cx: sx(d.day_start_ts + 43200000), cy: sy(d.units), r: 3, fill: "#1f6feb", "data-pick": d.date }, `${d.date}: ${d.units} picked`)));
    const covered = picks.filter((d) => data.bands.some((b) => b.day === d.date));
    const within = covered.filter((d) => { const b = data.bands.find((x) => x.day === d.date); return d.units <= b.p90; });
    summary.textContent = `${data.site} · ${data.sku}: ${data.bands.length} forecast days, ${picks.length} days of picks; `
      + `${within.length} of ${covered.length} forecast days with picks at or under P90`;
    document.getElementById("demand-chart").appendChild(svg);
  }

  function wireRange() {
    const form = document.querySelector("form[data-form=range]");
    if (!form) return;
    const toMs = (v) => (v ? Date.parse(`${v}:00Z`) : NaN);
    form.querySelectorAll("[data-range]").forEach((button) => button.addEventListener("click", () => {
      const to = parseInt(form.elements.to.value, 10);
      form.elements.from.value = String(to - parseInt(button.dataset.range, 10));
      form.submit();
    }));
    form.addEventListener("submit", () => {
      const from = toMs(form.querySelector("[data-local=from]").value), to = toMs(form.querySelector("[data-local=to]").value);
      if (!Number.isNaN(from)) form.elements.from.value = String(from);
      if (!Number.isNaN(to)) form.elements.to.value = String(to);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireRange();
    const data = Console.pageData();
    if (!data) return;
    if (document.getElementById("stream-chart")) streams(data);
    if (document.getElementById("demand-chart")) demand(data);
  });
})();
