#!/usr/bin/env python3
"""citygate against VictoriaMetrics in one run, on the same InfluxDB line protocol bytes: the city
dataset built once in memory, then written into a fresh server per run (free loopback port, fresh
temporary data directory):

  citygate mqtt:  QoS 1 PUBLISHes of --mqtt-lines lines (MQTT 3.1.1, raw sockets, --window in
                  flight per connection) on city/<district>/lines, mapped by a topic template
                  and an [[ingest.format]] rule (line protocol)
  citygate http:  POST /write?db=city&precision=ns, --http-lines lines a request, keep-alive
  victoria:       POST /write?precision=ns (its InfluxDB endpoint), the same requests

Every run sends the same lines in the same order over --connections connections (districts are
split among them, so each series arrives in time order on one connection; an HTTP body is 100
consecutive MQTT payloads joined).

City dataset: --sensors sensors in 16 districts reporting every 10 s for --minutes, the hour
ending at the time the dataset is built; kinds air (pm25, pm10, no2), weather (temperature,
humidity), noise (level), traffic (count, an integer), water (level), power (kw); values with
1-2 decimals following daily cycles plus noise; timestamps jittered by +-20 ms; seeded.

Figures per run: points/s (wall, first send to last acknowledgement); points per server
CPU-second (utime + stime of /proc/<pid>/stat from the first send until the server is quiet
again: under 2 % of a core for --quiet-s and its data directory unchanged in size for
--disk-still-s, so the background work the ingest causes counts); bytes per point on disk (du
of the data directory: allocated blocks, and apparent size) while running once quiet, and "as a
user finds it": citygate has no flush endpoint (its admin API checkpoints and deletes), so after
a clean shutdown (SIGTERM drains and flushes every shard's head into chunks);
VictoriaMetrics after /internal/force_flush and, as its own figure, after /internal/force_merge
(then quiet again), and after SIGTERM as well (with and without the caches it saves at exit).
The CPU of those flushes is its own row. Both are checked to have stored every point: per
measurement, count and sum over the whole hour by PromQL (sum(count_over_time(m[w])),
sum(sum_over_time(m[w]))) against what was sent; a run that does not match exits 1.

  bench/city_lineproto_compare.py --build build [--sensors 10000 --minutes 60] [--json out.json]
Needs Debian's victoria-metrics (deploy/install-deps.sh)."""

import argparse
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqtt_compare import free_port, process_cpu_s  # noqa: E402

VICTORIA = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
TICK = os.sysconf("SC_CLK_TCK")
DISTRICTS = 16
STEP_MS = 10_000
JITTER_MS = 20
DAY_S = 86_400

# kind: (device id prefix, fields); a sensor's kind is KINDS[(sensor // DISTRICTS) % 6], so
# every district has every kind.
KINDS = [("air", "a", ("pm25", "pm10", "no2")), ("weather", "w", ("temperature", "humidity")),
         ("noise", "n", ("level",)), ("traffic", "t", ("count",)), ("water", "h", ("level",)),
         ("power", "p", ("kw",))]


def fail(message):
    raise SystemExit("city_lineproto_compare: " + message)


# --- the city dataset -----------------------------------------------------------------------

