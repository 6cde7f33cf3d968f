// JSON and HTML renderings of a run. The HTML embeds the JSON and draws SVG charts from it with
// a few lines of script, so the page works offline and a headless browser can check the charts.
#include "loadgen/run_report.hpp"

#include <cmath>
#include <cstdio>

namespace citygate::loadgen {
namespace {

class JsonWriter {
  public:
    explicit JsonWriter(std::string& out) : out_(out) {}
    void open() { separate(), out_ += '{', first_ = true; }
    void close() { out_ += '}', first_ = false; }
    void key(std::string_view name) {
        separate();
        string(name);
        out_ += ':';
        first_ = true;  // the value follows without a comma
    }
    void field(std::string_view name, std::uint64_t value) {
        key(name), raw(std::to_string(value));
    }
    void field(std::string_view name, double value) {
        key(name);
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%.3f", value);
        raw(buffer);
    }
    void field(std::string_view name, bool value) { key(name), raw(value ? "true" : "false"); }
    void field(std::string_view name, std::string_view value) {
        key(name);
        separate();
        string(value);
    }
    void raw(std::string_view text) {
        separate();
        out_ += text;
    }
    void begin_array() { separate(), out_ += '[', first_ = true; }
    void end_array() { out_ += ']', first_ = false; }
    void string(std::string_view text) {
        out_ += '"';
        for (char c : text) {
            if (c == '"' || c == '\\') {
                out_ += '\\', out_ += c;
            } else if (static_cast<unsigned char>(c) < 0x20) {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
                out_ += escaped;
            } else if (c == '<') {
                out_ += "\\u003c";  // keeps "</script>" out of the HTML page
            } else {
                out_ += c;
            }
        }
        out_ += '"';
        first_ = false;
    }

