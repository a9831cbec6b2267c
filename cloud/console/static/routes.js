// Routes: start jobs, follow a job's progress, draw its plan (map on a canvas from the coordinates alone,
// optional tiles when the deployment configured a tile URL; timeline per vehicle as SVG). No libraries.
"use strict";

(() => {
  const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#0598bc", "#cf4a9a", "#57606a",
    "#fb8500", "#2a9d8f", "#6a4c93", "#e76f51"];
  const SVG = "http://www.w3.org/2000/svg";

  async function readProblem(form) {
    const file = form.querySelector("input[type=file]").files[0];
    const text = file ? await file.text() : form.querySelector("textarea").value;
    if (!text.trim()) throw new Error("choose a file or paste the JSON");
    try { return JSON.parse(text); } catch (err) { throw new Error(`not valid JSON: ${err.message}`); }
  }

  function wireForms() {
    const targets = { "route-job": "/api/v1/route-jobs", "replenishment-job": "/api/v1/replenishment-jobs" };
    Object.entries(targets).forEach(([name, path]) => {
      const form = document.querySelector(`form[data-form=${name}]`);
      if (!form) return;
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const params = new URLSearchParams({ time_limit_s: data.get("time_limit_s") || "30" });
        if (data.get("engine")) params.set("engine", data.get("engine"));
        try {
          const job = await Console.api("POST", `${path}?${params}`, await readProblem(form));
          location.href = `/console/routes/${encodeURIComponent(job.id)}`;
        } catch (err) {
          Console.toast(err.message, true);
        }
      });
    });
  }

  function follow() {
    const el = document.querySelector("[data-job]");
    if (!el || !["queued", "running"].includes(el.dataset.status)) return;
    const tick = async () => {
      try {
        const job = await Console.api("GET", `/api/v1/route-jobs/${encodeURIComponent(el.dataset.job)}`);
        document.getElementById("job-status").textContent = job.status;
        document.getElementById("job-progress").value = job.progress;
        document.getElementById("job-progress-text").textContent = `${Math.round(job.progress * 100)}%`;
        document.getElementById("job-cost").textContent = job.best_cost === null ? "-" : job.best_cost.toFixed(1);
        if (job.status !== el.dataset.status && !["queued", "running"].includes(job.status)) {
          location.reload();
          return;
        }
        el.dataset.status = job.status;
      } catch (err) {
        Console.toast(err.message, true);
      }
      setTimeout(tick, 1000);
    };
    setTimeout(tick, 1000);
  }

  // --- map ---------------------------------------------------------------------------------------

  function projector(data) {
    if (!data.geo) return (p) => [p[0], -p[1]];
    return (p) => {
      const lat = Math.max(-85, Math.min(85, p[1])) * Math.PI / 180;
      return [(p[0] + 180) / 360, (1 - Math.log(Math.tan(lat) + 1 / Math.cos(lat)) / Math.PI) / 2];
    };
  }

  function drawMap(data) {
    const canvas = document.getElementById("route-map");
    if (!canvas) return;
    const ctx = canvas.getContext("2d");
    const project = projector(data);
    const points = [];
    data.depots.forEach((d) => d.p && points.push(project(d.p)));
    data.routes.forEach((r) => r.stops.forEach((s) => s.p && points.push(project(s.p))));
    data.unserved.forEach((u) => u.p && points.push(project(u.p)));
    if (!points.length) return;
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const span = Math.max(x1 - x0, y1 - y0, 1e-9);
    x0 -= span * 0.04; x1 += span * 0.04; y0 -= span * 0.04; y1 += span * 0.04;
    const W = canvas.width, H = canvas.height;
    const scale = Math.min((W - 20) / (x1 - x0), (H - 20) / (y1 - y0));
    const ox = (W - (x1 - x0) * scale) / 2, oy = (H - (y1 - y0) * scale) / 2;
    const at = (p) => { const q = project(p); return [ox + (q[0] - x0) * scale, oy + (q[1] - y0) * scale]; };
    const depotOf = Object.fromEntries(data.depots.map((d) => [d.id, d.p]));

    function overlay() {
      data.routes.forEach((r, i) => {
        const color = COLORS[i % COLORS.length];
        const veh = data.vehicles[r.vehicle] || {};
        const path = [];
        if (depotOf[veh.depot]) path.push(depotOf[veh.depot]);
        r.stops.forEach((s) => s.p && path.push(s.p));
        if (veh.end && depotOf[veh.end]) path.push(depotOf[veh.end]);
        ctx.strokeStyle = color; ctx.lineWidth = 1.6; ctx.beginPath();
        path.forEach((p, j) => { const [x, y] = at(p); if (j) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
        ctx.stroke();
        r.stops.forEach((s) => {
          if (!s.p) return;
          const [x, y] = at(s.p);
          ctx.fillStyle = s.late ? "#cf222e" : color;
          ctx.beginPath(); ctx.arc(x, y, s.late ? 4 : 2.6, 0, 2 * Math.PI); ctx.fill();
        });
      });
      ctx.strokeStyle = "#cf222e"; ctx.lineWidth = 2;
      data.unserved.forEach((u) => {
        if (!u.p) return;
        const [x, y] = at(u.p);
        ctx.beginPath(); ctx.moveTo(x - 4, y - 4); ctx.lineTo(x + 4, y + 4); ctx.moveTo(x + 4, y - 4); ctx.lineTo(x - 4, y + 4); ctx.stroke();
      });
      data.depots.forEach((d) => {
        if (!d.p) return;
        const [x, y] = at(d.p);
        ctx.fillStyle = "#0d1117"; ctx.fillRect(x - 6, y - 6, 12, 12);
        ctx.fillStyle = "#0d1117"; ctx.font = "12px system-ui"; ctx.fillText(d.id, x + 8, y - 8);
      });
      ctx.font = "12px system-ui";
      data.routes.slice(0, 24).forEach((r, i) => {
        ctx.fillStyle = COLORS[i % COLORS.length]; ctx.fillRect(10, 10 + i * 16, 10, 10);
        ctx.fillStyle = "#1d232b"; ctx.fillText(`${r.vehicle} (${r.stops.filter((s) => s.k === "order").length})`, 26, 19 + i * 16);
      });
      if (data.unserved.length) {
        ctx.fillStyle = "#cf222e"; ctx.fillText(`✕ ${data.unserved.length} unserved`, 10, H - 10);
      }
      canvas.dataset.drawn = "1";
    }

    ctx.fillStyle = "#fbfcfd"; ctx.fillRect(0, 0, W, H);
    ctx.strokeStyle = "#edf0f3"; ctx.lineWidth = 1;
    for (let g = 0; g <= 10; g++) {
      ctx.beginPath(); ctx.moveTo(g * W / 10, 0); ctx.lineTo(g * W / 10, H); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(0, g * H / 10); ctx.lineTo(W, g * H / 10); ctx.stroke();
    }
    if (data.tile_url && data.geo) {
      drawTiles(ctx, data.tile_url, { x0, y0, scale, ox, oy, W, H }).then(overlay);
    } else {
      overlay();
    }
  }

  function drawTiles(ctx, url, v) {
    // Web-mercator tiles under the routes, at the zoom whose 256 px tiles match the map's scale.
    const z = Math.max(0, Math.min(19, Math.round(Math.log2(v.scale / 256))));
    const n = 2 ** z, size = v.scale / n;
    const tx0 = Math.floor((v.x0 - v.ox / v.scale) * n), ty0 = Math.floor((v.y0 - v.oy / v.scale) * n);
    const loads = [];
    for (let tx = tx0; tx <= tx0 + Math.ceil(v.W / size) + 1; tx++) {
      for (let ty = ty0; ty <= ty0 + Math.ceil(v.H / size) + 1; ty++) {
        if (ty < 0 || ty >= n) continue;
        const img = new Image();
        img.crossOrigin = "anonymous";
        const x = v.ox + (tx / n - v.x0) * v.scale, y = v.oy + (ty / n - v.y0) * v.scale;
        loads.push(new Promise((done) => {
          img.onload = () => { ctx.drawImage(img, x, y, size, size); done(); };
          img.onerror = done;
        }));
        img.src = url.replace("{z}", z).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
      }
    }
    return Promise.all(loads);
  }

  // --- timeline ------------------------------------------------------------------------------------

  function el(name, attrs, title) {
    const node = document.createElementNS(SVG, name);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (title) { const t = document.createElementNS(SVG, "title"); t.textContent = title; node.appendChild(t); }
    return node;
  }

  const hhmm = (s) => `${String(Math.floor(s / 3600)).padStart(2, "0")}:${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}`;

  function drawTimeline(data) {
    const box = document.getElementById("timeline");
    if (!box || !data.routes.length) return;
    let t0 = Infinity, t1 = -Infinity;
    data.routes.forEach((r) => r.stops.forEach((s) => { t0 = Math.min(t0, s.a); t1 = Math.max(t1, s.d); }));
    const left = 110, width = 1200, row = 22, top = 24;
    const x = (t) => left + (t - t0) / Math.max(t1 - t0, 1) * (width - left - 10);
    const svg = el("svg", { viewBox: `0 0 ${width} ${top + row * data.routes.length + 10}`, role: "img", "aria-label": "timeline" });
    const step = [900, 1800, 3600, 7200, 14400].find((s) => (t1 - t0) / s <= 14) || 28800;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      svg.appendChild(el("line", { x1: x(t), x2: x(t), y1: top - 4, y2: top + row * data.routes.length, stroke: "#e3e7eb" }));
      const label = el("text", { x: x(t) + 2, y: 14, "font-size": 11, fill: "#5d6875" });
      label.textContent = hhmm(t); svg.appendChild(label);
    }
    data.routes.forEach((r, i) => {
      const y = top + i * row;
      const name = el("text", { x: 4, y: y + 14, "font-size": 12, fill: "#1d232b" });
      name.textContent = r.vehicle; svg.appendChild(name);
      r.stops.forEach((s, j) => {
        s.tw.forEach((w) => svg.appendChild(el("rect", { x: x(w[0]), y: y + 17, width: Math.max(1, x(w[1]) - x(w[0])), height: 2, fill: "#2da44e", opacity: 0.55 },
          `${s.id} window ${hhmm(w[0])}–${hhmm(w[1])}`)));
        if (j > 0) {
          const prev = r.stops[j - 1];
          svg.appendChild(el("rect", { x: x(prev.d), y: y + 4, width: Math.max(0.5, x(s.a) - x(prev.d)), height: 11, fill: "#8fb8ff" }, `travel ${hhmm(prev.d)}–${hhmm(s.a)}`));
        }
        if (s.w > 0) svg.appendChild(el("rect", { x: x(s.a), y: y + 4, width: Math.max(0.5, x(s.s) - x(s.a)), height: 11, fill: "#e3e7eb" }, `wait ${Math.round(s.w / 60)} min`));
        if (s.d > s.s) {
          svg.appendChild(el("rect", { x: x(s.s), y: y + 2, width: Math.max(0.8, x(s.d) - x(s.s)), height: 15, fill: s.k === "break" ? "#bf8700" : "#1f6feb" },
            `${s.k === "break" ? "break" : s.id} ${hhmm(s.s)}–${hhmm(s.d)}`));
        }
        if (s.late) svg.appendChild(el("circle", { cx: x(s.s), cy: y + 9, r: 4, fill: "#cf222e", "data-late": "1" }, `${s.id} late: served ${hhmm(s.s)}`));
      });
    });
    box.appendChild(svg);
  }

  function mapPng() {
    const canvas = document.getElementById("route-map");
    if (!canvas) return;
    canvas.toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "route-map.png";
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 5000);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireForms();
    follow();
    const data = Console.pageData();
    if (data && data.view) {
      // every stop's geometry arrives after the first paint
      Console.api("GET", data.view).then((view) => { drawMap(view); drawTimeline(view); })
        .catch((err) => Console.toast(`plan unavailable: ${err.message}`, true));
    }
    document.addEventListener("click", (event) => {
      if (event.target.closest("[data-action=map-png]")) mapPng();
    });
  });
})();
