#!/usr/bin/env python3
"""citygate's PromQL against a real Prometheus holding the same data, on the loopback only.

Starts Debian's `prometheus` (with --web.enable-remote-write-receiver) and a citygate, both on
free ports in a temporary directory, writes the same samples into both and asks both the same
queries over their HTTP APIs:

  compare   (default) a small city (gauges, counters with resets, series with gaps, series that
            stop, readings that arrive late) and >= 300 PromQL queries, instant and range, at
            several times, steps and offsets; results are compared with a float tolerance.
            Exit 0 when every result agrees or differs only as a known difference listed in
            README.md ("PromQL: known differences"), 1 otherwise, 77 when prometheus is missing.
  latency   --sensors (10,000) pm25 sensors over --hours (24) at one reading per --interval
            seconds, then --query (`avg by (district) (avg_over_time(pm25[5m]))`) as a range query
            over the last 1 h and 24 h against both, --repeat times each; prints the medians.

Data paths: Prometheus gets the samples through its remote-write receiver (protobuf + snappy,
encoded here: the snappy block is written as literals only, which every decoder accepts), in
time order; citygate gets them over MQTT (QoS 1, InfluxDB line protocol with ms timestamps on
the topic `bench/lines`), the late readings after the rest, so citygate's out-of-order path is
exercised while both end up with the same samples.

  bench/promql_compare.py --binary build/gateway/citygate
  bench/promql_compare.py --binary build/gateway/citygate latency --sensors 10000 --hours 24
  bench/promql_compare.py --binary build/gateway/citygate latency --sensors 1000 --hours 4 \
      --interval 10 --query 'avg by (district) (avg_over_time(pm25[1h]))' --rollup-min-buckets 0
"""

import argparse
import json
import math
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import mqtt_hostile_clients as mqtt  # bench/: the script's own directory is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- remote-write encoding
def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, wire, payload):
    return _varint((number << 3) | wire) + payload


def _bytes_field(number, data):
    return _field(number, 2, _varint(len(data)) + data)


def encode_write_request(series):
    """series: [(labels dict, [(t_ms, value), ...])] -> prometheus.WriteRequest bytes."""
    out = bytearray()
    for labels, samples in series:
        ts = bytearray()
        for name in sorted(labels):
            ts += _bytes_field(1, _bytes_field(1, name.encode()) + _bytes_field(2, labels[name].encode()))
        for t, v in samples:
            sample = _field(1, 1, struct.pack("<d", v)) + _field(2, 0, _varint(t & (2**64 - 1)))
            ts += _bytes_field(2, sample)
        out += _bytes_field(1, bytes(ts))
    return bytes(out)