  private:
    void separate() {
        if (!first_) out_ += ',';
        first_ = false;
    }
    std::string& out_;
    bool first_ = true;
};

double millis(std::chrono::nanoseconds d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

void latency(JsonWriter& json, std::string_view name, const LatencyHistogram& h) {
    json.key(name);
    json.open();
    json.field("count", h.count());
    json.field("p50", millis(h.quantile(0.5)));
    json.field("p90", millis(h.quantile(0.9)));
    json.field("p99", millis(h.quantile(0.99)));
    json.field("p99_9", millis(h.quantile(0.999)));
    json.field("max", millis(h.max()));
    json.close();
}

void by_reason(JsonWriter& json, std::string_view name,
               const std::array<std::uint64_t, drop_reason_count>& counts) {
    json.key(name);
    json.open();
    for (std::size_t i = 0; i < drop_reason_count; ++i) {
        if (counts[i]) json.field(drop_reason_name(static_cast<DropReason>(i)), counts[i]);
    }
    json.close();
}

std::string fixed3(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.3f", value);
    return buffer;
}

}  // namespace

void add_latency_over_time(std::vector<TimelineSample>& timeline, const StatsTotals& totals) {
    auto slot_at = [](double t_s) {
        return static_cast<std::size_t>(std::floor(std::max(0.0, t_s)));
    };
    for (std::size_t i = 1; i < timeline.size(); ++i) {
        std::size_t first = slot_at(timeline[i - 1].t_s);
        std::size_t last =
            i + 1 == timeline.size() ? LatencyTimeline::max_slots : slot_at(timeline[i].t_s);
        TimelineSample& sample = timeline[i];
        LatencyHistogram ack = totals.ack_by_second.merged(first, last);
        LatencyHistogram connack = totals.connack_by_second.merged(first, last);
        sample.ack_count = ack.count();
        sample.ack_p50_ms = millis(ack.quantile(0.5));
        sample.ack_p99_ms = millis(ack.quantile(0.99));
        sample.connack_count = connack.count();
        sample.connack_p50_ms = millis(connack.quantile(0.5));
        sample.connack_p99_ms = millis(connack.quantile(0.99));
    }
}

std::string to_json(const RunReport& r) {
    const StatsTotals& t = r.totals;
    std::string out;
    JsonWriter json(out);
    json.open();
    json.field("scenario", r.scenario.name);
    json.field("broker", r.broker);
    json.field("protocol", r.protocol);
    json.field("qos", std::uint64_t{r.scenario.qos});
    json.field("format", r.format);
    json.field("tls", r.tls);
    json.field("threads", std::uint64_t{r.threads});
    json.field("source_addresses", std::uint64_t{r.source_addresses});
    json.field("clients", r.scenario.clients);
    json.field("messages_per_client", r.scenario.messages);
    json.field("interval_ms", r.scenario.interval_ms);
    json.field("inflight", std::uint64_t{r.scenario.inflight});
    json.field("connected", t.connected);
    json.field("connect_failed", t.connect_failed);
    json.field("attempts", t.attempts);
    json.field("reconnected", t.reconnected);
    json.field("sent", t.sent);
    json.field("acknowledged", t.acknowledged);
    json.field("negative_acks", t.negative_acks);
    json.field("unacknowledged", t.unacknowledged);
    json.field("protocol_errors", t.protocol_errors);
    json.field("disconnected_early", t.disconnected_early);
    json.field("pings", t.pings);
    by_reason(json, "disconnects", t.drops);
    by_reason(json, "reconnects", t.reconnects);
    json.field("seconds", r.seconds);
    json.field("connect_seconds", r.connect_seconds);
    json.field("connects_per_s",
               r.connect_seconds > 0 ? double(t.connected) / r.connect_seconds : 0.0);
    json.field("sent_per_s", r.seconds > 0 ? double(t.sent) / r.seconds : 0.0);
    json.field("acked_per_s", r.seconds > 0 ? double(t.acknowledged) / r.seconds : 0.0);
    json.field("cpu_user_s", r.cpu_user_s);
    json.field("cpu_system_s", r.cpu_system_s);
    latency(json, "connack_ms", t.connack_latency);
    latency(json, "ack_ms", t.ack_latency);
    json.key("timeline");
    json.begin_array();
    for (const TimelineSample& s : r.timeline) {
        json.begin_array();
        json.raw(std::to_string(s.t_s));
        for (auto v : {s.open, s.connected, s.sent, s.acknowledged, s.drops, s.reconnected})
            json.raw(std::to_string(v));
        json.raw(std::to_string(s.ack_count));
        json.raw(fixed3(s.ack_p50_ms));
        json.raw(fixed3(s.ack_p99_ms));
        json.raw(std::to_string(s.connack_count));
        json.raw(fixed3(s.connack_p50_ms));
        json.raw(fixed3(s.connack_p99_ms));
        json.end_array();
    }
    json.end_array();
    if (r.verify) {
        const VerifyResult& v = *r.verify;
        json.key("verify");
        json.open();
        json.field("ok", v.ok());
        json.field("series_expected", v.series_expected);
        json.field("series_missing", v.series_missing);
        json.field("readings_expected", v.readings_expected);
        json.field("readings_missing", v.readings_missing);
        json.field("values_checked", v.values_checked);
        json.field("value_mismatches", v.value_mismatches);
        if (!v.error.empty()) json.field("error", v.error);
        json.close();
    }
    json.field("complete", r.complete);
    json.close();
    return out;
}

std::string to_html(const RunReport& report) {
    std::string html = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>citygate-loadgen report</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
figure{margin:16px 0;border:1px solid #ddd;padding:8px;width:760px}
figcaption{font-weight:600;margin-bottom:4px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
.legend span{margin-right:16px}
</style></head><body>
<h1>citygate-loadgen</h1>
<p id="summary"></p>
<figure id="throughput"><figcaption>Throughput (messages/s)</figcaption></figure>
<figure id="latency-over-time"><figcaption>Latency over time (ms, p50 and p99 of each second)</figcaption></figure>
<figure id="latency"><figcaption>Latency by percentile, whole run (ms)</figcaption></figure>
<figure id="connections"><figcaption>Connections over time</figcaption></figure>
<h2>Totals</h2><table id="totals"></table>
<script id="report" type="application/json">)html";
    html += to_json(report);
    html += R"html(</script>
<script>
"use strict";
const report = JSON.parse(document.getElementById("report").textContent);
const NS = "http://www.w3.org/2000/svg";
const W = 740, H = 260, L = 60, B = 30;
function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
// Draws line series [{name, color, points:[[x,y]...]}] with axes; x labels from xLabel(x).
function chart(id, series, xLabel) {
  const fig = document.getElementById(id);
  const svg = el("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`}, fig);
  const all = series.flatMap(s => s.points);
  const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1), y1 = Math.max(...ys, 1) * 1.1;
  const sx = x => L + (x - x0) / (x1 - x0 || 1) * (W - L - 10);
  const sy = y => H - B - y / y1 * (H - B - 10);
  el("line", {x1: L, y1: H - B, x2: W - 10, y2: H - B, stroke: "#888"}, svg);
  el("line", {x1: L, y1: 10, x2: L, y2: H - B, stroke: "#888"}, svg);
  for (let i = 0; i <= 4; ++i) {
    const y = y1 * i / 4;
    el("text", {x: L - 4, y: sy(y) + 4, "text-anchor": "end", "font-size": 11}, svg)
        .textContent = y >= 100 ? y.toFixed(0) : y.toPrecision(3);
    const x = x0 + (x1 - x0) * i / 4;
    el("text", {x: sx(x), y: H - B + 16, "text-anchor": "middle", "font-size": 11}, svg)
        .textContent = xLabel(x);
  }
  let drawn = 0;
  for (const s of series) {
    if (!s.points.length) continue;
    el("polyline", {fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name,
                    points: s.points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ")}, svg);
    for (const p of s.points) el("circle", {cx: sx(p[0]), cy: sy(p[1]), r: 2, fill: s.color}, svg);
    drawn += s.points.length;
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = series.map(s => `<span style="color:${s.color}">&#9632; ${s.name}</span>`).join("");
  fig.appendChild(legend);
  fig.setAttribute("data-points", drawn);
}
// Timeline rows: [t, open, connected, sent, acked, drops, reconnected, ack count, ack p50, ack p99,
// connack count, connack p50, connack p99]; counters cumulative, latency of that stretch only.
const tl = report.timeline;
function rate(col) {
  const out = [];
  for (let i = 1; i < tl.length; ++i) {
    const dt = tl[i][0] - tl[i - 1][0];
    if (dt > 0) out.push([tl[i][0], (tl[i][col] - tl[i - 1][col]) / dt]);
  }
  return out;
}
const seconds = x => x.toFixed(0) + " s";
chart("throughput", [{name: "sent/s", color: "#1f77b4", points: rate(3)},
                     {name: "acknowledged/s", color: "#2ca02c", points: rate(4)}], seconds);
// Latency over time: a point for each stretch in which something completed.
const over = (n, col) => tl.filter(r => r[n] > 0).map(r => [r[0], r[col]]);
chart("latency-over-time", [{name: "PUBACK/PUBCOMP p50", color: "#2ca02c", points: over(7, 8)},
                            {name: "PUBACK/PUBCOMP p99", color: "#d62728", points: over(7, 9)},
                            {name: "CONNACK p50", color: "#17becf", points: over(10, 11)},
                            {name: "CONNACK p99", color: "#9467bd", points: over(10, 12)}], seconds);
// Percentiles on the usual HDR axis: x = log10(1 / (1 - p)), so 90, 99, 99.9 are evenly spaced.
const pct = [["p50", 0.5], ["p90", 0.9], ["p99", 0.99], ["p99_9", 0.999], ["max", 0.9999]];
const hdr = h => h.count ? pct.map(([k, p]) => [Math.log10(1 / (1 - p)), h[k]]) : [];
const names = {0.301: "50%", 1: "90%", 2: "99%", 3: "99.9%", 4: "max"};
chart("latency", [{name: "PUBACK/PUBCOMP", color: "#d62728", points: hdr(report.ack_ms)},
                  {name: "CONNACK", color: "#9467bd", points: hdr(report.connack_ms)}],
      x => { const k = Object.keys(names).find(k => Math.abs(k - x) < 0.2);
             return k ? names[k] : ""; });
chart("connections", [{name: "open", color: "#ff7f0e", points: tl.map(r => [r[0], r[1]])},
                      {name: "connects/s", color: "#17becf", points: rate(2)},
                      {name: "drops, total", color: "#7f7f7f", points: tl.map(r => [r[0], r[5]])}],
      seconds);
document.getElementById("summary").textContent =
  `scenario ${report.scenario}, ${report.clients} clients, MQTT ${report.protocol} QoS ${report.qos}` +
  ` ${report.format}${report.tls ? " over TLS" : ""} to ${report.broker}: ` +
  `${report.acknowledged} acknowledged in ${report.seconds} s (${report.acked_per_s}/s)` +
  (report.verify ? `, verify ${report.verify.ok ? "passed" : "FAILED"}` : "");
const rows = ["connected", "connect_failed", "reconnected", "sent", "acknowledged", "negative_acks",
              "unacknowledged", "protocol_errors", "disconnected_early", "connects_per_s",
              "acked_per_s", "cpu_user_s", "cpu_system_s"];
document.getElementById("totals").innerHTML =
  rows.map(k => `<tr><th>${k}</th><td>${report[k]}</td></tr>`).join("") +
  Object.entries(report.disconnects).map(([k, v]) => `<tr><th>disconnects: ${k}</th><td>${v}</td></tr>`).join("");
document.body.setAttribute("data-rendered", "yes");
</script></body></html>
)html";
    return html;
}

}  // namespace citygate::loadgen
