/**
 * The static parts of `/dashboard`: the login form, the page, its stylesheet and its script. Nothing here holds data
 * or a secret; the figures arrive over `/dashboard/stream`. The page loads only from this origin (no CDN; the CSP
 * allows nothing else), and the charts are drawn on canvases by the script itself.
 */

/** No inline script or style, nothing from another origin, no framing, forms post only here. */
export const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'"
].join("; ")

const head = (title: string) =>
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title}</title>
<link rel="stylesheet" href="/dashboard/app.css">
</head>`

/** The login form; `refused` shows that the last token sent was wrong. */
export const login = (refused: boolean) =>
  `${head("WedSync Realtime: log in")}
<body>
<main class="login">
<h1>WedSync Realtime dashboard</h1>
<form id="login" method="post" action="/dashboard/session" autocomplete="off">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" required autofocus>
<button type="submit">Log in</button>
${refused ? `<p id="refused" class="alert">That is not the admin token.</p>` : ""}
</form>
</main>
</body>
</html>
`

const figure = (id: string, label: string) =>
  `<div class="figure"><span class="label">${label}</span><span class="value" id="${id}">–</span></div>`

const chart = (id: string, label: string) =>
  `<figure class="chart"><figcaption>${label}</figcaption><canvas id="${id}" width="560" height="160"></canvas></figure>`

export const page = `${head("WedSync Realtime dashboard")}
<body>
<header>
<h1>WedSync Realtime</h1>
<span id="process">–</span>
<span id="status" class="status">connecting…</span>
</header>
<section id="alerts" class="alerts"></section>
<section class="figures">
${figure("connections", "Connections (this process)")}
${figure("channels", "Joined channels")}
${figure("topics", "Topics")}
${figure("deliveries-per-second", "Deliveries/s")}
${figure("deliveries-total", "Deliveries (total)")}
${figure("publications-per-second", "Publications/s")}
${figure("delivery-p50", "Delivery p50 (ms)")}
${figure("delivery-p99", "Delivery p99 (ms)")}
${figure("fanout-p50", "Fan-out p50 (ms)")}
${figure("fanout-p99", "Fan-out p99 (ms)")}
${figure("event-loop", "Event-loop delay p50 / p99 / max (ms)")}
${figure("shed", "Admissions shed (total, /s)")}
</section>
<section class="charts">
${chart("chart-connections", "Connections")}
${chart("chart-deliveries", "Deliveries/s")}
${chart("chart-delivery-latency", "Delivery latency p50 / p99 (ms)")}
${chart("chart-fanout-latency", "Fan-out latency p50 / p99 (ms)")}
${chart("chart-day", "Connections today: predicted (calendar, from /admin/scaling) / measured (this process)")}
</section>
<section class="panels">
<div class="panel"><h2>Redis and broker</h2><dl id="backend"></dl></div>
<div class="panel"><h2>Devices</h2><dl id="devices"></dl></div>
<div class="panel"><h2>Cache hit ratio</h2><dl id="cache"></dl></div>
<div class="panel"><h2>Scaling</h2><p id="scaling-reason"></p><div id="scaling">–</div></div>
</section>
<script src="/dashboard/app.js"></script>
</body>
</html>
`

export const stylesheet = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #10141a; color: #dde3ea; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: 0.8em 1.2em; background: #1a2029; }
h1 { font-size: 1.2em; margin: 0; }
h2 { font-size: 1em; margin: 0 0 0.5em; }
.status { margin-left: auto; }
.status.live { color: #6fdc8c; }
.status.down { color: #ff8389; }
.alerts { padding: 0 1.2em; }
.alert { background: #5c1a1f; color: #ffd7d9; padding: 0.5em 0.8em; margin: 0.5em 0; border-radius: 4px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(12em, 1fr)); gap: 0.6em; padding: 1em 1.2em; }
.figure, .panel, .chart { background: #1a2029; border-radius: 6px; padding: 0.6em 0.8em; margin: 0; }
.label { display: block; color: #8d99a8; font-size: 0.85em; }
.value { font-size: 1.5em; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 0.6em; padding: 0 1.2em; }
.chart canvas { width: 100%; height: 160px; }
figcaption { color: #8d99a8; font-size: 0.85em; }
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(16em, 1fr)); gap: 0.6em; padding: 1em 1.2em; }
dl { display: grid; grid-template-columns: auto auto; gap: 0.2em 1em; margin: 0; }
dt { color: #8d99a8; }
dd { margin: 0; font-variant-numeric: tabular-nums; }
pre { white-space: pre-wrap; margin: 0; }
.login { max-width: 22em; margin: 15vh auto; background: #1a2029; padding: 1.5em; border-radius: 6px; }
.login form { display: grid; gap: 0.6em; }
input, button { font: inherit; padding: 0.4em; }
`

