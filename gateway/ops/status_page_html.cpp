// The status page's HTML: one self-contained document (inline CSS, JS and SVG, nothing fetched
// but /api/v1/status), so it works on an air-gapped network.
#include "gateway/ops/status_page.hpp"

namespace citygate::gateway {

std::string_view StatusPage::html() {
    static constexpr std::string_view page = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>citygate status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 24px;
         align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: 1fr 1fr; }
section { background: #fff; border-radius: 6px; padding: 12px 16px;
          box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section.wide { grid-column: 1 / span 2; }
h2 { font-size: 15px; margin: 0 0 8px; }
.figures { display: flex; gap: 28px; flex-wrap: wrap; }
.figure b { display: block; font-size: 22px; }
.figure span { color: #667; font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .busy { color: #9a6700; } .backpressure, .held, .unwritable { color: #cf222e; }
svg text { font-size: 11px; fill: #667; }
#error { color: #cf222e; }
</style>
</head>
<body>
<header><h1>citygate</h1><span id="version"></span><span id="uptime"></span>
<span id="error"></span></header>
<main>
<section class="wide">
<ul id="problems" style="color:#cf222e;font-weight:bold"></ul>
<div class="figures">
<div class="figure"><b id="connections">–</b><span>connections</span></div>
<div class="figure"><b id="rate">–</b><span>samples/s (5 s)</span></div>
<div class="figure"><b id="written">–</b><span>samples written</span></div>
<div class="figure"><b id="series">–</b><span>series</span></div>
</div>
</section>
<section class="wide">
<h2>Ingest rate <span style="color:#0969da">(samples/s)</span> and
<span style="color:#8250df">connections</span>, last two minutes</h2>
<svg id="chart" viewBox="0 0 800 200" width="100%" height="200" preserveAspectRatio="none">
<line x1="40" y1="180" x2="800" y2="180" stroke="#ccc"/>
<line x1="40" y1="10" x2="40" y2="180" stroke="#ccc"/>
<text id="rate-max" x="2" y="16"></text><text x="2" y="180">0</text>
<text id="conn-max" x="760" y="16" text-anchor="end"></text>
<polyline id="rate-line" fill="none" stroke="#0969da" stroke-width="2" points=""/>
<polyline id="conn-line" fill="none" stroke="#8250df" stroke-width="2" points=""/>
</svg>
</section>
<section>
<h2>Shards</h2>
<table><thead><tr><th>shard</th><th>queue</th><th>written</th><th>state</th></tr></thead>
<tbody id="shards"></tbody></table>
</section>
<section>
<h2>Districts <span id="minute" style="font-weight:normal;color:#667"></span></h2>
<table><thead><tr><th>district</th><th>measurement</th><th>avg 1m</th><th>n 1m</th>
<th>avg now</th><th>n now</th></tr></thead>
<tbody id="districts"></tbody></table>
<p id="dropped" style="color:#667"></p>
</section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (v) => v === null || v === undefined ? "–" :
    Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en") : (+v.toPrecision(4)).toString();
function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
}
function line(points, index, max) {
  if (points.length === 0) return "";
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
  return points.map((p) => {
    const x = 40 + (p[0] - t0) / (t1 - t0) * 760;
    const y = 180 - (max > 0 ? p[index] / max : 0) * 170;
    return x.toFixed(1) + "," + y.toFixed(1);
  }).join(" ");
}
function render(s) {
  $("version").textContent = "v" + s.version;
  $("uptime").textContent = "up " + Math.round(s.uptime_seconds) + " s";
  $("connections").textContent = fmt(s.connections);
  $("rate").textContent = fmt(s.ingest_rate);
  $("written").textContent = fmt(s.samples_written);
  $("series").textContent = fmt(s.series);
  const h = s.history;
  const rateMax = Math.max(1, ...h.map((p) => p[1])), connMax = Math.max(1, ...h.map((p) => p[2]));
  $("rate-line").setAttribute("points", line(h, 1, rateMax));
  $("conn-line").setAttribute("points", line(h, 2, connMax));
  $("rate-max").textContent = fmt(rateMax);
  $("conn-max").textContent = fmt(connMax);
  const problems = $("problems"); problems.replaceChildren();
  for (const p of s.problems || []) {
    const li = document.createElement("li"); li.textContent = p; problems.appendChild(li);
  }
  const shards = $("shards"); shards.replaceChildren();
  for (const sh of s.shards) {
    const r = shards.insertRow();
    cell(r, sh.shard); cell(r, sh.queue_depth + " / " + sh.queue_capacity, "num");
    cell(r, fmt(sh.points_written), "num");
    const state = sh.wal_damaged ? "wal damaged" : sh.state;
    cell(r, state, sh.wal_damaged ? "backpressure" : sh.state);
  }
  const districts = $("districts"); districts.replaceChildren();
  if (s.city) {
    $("minute").textContent = "(minute from " +
        new Date(s.city.minute_start_ms).toISOString().substring(11, 16) + " UTC)";
    for (const p of s.city.pairs) {
      const r = districts.insertRow();
      cell(r, p.district); cell(r, p.measurement); cell(r, fmt(p.avg_1m), "num");
      cell(r, p.samples_1m, "num"); cell(r, fmt(p.current_avg), "num");
      cell(r, p.current_samples, "num");
    }
    $("dropped").textContent = s.city.pairs_tracked + " of " + s.city.max_pairs +
        " pairs tracked" + (s.city.readings_dropped ?
        ", " + s.city.readings_dropped + " readings dropped beyond the cap" : "");
  }
}
async function poll() {
  try {
    const reply = await fetch("api/v1/status", {cache: "no-store"});
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    render(await reply.json());
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = "status unavailable: " + e.message;
  }
}
poll();
setInterval(poll, 2000);
</script>
</body>
</html>
)html";
    return page;
}

}  // namespace citygate::gateway