class Dataset:
    """The city dataset as line protocol, grouped for sending: per connection a list of
    (district, payload bytes, lines, points) in sending order. Expected points and value sums
    per measurement (as the servers name them: measurement_field) for the checks."""

    def __init__(self, sensors, minutes, seed, mqtt_lines, connections):
        rng = random.Random(seed)
        self.rounds = minutes * 6
        now_ms = int(time.time()) * 1000
        self.start_ms = now_ms - self.rounds * STEP_MS  # the last round is stamped 10 s ago
        self.end_ms = self.start_ms + (self.rounds - 1) * STEP_MS
        self.expected = {}  # measurement -> [points, sum of values]
        self.points = self.lines = self.bytes = 0

        # Per sensor: kind, district, device tag text and its own offsets (sites differ).
        layout = []
        for s in range(sensors):
            kind, prefix, fields = KINDS[(s // DISTRICTS) % len(KINDS)]
            district = s % DISTRICTS
            head = f"{kind},district=d{district:02d},device={prefix}-{s:06d} ".encode()
            layout.append((kind, district, head, rng.uniform(-1, 1), rng.uniform(0, 2 * math.pi)))
        for kind, _, fields in KINDS:
            for f in fields:
                self.expected[f"{kind}_{f}"] = [0, 0.0]

        pending = [[] for _ in range(DISTRICTS)]  # lines of the payload being filled
        payloads = [[] for _ in range(DISTRICTS)]  # (payload, lines, points)
        pending_points = [0] * DISTRICTS

        def close_payload(d):
            body = b"\n".join(pending[d])
            payloads[d].append((body, len(pending[d]), pending_points[d]))
            self.bytes += len(body) + 1  # and the newline that joins it to the next
            pending[d].clear()
            pending_points[d] = 0

        gauss, uniform, randint = rng.gauss, rng.uniform, rng.randint
        for r in range(self.rounds):
            base_ms = self.start_ms + r * STEP_MS
            day = 2 * math.pi * ((base_ms // 1000) % DAY_S) / DAY_S
            # Daily shapes, 0..1: sun (peaks 14:00), rush (peaks 8:00 and 18:00), night (3:00).
            sun = 0.5 + 0.5 * math.cos(day - 2 * math.pi * 14 / 24)
            rush = 0.5 + 0.25 * math.cos(2 * (day - 2 * math.pi * 8 / 24)) + 0.25 * math.cos(
                day - 2 * math.pi * 13 / 24)
            for kind, district, head, offset, phase in layout:
                if kind == "air":
                    pm25 = max(0.0, 8 + 14 * rush + 3 * offset + gauss(0, 1.5))
                    pm10 = pm25 * 1.6 + abs(gauss(0, 2))
                    no2 = max(0.0, 12 + 25 * rush + 4 * offset + gauss(0, 2))
                    values = ((f"pm25={pm25:.1f}", "pm25"), (f"pm10={pm10:.1f}", "pm10"),
                              (f"no2={no2:.2f}", "no2"))
                elif kind == "weather":
                    temperature = 9 + 8 * sun + offset + gauss(0, 0.2)
                    humidity = min(100.0, 85 - 30 * sun + 5 * offset + gauss(0, 1))
                    values = ((f"temperature={temperature:.2f}", "temperature"),
                              (f"humidity={humidity:.1f}", "humidity"))
                elif kind == "noise":
                    values = ((f"level={42 + 25 * rush + 3 * offset + gauss(0, 2):.1f}", "level"),)
                elif kind == "traffic":
                    count = max(0, round(4 + 30 * rush * (1.2 + offset) + gauss(0, 3)))
                    values = ((f"count={count}i", "count"),)
                elif kind == "water":
                    level = 2.4 + 0.3 * math.sin(day * 2 + phase) + 0.2 * offset + gauss(0, 0.01)
                    values = ((f"level={level:.2f}", "level"),)
                else:
                    kw = max(0.0, 30 + 40 * rush + 10 * offset + gauss(0, 3))
                    values = ((f"kw={kw:.2f}", "kw"),)
                stamp = (base_ms + randint(-JITTER_MS, JITTER_MS)) * 1_000_000
                line = head + ",".join(text for text, _ in values).encode() + f" {stamp}".encode()
                for text, field in values:
                    entry = self.expected[f"{kind}_{field}"]
                    entry[0] += 1
                    entry[1] += float(text.split("=", 1)[1].rstrip("i"))
                pending[district].append(line)
                pending_points[district] += len(values)
                self.points += len(values)
                self.lines += 1
                if len(pending[district]) == mqtt_lines:
                    close_payload(district)
        for d in range(DISTRICTS):
            if pending[d]:
                close_payload(d)

        # District d goes over connection d % connections, its payloads interleaved with the
        # connection's other districts' so time advances evenly.
        self.by_connection = []
        for k in range(connections):
            mine = [d for d in range(DISTRICTS) if d % connections == k]
            sequence = []
            for i in range(max((len(payloads[d]) for d in mine), default=0)):
                for d in mine:
                    if i < len(payloads[d]):
                        sequence.append((d,) + payloads[d][i])
            self.by_connection.append(sequence)

    def http_bodies(self, http_lines):
        """Per connection, bodies of consecutive payloads joined until http_lines lines:
        (body, points)."""
        out = []
        for sequence in self.by_connection:
            bodies, parts, lines, points = [], [], 0, 0
            for _, payload, n, p in sequence:
                parts.append(payload)
                lines, points = lines + n, points + p
                if lines >= http_lines:
                    bodies.append((b"\n".join(parts) + b"\n", points))
                    parts, lines, points = [], 0, 0
            if parts:
                bodies.append((b"\n".join(parts) + b"\n", points))
            out.append(bodies)
        return out


# --- clients ---------------------------------------------------------------------------------

def remaining_length(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def send_vector(sock, parts):
    """sendmsg until every byte of `parts` is out (the payload is not copied to be framed)."""
    views = [memoryview(p) for p in parts]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


def mqtt_publish_all(port, client_id, sequence, window, timeout):
    """CONNECT (3.1.1, clean session), every payload of `sequence` as a QoS 1 PUBLISH with up to
    `window` unacknowledged, each PUBACK matched to its packet id, DISCONNECT. Returns the points
    acknowledged."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", 60)  # level 4, clean, keep alive 60 s
    body = variable + struct.pack(">H", len(cid)) + cid
    sock.sendall(b"\x10" + remaining_length(len(body)) + body)
    connack = recv_exact(sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"CONNACK {connack.hex()}")
    inflight = {}  # packet id -> points
    next_id, i, acked, buffer = 1, 0, 0, b""
    while i < len(sequence) or inflight:
        while i < len(sequence) and len(inflight) < window:
            district, payload, _, points = sequence[i]
            topic = f"city/d{district:02d}/lines".encode()
            while next_id in inflight:
                next_id = next_id % 65535 + 1
            header = (b"\x32" + remaining_length(2 + len(topic) + 2 + len(payload)) +
                      struct.pack(">H", len(topic)) + topic + struct.pack(">H", next_id))
            send_vector(sock, [header, payload])
            inflight[next_id] = points
            next_id = next_id % 65535 + 1
            i += 1
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server with {len(inflight)} unacknowledged")
        buffer += chunk
        while len(buffer) >= 4:
            if buffer[0] != 0x40 or buffer[1] != 2:
                raise ConnectionError(f"expected PUBACK, got {buffer[:4].hex()}")
            packet_id = struct.unpack(">H", buffer[2:4])[0]
            if packet_id not in inflight:
                raise ConnectionError(f"PUBACK for unknown packet id {packet_id}")
            acked += inflight.pop(packet_id)
            buffer = buffer[4:]
    sock.sendall(b"\xe0\x00")
    sock.close()
    return acked


def http_post_all(port, path, bodies, timeout):
    """POSTs every body over one keep-alive connection; 429 and 5xx are retried (at most 50
    times, 10 ms apart). Returns (points acknowledged, retries, refusals [(status, text)])."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    acked, retries, refused = 0, 0, []
    for body, points in bodies:
        for _ in range(50):
            conn.request("POST", path, body, {"Content-Type": "text/plain; charset=utf-8"})
            reply = conn.getresponse()
            text = reply.read()
            if reply.status in (200, 204):
                acked += points
                break
            if reply.status == 429 or reply.status >= 500:
                retries += 1
                time.sleep(0.01)
                continue
            refused.append((reply.status, text[:200]))
            break
        else:
            refused.append((reply.status, b"still refused after 50 tries"))
    conn.close()
    return acked, retries, refused


def run_senders(work, count):
    """Runs work(k) for k in range(count) on threads; (wall s, results, first error)."""
    results, errors = [None] * count, []

    def one(k):
        try:
            results[k] = work(k)
        except Exception as e:  # noqa: BLE001 (reported, and the run counts as failed)
            errors.append(f"connection {k}: {e!r}")

    threads = [threading.Thread(target=one, args=(k,)) for k in range(count)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started, results, errors


# --- servers ---------------------------------------------------------------------------------

def http_get(url, timeout=60, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url, deadline_s):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if http_get(url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    fail("not ready: " + url)


class Server:
    """A server process and its data directory; stop() reaps it with wait4 for its whole CPU."""

    def __init__(self, name, command, data, log):
        self.name, self.data, self.log = name, data, log
        self.proc = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        self.exit_cpu = None

    def cpu(self):
        return process_cpu_s(self.proc.pid)

    def stop(self, timeout=60):
        """SIGTERM, SIGKILL after `timeout` s; the process' CPU over its whole life (rusage)."""
        if self.proc.returncode is not None:
            return self.exit_cpu
        self.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                self.proc.kill()
                pid, status, usage = os.wait4(self.proc.pid, 0)
                print(f"  {self.name}: killed after {timeout} s without exiting")
                break
            time.sleep(0.05)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.exit_cpu = usage.ru_utime + usage.ru_stime
        return self.exit_cpu

    def disk(self, exclude=None):
        """(allocated, apparent) bytes of the data directory, as du reports them, without the
        subdirectories named `exclude` when given."""
        def du(flag):
            out = subprocess.run(["du", "-s", flag, self.data] +
                                 ([f"--exclude={exclude}"] if exclude else []),
                                 capture_output=True, text=True, timeout=60, check=True).stdout
            return int(out.split()[0])
        return du("-B1"), du("-b")


def start_citygate(args, work):
    data = os.path.join(work, "data")
    config = os.path.join(work, "citygate.toml")
    with open(config, "w") as f:  # the topic's district is the line's; no other topic tag
        f.write('[ingest]\ntopic_templates = ["city/{district}/lines"]\n'
                "max_new_series_per_minute = 10000000\nmax_series_per_identity = 10000000\n"
                '[[ingest.format]]\ntopic = "city/+/lines"\nformat = "line"\n')
    log = os.path.join(work, "citygate.log")
    server = Server("citygate", [
        args.citygate, "--config", config, "--mqtt-listen", "127.0.0.1", "--http-listen",
        "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--data-dir", data], data, log)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if server.proc.poll() is not None:
            fail("citygate exited: " + open(log).read()[-2000:])
        ports = {}
        with open(log) as f:
            for line in f:
                for proto in ("mqtt", "http"):
                    marker = f"{proto} listening on 127.0.0.1:"
                    if marker in line:
                        ports[proto] = int(line.split(marker)[1].split()[0])
        if len(ports) == 2:
            server.mqtt_port, server.port = ports["mqtt"], ports["http"]
            server.url = f"http://127.0.0.1:{server.port}"
            wait_http(server.url + "/readyz", 60)
            return server
        time.sleep(0.05)
    server.stop(5)
    fail("citygate did not start: " + open(log).read()[-2000:])


def start_victoria(work):
    data = os.path.join(work, "data")
    port = free_port()
    server = Server("victoria-metrics", [
        VICTORIA, f"-httpListenAddr=127.0.0.1:{port}", "-storageDataPath=" + data,
        "-retentionPeriod=100y", "-search.latencyOffset=1s", "-search.disableCache"],
        data, os.path.join(work, "victoria.log"))
    server.port, server.url = port, f"http://127.0.0.1:{port}"
    try:
        wait_http(server.url + "/health", 60)
    except SystemExit:
        server.stop(5)
        raise
    return server


def machine_cpu_s():
    """(busy CPU seconds of the whole machine, of this process) now: /proc/stat's user, nice,
    system, irq, softirq and steal, and os.times() (the client's threads)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    me = os.times()
    return busy / TICK, me.user + me.system


def others_cpu_s(machine0, server_cpu):
    """CPU seconds the machine spent since machine0 on neither the server nor this client: other
    work sharing the cores, which disturbs the figures (on a quiet machine a few tenths)."""
    busy, me = machine_cpu_s()
    return max(0.0, busy - machine0[0] - (me - machine0[1]) - server_cpu)


def settle(server, args):
    """Waits until the server has used under 2 % of a core for --quiet-s and its data directory
    has not changed size for --disk-still-s (VictoriaMetrics writes its parts on timers, seconds
    after the CPU went quiet), at most --settle-s s. Returns (its CPU seconds then, the s waited,
    whether it settled, du then)."""
    started = time.monotonic()
    samples = [(started, server.cpu())]
    disk, disk_since, disk_at = server.disk(), started, started
    while time.monotonic() - started < args.settle_s:
        time.sleep(0.25)
        now = (time.monotonic(), server.cpu())
        samples.append(now)
        if now[0] - disk_at >= 1.0:
            disk_at, latest = now[0], server.disk()
            if latest != disk:
                disk, disk_since = latest, now[0]
        old = [s for s in samples if s[0] <= now[0] - args.quiet_s]
        quiet = old and now[1] - old[-1][1] <= 0.02 * (now[0] - old[-1][0]) + 1.0 / TICK
        if quiet and now[0] - disk_since >= args.disk_still_s:
            return now[1], now[0] - started, True, disk
    return samples[-1][1], samples[-1][0] - started, False, disk


def promql_value(server, query, at_s):
    status, body = http_get(server.url + "/api/v1/query?" + urllib.parse.urlencode(
        {"query": query, "time": f"{at_s:.3f}"}), timeout=120)
    if status != 200:
        fail(f"{server.name}: {query}: {status} {body[:300]!r}")
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def check_counts(server, dataset):
    """Per measurement, points and the sum of values the server holds over the whole hour
    against what was sent. Returns (points found, [mismatch text])."""
    at_s = dataset.end_ms / 1000 + 1
    window_s = int(at_s - dataset.start_ms / 1000) + 60
    found, problems = 0, []
    for name, (points, total) in sorted(dataset.expected.items()):
        if not points:
            continue
        count = promql_value(server, f"sum(count_over_time({name}[{window_s}s]))", at_s)
        value_sum = promql_value(server, f"sum(sum_over_time({name}[{window_s}s]))", at_s)
        found += int(count)
        if int(count) != points:
            problems.append(f"{name}: {int(count)} points of {points}")
        if not math.isclose(value_sum, total, rel_tol=1e-9, abs_tol=1e-6):
            problems.append(f"{name}: sum {value_sum!r}, sent {total!r}")
    return found, problems


def metric_lines(server, prefixes):
    """The /metrics samples whose names start with one of `prefixes`, non-zero ones only."""
    status, body = http_get(server.url + "/metrics")
    if status != 200:
        return []
    out = []
    for line in body.decode().splitlines():
        if line.startswith(prefixes) and not line.endswith(" 0"):
            out.append(line)
    return out


def log_problems(path, words):
    with open(path, errors="replace") as f:
        return [line.rstrip() for line in f if any(w in line for w in words)]


# --- runs ------------------------------------------------------------------------------------

def run_citygate(args, dataset, bodies, work, transport):
    server = start_citygate(args, work)
    try:
        cpu0, machine0 = server.cpu(), machine_cpu_s()
        if transport == "mqtt":
            wall, results, errors = run_senders(lambda k: mqtt_publish_all(
                server.mqtt_port, f"city-line-{k}", dataset.by_connection[k], args.window,
                args.timeout), args.connections)
            acked, retries, refused = sum(r or 0 for r in results), 0, []
        else:
            wall, results, errors = run_senders(lambda k: http_post_all(
                server.port, "/write?db=city&precision=ns", bodies[k], args.timeout),
                args.connections)
            acked, retries, refused = tally(results)
        cpu_quiet, waited, quiet, live = settle(server, args)
        others = others_cpu_s(machine0, cpu_quiet - cpu0)
        found, problems = check_counts(server, dataset)
        counters = metric_lines(server, (
            "citygate_errors_total", "citygate_storage_points_rejected", "citygate_series_refused",
            "citygate_http_write_samples_skipped"))
        cpu_checked = server.cpu()
    finally:
        exit_cpu = server.stop()
    flushed = server.disk()
    return {
        "wall_s": wall, "acked": acked, "retries": retries, "refused": refused, "errors": errors,
        "cpu_s": cpu_quiet - cpu0, "quiet_wait_s": waited, "went_quiet": quiet,
        "others_cpu_s": others,
        "disk_quiet": live, "disk_found": flushed, "disk_merged": flushed,
        "disk_stopped": flushed, "flush_cpu_s": exit_cpu - cpu_checked, "stored": found,
        "problems": problems, "counters": counters,
        "log": log_problems(server.log, (" warn ", " error ")),
    }


def run_victoria(args, dataset, bodies, work):
    server = start_victoria(work)
    try:
        cpu0, machine0 = server.cpu(), machine_cpu_s()
        wall, results, errors = run_senders(lambda k: http_post_all(
            server.port, "/write?precision=ns", bodies[k], args.timeout), args.connections)
        acked, retries, refused = tally(results)
        cpu_quiet, waited, quiet, live = settle(server, args)
        others = others_cpu_s(machine0, cpu_quiet - cpu0)
        before = server.cpu()
        status, body = http_get(server.url + "/internal/force_flush", timeout=300)
        if status != 200:
            fail(f"force_flush: {status} {body[:200]!r}")
        flush_cpu, _, _, flushed = settle(server, args)
        flush_cpu -= before
        found, problems = check_counts(server, dataset)
        counters = metric_lines(server, ("vm_rows_invalid_total", "vm_rows_ignored_total",
                                         "vm_too_long_lines_skipped_total",
                                         "vm_rows_inserted_total"))
        before = server.cpu()
        status, body = http_get(server.url + "/internal/force_merge", timeout=300)
        if status != 200:
            fail(f"force_merge: {status} {body[:200]!r}")
        merge_end = time.monotonic() + args.settle_s  # the merge runs in the background
        while time.monotonic() < merge_end and any(
                line.startswith("vm_active_force_merges ") and not line.endswith(" 0")
                for line in http_get(server.url + "/metrics")[1].decode().splitlines()):
            time.sleep(0.25)
        merge_cpu, _, _, merged = settle(server, args)
        merge_cpu -= before
    finally:
        server.stop()
    stopped = server.disk()
    stopped_store = server.disk(exclude="cache")  # VictoriaMetrics saves its caches at exit
    return {
        "wall_s": wall, "acked": acked, "retries": retries, "refused": refused, "errors": errors,
        "cpu_s": cpu_quiet - cpu0, "quiet_wait_s": waited, "went_quiet": quiet,
        "others_cpu_s": others,
        "disk_quiet": live, "disk_found": flushed, "disk_merged": merged, "disk_stopped": stopped,
        "disk_stopped_store": stopped_store,
        "flush_cpu_s": flush_cpu, "merge_cpu_s": merge_cpu,
        "stored": found, "problems": problems, "counters": counters,
        "log": log_problems(server.log, ("\twarn\t", "\terror\t", "\tpanic\t", "\tfatal\t")),
    }


def tally(results):
    acked = sum(r[0] for r in results if r)
    retries = sum(r[1] for r in results if r)
    refused = [x for r in results if r for x in r[2]]
    return acked, retries, refused


# Rows whose citygate/vm ratio means something (not the waits and the flush steps' own CPU).
RATIO_ROWS = {"points/s (wall)", "points per server CPU-s", "server CPU s, first send..quiet",
              "disk bytes/point, running, quiet after ingest", "  apparent bytes/point, running",
              "disk bytes/point as found (cg: SIGTERM, vm: flush)",
              "disk bytes/point after vm's merge (cg: SIGTERM)",
              "disk bytes/point after SIGTERM (vm: merged first)",
              "  apparent bytes/point, after SIGTERM",
              "  after SIGTERM without vm's cache/ (saved at exit)",
              "points per CPU-s incl. flush and merge",
              "points stored (counted back)"}


def print_table(dataset, runs):
    points = dataset.points
    names = [n for n in ("citygate mqtt", "citygate http", "victoria") if n in runs]
    columns = names + [f"{n.split()[1]}/vm" for n in names[:-1] if "victoria" in runs]

    def figures(r):
        out = {
            "points/s (wall)": points / r["wall_s"],
            "points per server CPU-s": points / r["cpu_s"] if r["cpu_s"] > 0 else float("inf"),
            "server CPU s, first send..quiet": r["cpu_s"],
            "  s waited for quiet after the last ack": r["quiet_wait_s"],
            "  other processes' CPU s meanwhile (disturbance)": r["others_cpu_s"],
            "disk bytes/point, running, quiet after ingest": r["disk_quiet"][0] / points,
            "  apparent bytes/point, running": r["disk_quiet"][1] / points,
            "disk bytes/point as found (cg: SIGTERM, vm: flush)": r["disk_found"][0] / points,
            "disk bytes/point after vm's merge (cg: SIGTERM)": r["disk_merged"][0] / points,
            "disk bytes/point after SIGTERM (vm: merged first)": r["disk_stopped"][0] / points,
            "  apparent bytes/point, after SIGTERM": r["disk_stopped"][1] / points,
            "  after SIGTERM without vm's cache/ (saved at exit)":
                r.get("disk_stopped_store", r["disk_stopped"])[0] / points,
            "CPU s of the flush (cg: shutdown, vm: force_flush)": r["flush_cpu_s"],
            "CPU s of vm's force_merge": r.get("merge_cpu_s", 0.0),
            "points per CPU-s incl. flush and merge":
                points / (r["cpu_s"] + r["flush_cpu_s"] + r.get("merge_cpu_s", 0.0)),
            "points stored (counted back)": r["stored"],
        }
        return out

    table = {n: figures(runs[n]) for n in names}
    rows = list(table[names[0]])
    width = max(len(r) for r in rows) + 1
    print(f"{'':{width}s}" + "".join(f"{c:>15s}" for c in columns))
    for row in rows:
        cells = [table[n][row] for n in names]
        if "victoria" in runs:
            vm = table["victoria"][row]
            cells += [table[n][row] / vm if vm and row in RATIO_ROWS else None
                      for n in names[:-1]]
        text = "".join(f"{'':>15s}" if c is None else f"{c:15d}" if isinstance(c, int) else
                       f"{c:15.0f}" if abs(c) >= 1000 else f"{c:15.2f}" if abs(c) >= 10 else
                       f"{c:15.3f}" for c in cells)
        print(f"{row:{width}s}{text}")
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default="build", help="build directory")
    parser.add_argument("--citygate", help="default: BUILD/gateway/citygate")
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=60, help="of readings, every 10 s")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--window", type=int, default=64, help="MQTT PUBLISHes in flight")
    parser.add_argument("--mqtt-lines", type=int, default=100, help="lines per PUBLISH")
    parser.add_argument("--http-lines", type=int, default=10_000, help="lines per request")
    parser.add_argument("--only", help="runs, comma-separated: mqtt,http,victoria")
    parser.add_argument("--quiet-s", type=float, default=2.0, help="idle time that means quiet")
    parser.add_argument("--disk-still-s", type=float, default=5.0,
                        help="time the data directory's size must not change to mean quiet")
    parser.add_argument("--settle-s", type=float, default=120.0, help="longest wait for quiet")
    parser.add_argument("--timeout", type=float, default=120.0, help="socket timeout, s")
    parser.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()
    args.citygate = args.citygate or os.path.join(args.build, "gateway", "citygate")
    only = set((args.only or "mqtt,http,victoria").split(","))
    if only - {"mqtt", "http", "victoria"}:
        fail("--only takes mqtt, http, victoria")
    if only & {"mqtt", "http"} and not os.access(args.citygate, os.X_OK):
        fail(f"{args.citygate} not found")
    if "victoria" in only and not os.access(VICTORIA, os.X_OK):
        fail("victoria-metrics not installed (Debian package victoria-metrics)")
    if args.connections < 1 or args.connections > DISTRICTS:
        fail(f"--connections must be 1..{DISTRICTS}")

    started = time.monotonic()
    dataset = Dataset(args.sensors, args.minutes, args.seed, args.mqtt_lines, args.connections)
    bodies = dataset.http_bodies(args.http_lines)
    requests = sum(len(b) for b in bodies)
    print(f"city dataset: {args.sensors} sensors x {dataset.rounds} rounds (10 s, {args.minutes} "
          f"min ending now), {DISTRICTS} districts, {dataset.lines} lines, {dataset.points} "
          f"points, {dataset.bytes} bytes ({dataset.bytes / dataset.points:.1f} B/point as line "
          f"protocol), built in {time.monotonic() - started:.1f} s")
    print(f"{args.connections} connections; mqtt: {sum(len(s) for s in dataset.by_connection)} "
          f"QoS 1 PUBLISHes of {args.mqtt_lines} lines, window {args.window}; http: {requests} "
          f"requests of {args.http_lines} lines; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")

    runs = {}
    work = tempfile.mkdtemp(prefix="city-lineproto.")
    try:
        for name, key in (("citygate mqtt", "mqtt"), ("citygate http", "http"),
                          ("victoria", "victoria")):
            if key not in only:
                continue
            directory = os.path.join(work, key)
            os.makedirs(directory)
            if key == "victoria":
                runs[name] = run_victoria(args, dataset, bodies, directory)
            else:
                runs[name] = run_citygate(args, dataset, bodies, directory, key)
            r = runs[name]
            print(f"  {name}: {r['acked']} of {dataset.points} points acknowledged in "
                  f"{r['wall_s']:.1f} s, quiet {r['quiet_wait_s']:.1f} s later"
                  + ("" if r["went_quiet"] else " (never quiet: stopped waiting)")
                  + (f", {r['retries']} retries" if r["retries"] else ""))
            for what in r["errors"] + [f"refused: {s} {t!r}" for s, t in r["refused"][:3]] + \
                    r["problems"]:
                print(f"    {what}")
            for line in r["counters"]:
                print(f"    {line}")
            for line in r["log"][:5]:
                print(f"    log: {line[:200]}")
            if len(r["log"]) > 5:
                print(f"    log: ... {len(r['log']) - 5} more warnings or errors")
    finally:
        if args.keep:
            print(f"data directories and logs kept under {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    table = print_table(dataset, runs)
    failed = [n for n, r in runs.items()
              if r["problems"] or r["errors"] or r["refused"] or r["stored"] != dataset.points]
    if failed:
        print("NOT every point stored: " + ", ".join(failed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": {"sensors": args.sensors, "minutes": args.minutes,
                                   "lines": dataset.lines, "points": dataset.points,
                                   "bytes": dataset.bytes, "seed": args.seed},
                       "runs": runs, "figures": table}, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