/** The page's script: reads the stream, writes the figures with textContent (never HTML), draws the charts. */
export const script = `"use strict";
(() => {
  const byId = (id) => document.getElementById(id);
  const show = (id, text) => { byId(id).textContent = text; };
  const ms = (v) => v === null || v === undefined ? "–" : String(v);
  const list = (id, rows) => {
    const dl = byId(id);
    dl.replaceChildren();
    for (const [term, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dl.append(dt, dd);
    }
  };
  const colors = ["#78a9ff", "#ff8389", "#6fdc8c"];
  const draw = (id, lines, limit) => {
    const canvas = byId(id);
    const g = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 28;
    g.clearRect(0, 0, w, h);
    let max = limit === undefined ? 0 : limit;
    for (const line of lines) for (const v of line) if (v !== null && v > max) max = v;
    if (max <= 0) max = 1;
    g.strokeStyle = "#39424e"; g.fillStyle = "#8d99a8"; g.font = "11px sans-serif";
    g.beginPath(); g.moveTo(pad, 4); g.lineTo(pad, h - pad / 2); g.lineTo(w, h - pad / 2); g.stroke();
    g.fillText(String(Math.round(max * 100) / 100), 2, 12);
    g.fillText("0", 2, h - pad / 2);
    const y = (v) => (h - pad / 2) - (v / max) * (h - pad / 2 - 6);
    if (limit !== undefined) {
      g.strokeStyle = "#ff8389"; g.setLineDash([4, 4]);
      g.beginPath(); g.moveTo(pad, y(limit)); g.lineTo(w, y(limit)); g.stroke();
      g.setLineDash([]);
    }
    lines.forEach((line, i) => {
      const n = line.length;
      if (n === 0) return;
      const x = (k) => pad + (k * (w - pad - 2)) / Math.max(1, n - 1);
      g.strokeStyle = colors[i % colors.length]; g.lineWidth = 1.5;
      g.beginPath();
      let open = false;
      line.forEach((v, k) => {
        if (v === null) { open = false; return; }
        if (open) g.lineTo(x(k), y(v)); else g.moveTo(x(k), y(v));
        open = true;
      });
      g.stroke();
    });
  };
  // Lines of [time, value] pairs on one time axis (the forecast and the measured points need not share times).
  const drawTimed = (id, lines) => {
    const canvas = byId(id);
    const g = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 28;
    g.clearRect(0, 0, w, h);
    let from = Infinity, to = -Infinity, max = 0;
    for (const line of lines) for (const [t, v] of line) {
      if (t < from) from = t;
      if (t > to) to = t;
      if (v > max) max = v;
    }
    if (!(to > from)) { from = Date.now() - 3600000; to = Date.now(); }
    if (max <= 0) max = 1;
    g.strokeStyle = "#39424e"; g.fillStyle = "#8d99a8"; g.font = "11px sans-serif";
    g.beginPath(); g.moveTo(pad, 4); g.lineTo(pad, h - pad / 2); g.lineTo(w, h - pad / 2); g.stroke();
    g.fillText(String(Math.round(max)), 2, 12);
    const clock = (t) => new Date(t).toISOString().slice(11, 16);
    g.fillText(clock(from), pad, h - 2);
    g.fillText(clock(to), w - 34, h - 2);
    const x = (t) => pad + ((t - from) * (w - pad - 2)) / (to - from);
    const y = (v) => (h - pad / 2) - (v / max) * (h - pad / 2 - 6);
    lines.forEach((line, i) => {
      g.strokeStyle = colors[(i + 2) % colors.length]; g.lineWidth = 1.5;
      g.beginPath();
      line.forEach(([t, v], k) => { if (k === 0) g.moveTo(x(t), y(v)); else g.lineTo(x(t), y(v)); });
      g.stroke();
      if (line.length === 1) g.fillRect(x(line[0][0]) - 2, y(line[0][1]) - 2, 4, 4);
    });
  };
  // LoadForecast.curve's shape, [{ at, connections }], when /admin/scaling answers one.
  const forecastOf = (scaling) => {
    const body = scaling.available ? scaling.body : undefined;
    const curve = body && (Array.isArray(body.forecast) ? body.forecast : Array.isArray(body.curve) ? body.curve : []);
    return (curve || [])
      .filter((p) => p && typeof p.at === "number" && typeof p.connections === "number")
      .map((p) => [p.at, p.connections]);
  };
  const render = (s) => {
    show("process", "worker " + s.worker + " · pid " + s.pid + (s.draining ? " · draining" : ""));
    show("connections", String(s.connections));
    show("channels", String(s.channels));
    show("topics", String(s.topics));
    show("deliveries-per-second", String(s.deliveriesPerSecond));
    show("deliveries-total", String(s.deliveriesTotal));
    show("publications-per-second", String(s.publicationsPerSecond));
    show("delivery-p50", ms(s.deliveryP50Ms));
    show("delivery-p99", ms(s.deliveryP99Ms));
    show("fanout-p50", ms(s.fanoutP50Ms));
    show("fanout-p99", ms(s.fanoutP99Ms));
    show("event-loop", s.eventLoop.p50Ms + " / " + s.eventLoop.p99Ms + " / " + s.eventLoop.maxMs);
    show("shed", s.shed === undefined ? "not measured" : s.shed.total + ", " + s.shed.perSecond + "/s");
    const alerts = byId("alerts");
    alerts.replaceChildren();
    for (const text of s.alerts) {
      const p = document.createElement("p");
      p.className = "alert";
      p.textContent = text;
      alerts.append(p);
    }
    const slow = s.slow;
    list("backend", [
      ["Redis", slow.redis === undefined ? "not configured" : slow.redis.ok ? "ok, " + slow.redis.latencyMs + " ms" : "down: " + slow.redis.error],
      ["Broker", slow.broker === undefined ? "in-process" : slow.broker]
    ]);
    const d = slow.devices;
    list("devices", d === undefined ? [] : [
      ["Scope", d.scope + " (" + d.processes + " processes)"],
      ["Wedding devices", String(d.totals.wedding)],
      ["Supplier devices", String(d.totals.supplier)],
      ["Weddings", String(d.scopes.wedding)],
      ["Suppliers", String(d.scopes.supplier)],
      ...d.top.supplier.map((e) => ["supplier " + e.id, String(e.devices)])
    ]);
    list("cache", s.cache.map((c) => {
      const reads = c.hits + c.misses;
      return [c.kind, reads === 0 ? "no reads" : (Math.round((1000 * c.hits) / reads) / 10) + "% of " + reads];
    }));
    const scaling = byId("scaling");
    scaling.replaceChildren();
    const pre = document.createElement("pre");
    const curveless = (key, value) => key === "forecast" || key === "curve" ? undefined : value;
    pre.textContent = slow.scaling.available ? JSON.stringify(slow.scaling.body, curveless, 2) : slow.scaling.reason;
    scaling.append(pre);
    const body = slow.scaling.available ? slow.scaling.body : undefined;
    show("scaling-reason", body && typeof body.reason === "string" ? body.reason : "");
    drawTimed("chart-day", [forecastOf(slow.scaling), s.day.at.map((t, i) => [t, s.day.connections[i]])]);
    draw("chart-connections", [s.series.connections]);
    draw("chart-deliveries", [s.series.deliveriesPerSecond]);
    draw("chart-delivery-latency", [s.series.deliveryP50Ms, s.series.deliveryP99Ms], s.sloMs);
    draw("chart-fanout-latency", [s.series.fanoutP50Ms, s.series.fanoutP99Ms], s.sloMs);
  };
  const status = byId("status");
  const source = new EventSource("/dashboard/stream");
  source.onmessage = (event) => {
    status.textContent = "live";
    status.className = "status live";
    render(JSON.parse(event.data));
  };
  source.onerror = () => {
    status.textContent = "disconnected";
    status.className = "status down";
  };
})();
`