def snappy_literal_block(data):
    """Snappy block format with literals only (valid for every decoder, no compression)."""
    out = bytearray(_varint(len(data)))
    for at in range(0, len(data), 65536):
        chunk = data[at:at + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


# ---------------------------------------------------------------- processes
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=120):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def http_post(url, body, headers, timeout=120):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Prometheus:
    def __init__(self, workdir, lookback="5m"):
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(self.dir)
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1h\n  evaluation_interval: 1m\n")
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.process = subprocess.Popen(
            ["prometheus", "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver",
             "--query.lookback-delta=" + lookback, "--storage.tsdb.retention.time=30d",
             "--query.max-samples=500000000"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if http_get(self.base + "/-/ready", 2)[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("prometheus did not start: " + open(self.log.name).read()[-2000:])

    def write(self, series):
        body = snappy_literal_block(encode_write_request(series))
        status, answer = http_post(self.base + "/api/v1/write", body, {
            "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0"})
        if status not in (200, 204):
            raise RuntimeError(f"remote write answered {status}: {answer[:300]!r}")

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


CITYGATE_TOML = """
[http]
max_query_series = 1000000
max_query_points = 200000000
max_query_bytes = 8589934592
query_memory_budget = 8589934592
query_timeout = "120s"
lookback_delta = "{lookback}"
promql_rollup_min_buckets = {rollup_min_buckets}
[storage]
out_of_order_window = "2h"
[ingest]
topic_templates = ["bench/lines"]
default_format = "line"
line_precision = "ms"
max_series_per_identity = 0
max_new_series_per_minute = 0
max_future = "0s"
[city]
max_pairs = 0
"""


class Publisher:
    """One MQTT 3.1.1 connection publishing line protocol at QoS 1, a window of PUBLISHes in
    flight, each acknowledged (in the WAL) before publish() returns from its last one."""

    def __init__(self, port, window=64):
        self.sock = mqtt.mqtt_client(port, "promql-compare")
        self.sock.settimeout(120)
        self.window = window
        self.inflight = 0
        self.next_id = 1
        self.pending = b""

    def _read_acks(self, until):
        while self.inflight > until:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("citygate closed the MQTT connection (refused a reading?)")
            self.pending += data
            while len(self.pending) >= 4:
                if self.pending[0] != 0x40:
                    raise RuntimeError(f"unexpected packet {self.pending[:4]!r}")
                self.pending = self.pending[4:]
                self.inflight -= 1

    def publish(self, lines):
        payload = ("\n".join(lines)).encode()
        self.sock.sendall(mqtt.publish_packet("bench/lines", payload, self.next_id))
        self.next_id = self.next_id % 65535 + 1
        self.inflight += 1
        self._read_acks(self.window - 1)

    def flush(self):
        self._read_acks(0)

    def close(self):
        self.flush()
        self.sock.close()


def escape_tag(v):
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line_of(labels, t, v):
    name = labels["__name__"]
    tags = "".join(f",{k}={escape_tag(labels[k])}" for k in sorted(labels) if k != "__name__")
    return f"{name}{tags} value={v!r} {t}"


def write_both(prom, gateway, series, late=()):
    """series: [(labels, [(t, v)])]; `late` is a set of (series index, t) that citygate gets
    after everything else. Prometheus gets every sample in time order."""
    # Prometheus: per time slice of 10 min, every series' samples in it (remote write needs time
    # order within a series; slices keep its head appends in bounds).
    tmin = min(s[1][0][0] for s in series if s[1])
    tmax = max(s[1][-1][0] for s in series if s[1])
    slice_ms = 600_000
    batch, batch_samples = [], 0
    for start in range(tmin, tmax + 1, slice_ms):
        for labels, samples in series:
            part = [(t, v) for t, v in samples if start <= t < start + slice_ms]
            if part:
                batch.append((labels, part))
                batch_samples += len(part)
            if batch_samples >= 20000:
                prom.write(batch)
                batch, batch_samples = [], 0
    if batch:
        prom.write(batch)
    # citygate: in time order by slice too, holding back the late samples.
    pub = Publisher(gateway.mqtt_port)
    lines = []
    held = []
    for start in range(tmin, tmax + 1, slice_ms):
        for i, (labels, samples) in enumerate(series):
            for t, v in samples:
                if not start <= t < start + slice_ms:
                    continue
                if (i, t) in late:
                    held.append(line_of(labels, t, v))
                    continue
                lines.append(line_of(labels, t, v))
                if len(lines) >= 2000:
                    pub.publish(lines)
                    lines = []
    if lines:
        pub.publish(lines)
    for at in range(0, len(held), 2000):
        pub.publish(held[at:at + 2000])
    pub.close()


# ---------------------------------------------------------------- the comparison city
def compare_city(base_ms):
    """A small deterministic city over 2 h from base_ms; returns (series, late)."""
    rng = random.Random(13)
    series, late = [], set()
    districts = ["pudong", "xuhui", "jingan", "minhang"]
    span = 2 * 3600_000

    def jittered(step_ms, start=0, end=span):
        t = base_ms + start
        out = []
        while t < base_ms + end:
            out.append(t + rng.randint(-1500, 1500))
            t += step_ms
        return out

    # Gauges: temperature with a daily-like curve, 15 s readings with jitter.
    for d_i, d in enumerate(districts):
        for dev in range(3):
            labels = {"__name__": "temp_c", "district": d, "device": f"t-{d_i}{dev}", "type": "weather"}
            ts = jittered(15_000)
            series.append((labels, [(t, round(20 + 5 * math.sin((t - base_ms) / 2e6 + dev) + rng.random(), 3)) for t in ts]))
    # pm25 with gaps: device 0 none, device 1 a 3 min gap (inside the lookback), device 2 a
    # 20 min gap (beyond it).
    for d_i, d in enumerate(districts):
        for dev in range(3):
            labels = {"__name__": "pm25", "district": d, "device": f"a-{d_i}{dev}", "type": "air"}
            ts = jittered(30_000)
            if dev == 1:
                ts = [t for t in ts if not (base_ms + 2400_000 <= t < base_ms + 2580_000)]
            if dev == 2:
                ts = [t for t in ts if not (base_ms + 3000_000 <= t < base_ms + 4200_000)]
            series.append((labels, [(t, float(rng.randint(5, 150))) for t in ts]))
    # Counters with resets: increments of 0..20 every 10 s, reset to 0 at random points.
    for d_i, d in enumerate(districts):
        for code in ("200", "500"):
            labels = {"__name__": "readings_total", "district": d, "code": code}
            value, samples = 0.0, []
            for i, t in enumerate(jittered(10_000)):
                if rng.random() < 0.004:
                    value = 0.0
                value += rng.randint(0, 20) if code == "200" else rng.randint(0, 2)
                samples.append((t, value))
            series.append((labels, samples))
    # Series that stop: battery readings ending 60 min in (stale afterwards, after the lookback).
    for d_i, d in enumerate(districts[:2]):
        labels = {"__name__": "battery_volts", "district": d, "device": f"b-{d_i}"}
        series.append((labels, [(t, round(3.7 - (t - base_ms) / 1e8, 4)) for t in jittered(60_000, 0, 3600_000)]))
    # Noise, the last 40 minutes of readings of every third sample arrive late at citygate.
    for d_i, d in enumerate(districts):
        labels = {"__name__": "noise_db", "district": d, "device": f"n-{d_i}"}
        samples = [(t, float(rng.randint(35, 90))) for t in jittered(20_000)]
        idx = len(series)
        series.append((labels, samples))
        for k, (t, _) in enumerate(samples):
            if t >= base_ms + span - 2400_000 and k % 3 == 0:
                late.add((idx, t))
    for _, samples in series:
        samples.sort()
    return series, late


def queries(base_ms):
    """(kind, expression, params) triples: instant at several times, range at several steps."""
    exprs = [
        # selectors
        "temp_c", 'temp_c{district="pudong"}', 'temp_c{district!="pudong"}', 'temp_c{district=~"pu.*|xu.*"}',
        'temp_c{district!~"pu.*"}', '{__name__=~"temp_c|pm25", district="xuhui"}', "pm25 offset 5m",
        "pm25 offset 30m", "battery_volts", "noise_db", 'readings_total{code="500"}',
        # range functions
        "rate(readings_total[1m])", "rate(readings_total[5m])", "irate(readings_total[5m])",
        "increase(readings_total[10m])", "resets(readings_total[30m])", "changes(pm25[10m])",
        "delta(temp_c[5m])", "idelta(temp_c[5m])", "deriv(temp_c[10m])",
        "predict_linear(temp_c[10m], 600)", "avg_over_time(pm25[5m])", "min_over_time(pm25[5m])",
        "max_over_time(pm25[10m])", "sum_over_time(pm25[5m])", "count_over_time(pm25[5m])",
        "last_over_time(pm25[5m])", "present_over_time(battery_volts[5m])",
        "quantile_over_time(0.9, noise_db[10m])", "stddev_over_time(temp_c[5m])",
        "stdvar_over_time(temp_c[5m])", "absent_over_time(battery_volts[5m])",
        "avg_over_time(pm25[1h])", "max_over_time(temp_c[1h])", "count_over_time(noise_db[30m])",
        # windows long enough to read rollups (whole buckets, raw edges)
        "sum_over_time(pm25[45m] offset 7m)", "min_over_time(temp_c[2h])", "last_over_time(battery_volts[1h])",
        "present_over_time(noise_db[40m])", "avg by (district) (avg_over_time(temp_c[90m]))",
        "absent_over_time(battery_volts[1h])", "sum_over_time(readings_total[1h])",
        f"max_over_time(pm25[1h] @ {(base_ms + 5400_000) / 1000:.3f})",
        # aggregations
        "sum by (district) (rate(readings_total[5m]))", "avg by (district) (temp_c)",
        "avg by (district) (avg_over_time(pm25[5m]))", "max without (device) (pm25)",
        "min by (type) (temp_c)", "count by (district) (pm25)", "stddev(temp_c)", "stdvar by (district) (temp_c)",
        "topk(3, pm25)", "bottomk(2, temp_c)", "quantile(0.5, pm25)", "count_values(\"v\", pm25 > 100)",
        "group by (district) (noise_db)", "sum(readings_total)", "sum without (code) (readings_total)",
        # binary operators
        "pm25 * 2", "pm25 / on(district, device) pm25", "temp_c - 20", "temp_c % 3", "2 ^ (temp_c / 10)",
        "pm25 > 100", "pm25 > bool 100", "temp_c >= 22", 'pm25 == bool 50',
        "readings_total and on(district) pm25", "noise_db or battery_volts", "temp_c unless on(district) battery_volts",
        'sum by (district) (readings_total{code="500"}) / ignoring(code) sum by (district) (readings_total)',
        "avg by (district) (temp_c) - on(district) group_left avg by (district) (pm25)",
        "pm25 * on(district) group_left(dummy) avg by (district) (temp_c)",
        "-temp_c", "(pm25 + 1) * on(district, device, type) (pm25 - 1)",
        # functions
        "abs(temp_c - 22)", "ceil(temp_c)", "floor(temp_c)", "round(temp_c, 0.5)", "clamp(pm25, 20, 80)",
        "clamp_min(pm25, 50)", "clamp_max(pm25, 50)", "exp(temp_c / 10)", "ln(pm25)", "log2(pm25)",
        "log10(pm25)", "sqrt(pm25)", "sgn(temp_c - 22)", "timestamp(pm25)", "time()", "vector(1)",
        "scalar(sum(pm25))", "absent(nonexistent)", "absent(battery_volts)", 'label_replace(pm25, "zone", "$1", "district", "(.*)u.*")',
        'label_join(pm25, "id", "-", "district", "device")', "sort(pm25)", "sort_desc(temp_c)",
        "day_of_week()", "hour(timestamp(pm25))", "minute(timestamp(temp_c))", "month()", "year()", "days_in_month()",
        # subqueries and @
        "max_over_time(rate(readings_total[1m])[10m:1m])", "avg_over_time(temp_c[10m:30s])",
        "rate(readings_total[5m] offset 10m)", f"pm25 @ {(base_ms + 3600_000) / 1000:.3f}",
        f"avg_over_time(temp_c[5m] @ {(base_ms + 1800_000) / 1000:.3f})",
        # literals
        "1", "1 + 1", "-2.5", '"hello"', "NaN", "+Inf",
    ]
    out = []
    span = 2 * 3600_000
    times = [base_ms + 1800_000 + 123, base_ms + 3600_000, base_ms + 4000_000 + 7, base_ms + span - 60_000]
    ranges = [  # (start, end, step) in ms
        (base_ms + 600_000, base_ms + span, 60_000),
        (base_ms + 1200_000, base_ms + 4800_000, 15_000),
        (base_ms + 300_000 + 500, base_ms + span + 300_000, 300_000),
        (base_ms + 2000_000, base_ms + 3000_000, 37_000),
    ]
    for i, e in enumerate(exprs):
        # Two instant times and two range shapes per expression, rotated: 4 queries each.
        for k in range(2):
            out.append(("instant", e, {"time": f"{times[(i + k) % len(times)] / 1000:.3f}"}))
        for k in range(2):
            s, en, st = ranges[(i + k) % len(ranges)]
            if e.startswith('"'):
                continue  # a string is no range query in either
            out.append(("range", e, {"start": f"{s / 1000:.3f}", "end": f"{en / 1000:.3f}", "step": f"{st / 1000:g}"}))
    return out


# ---------------------------------------------------------------- comparison
def ask(base, kind, expr, params, post=False):
    path = "/api/v1/query" if kind == "instant" else "/api/v1/query_range"
    form = dict(params, query=expr)
    body = urllib.parse.urlencode(form)
    if post:
        status, raw = http_post(base + path, body.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    else:
        try:
            status, raw = http_get(base + path + "?" + body)
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
    return status, json.loads(raw)


def num(text):
    return float(text)  # "NaN", "+Inf", "-Inf" included


def close(a, b, rel=1e-9, abs_=1e-9):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def normalise(answer, ordered):
    """-> (status, resultType, list of (labels tuple, [(t, value)]) ) comparable across both."""
    if answer.get("status") != "success":
        return ("error", answer.get("errorType"), None)
    data = answer["data"]
    rt = data["resultType"]
    res = data["result"]
    if rt in ("scalar", "string"):
        return ("success", rt, [((), [(res[0], res[1])])])
    items = []
    for r in res:
        labels = tuple(sorted(r["metric"].items()))
        points = [r["value"]] if rt == "vector" else r["values"]
        items.append((labels, [(p[0], p[1]) for p in points]))
    if not ordered:
        items.sort()
    return ("success", rt, items)


def differ(a, b):
    """None when the normalised answers agree, else a short reason."""
    if a[0] != b[0] or a[1] != b[1]:
        return f"status/type {a[:2]} vs {b[:2]}"
    if a[2] is None:
        return None
    if len(a[2]) != len(b[2]):
        return f"{len(a[2])} series vs {len(b[2])}: {[x[0] for x in a[2]][:4]} vs {[x[0] for x in b[2]][:4]}"
    for (la, pa), (lb, pb) in zip(a[2], b[2]):
        if la != lb:
            return f"labels {la} vs {lb}"
        if len(pa) != len(pb):
            return f"{la}: {len(pa)} points vs {len(pb)}"
        for (ta, va), (tb, vb) in zip(pa, pb):
            if abs(ta - tb) > 1e-6:
                return f"{la}: time {ta} vs {tb}"
            if a[1] == "string":
                if va != vb:
                    return f"string {va!r} vs {vb!r}"
            elif not close(num(va), num(vb)):
                return f"{la} at {ta}: {va} vs {vb}"
    return None


def known_differences():
    """Expressions README.md lists under "PromQL: known differences" (lines `- \\`expr\\`: why`)."""
    known = set()
    try:
        text = open(os.path.join(ROOT, "README.md")).read()
    except OSError:
        return known
    section = text.split("### PromQL: known differences", 1)
    if len(section) < 2:
        return known
    for line in section[1].split("\n### ", 1)[0].splitlines():
        if line.startswith("- `") and "`:" in line:
            known.add(line[3:line.index("`:")])
    return known


def run_compare(args):
    workdir = tempfile.mkdtemp(prefix="promql-compare-")
    prom = gateway = None
    try:
        prom = Prometheus(workdir)
        gateway = mqtt.Gateway(args.binary, CITYGATE_TOML.replace("{lookback}", "5m").replace("{rollup_min_buckets}", "30"))
        now = int(time.time() * 1000)
        base = (now - 3 * 3600_000) // 60_000 * 60_000
        series, late = compare_city(base)
        total = sum(len(s[1]) for s in series)
        print(f"data: {len(series)} series, {total} samples ({len(late)} late at citygate), from {base}")
        write_both(prom, gateway, series, late)
        cg = f"http://127.0.0.1:{gateway.http_port}"
        qs = queries(base)
        known = known_differences()
        agree, known_hits, failures = 0, 0, []
        for n, (kind, expr, params) in enumerate(qs):
            post = n % 2 == 1  # half as Grafana sends them: POST, form-encoded
            ps, pa = ask(prom.base, kind, expr, params)
            cs, ca = ask(cg, kind, expr, params, post=post)
            ordered = kind == "instant" and expr.startswith(("sort", "topk", "bottomk"))
            why = differ(normalise(pa, ordered), normalise(ca, ordered))
            if why is None and ps != cs:
                why = f"HTTP {ps} vs {cs}"
            if why is None:
                agree += 1
            elif expr in known:
                known_hits += 1
            else:
                failures.append((kind, expr, params, why))
        print(f"queries: {len(qs)}, agreeing: {agree}, known differences: {known_hits}, "
              f"differing: {len(failures)} (pass rate {100.0 * agree / len(qs):.1f}%)")
        for kind, expr, params, why in failures[:40]:
            print(f"  DIFF {kind} {expr} {params}: {why}")
        return 0 if not failures else 1
    finally:
        if gateway:
            gateway.stop()
        if prom:
            prom.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- latency
def run_latency(args):
    workdir = tempfile.mkdtemp(prefix="promql-latency-")
    prom = gateway = None
    try:
        prom = Prometheus(workdir)
        toml = CITYGATE_TOML.replace("{lookback}", "5m")
        gateway = mqtt.Gateway(args.binary, toml.replace("{rollup_min_buckets}", str(args.rollup_min_buckets)))
        interval = args.interval * 1000
        now = int(time.time() * 1000) // interval * interval
        start = now - args.hours * 3600_000
        districts = [f"d{d:02d}" for d in range(16)]
        rng = random.Random(8)
        # Written one hour of every sensor at a time, in time order, to both.
        t_written = time.time()
        pub = Publisher(gateway.mqtt_port)
        labels = [{"__name__": "pm25", "district": districts[s % 16], "device": f"a-{s:05d}", "type": "air"}
                  for s in range(args.sensors)]
        lines = []
        samples = 0
        for hour in range(args.hours):
            h0 = start + hour * 3600_000
            batch, batch_n = [], 0
            for lab in labels:
                pts = [(t, float(rng.randint(5, 150))) for t in range(h0, h0 + 3600_000, interval)]
                batch.append((lab, pts))
                batch_n += len(pts)
                for t, v in pts:
                    lines.append(line_of(lab, t, v))
                    if len(lines) >= 2000:
                        pub.publish(lines)
                        lines = []
                if batch_n >= 20000:
                    prom.write(batch)
                    batch, batch_n = [], 0
                samples += len(pts)
            if batch:
                prom.write(batch)
        if lines:
            pub.publish(lines)
        pub.close()
        print(f"data: {args.sensors} sensors x {args.hours} h at one reading per {args.interval} s = "
              f"{samples} samples in each, written in {time.time() - t_written:.0f} s")
        cg = f"http://127.0.0.1:{gateway.http_port}"
        query = args.query
        results = {}
        shapes = [tuple(int(x) for x in shape.split(":")) for shape in args.shapes.split(",")]
        for hours, step in shapes:
            params = {"start": f"{(now - hours * 3600_000) / 1000:.3f}", "end": f"{now / 1000:.3f}", "step": str(step)}
            for name, base in (("citygate", cg), ("prometheus", prom.base)):
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    status, answer = ask(base, "range", query, params, post=True)
                    times.append((time.perf_counter() - t0) * 1000)
                    if status != 200 or answer["status"] != "success" or len(answer["data"]["result"]) != 16:
                        raise RuntimeError(f"{name}: {status} {str(answer)[:300]}")
                    results[(name, hours)] = answer
                times.sort()
                print(f"{hours:>2} h, step {step} s: {name:<10} median {times[len(times) // 2]:8.1f} ms "
                      f"(min {times[0]:.1f}, max {times[-1]:.1f}, {args.repeat} runs)")
            why = differ(normalise(results[("prometheus", hours)], False), normalise(results[("citygate", hours)], False))
            print(f"   answers {'agree' if why is None else 'DIFFER: ' + why}")
        return 0
    finally:
        if gateway:
            gateway.stop()
        if prom:
            prom.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build/gateway/citygate"))
    sub = parser.add_subparsers(dest="mode")
    sub.add_parser("compare")
    lat = sub.add_parser("latency")
    lat.add_argument("--sensors", type=int, default=10000)
    lat.add_argument("--hours", type=int, default=24)
    lat.add_argument("--interval", type=int, default=300, help="seconds between a sensor's readings")
    lat.add_argument("--repeat", type=int, default=5)
    lat.add_argument("--query", default="avg by (district) (avg_over_time(pm25[5m]))")
    lat.add_argument("--shapes", default="1:60,24:300",
                     help="range queries as HOURS:STEP_SECONDS, comma separated")
    lat.add_argument("--rollup-min-buckets", type=int, default=30,
                     help="citygate's http.promql_rollup_min_buckets (0: PromQL reads raw points only)")
    args = parser.parse_args()
    if not shutil.which("prometheus"):
        print("SKIP: prometheus not installed (Debian package prometheus; deploy/install-deps.sh installs it)")
        return 77
    if args.mode == "latency":
        return run_latency(args)
    return run_compare(args)


if __name__ == "__main__":
    sys.exit(main())
