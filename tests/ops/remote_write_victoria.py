#!/usr/bin/env python3
"""citygate's remote-write sender ([export.remote_write]) into a real VictoriaMetrics, on loopback.

1. Sensors publish QoS 1 readings (mosquitto_pub, 3 fields on each of 4 devices); citygate sends
   them on to VictoriaMetrics.
2. VictoriaMetrics is stopped for OUTAGE seconds (default 30; env CITYGATE_RW_OUTAGE_S) while the
   sensors keep publishing: citygate retries (citygate_remote_write_retries_total) and keeps its
   backlog in storage, not memory; VictoriaMetrics comes back on the same port and data directory.
3. citygate is restarted (SIGTERM, start on the same data directory) and more readings follow:
   it goes on from its durable cursor.
4. Every series has exactly the samples citygate stores, in VictoriaMetrics too: per series the
   same timestamps and values (so the same count and sum), none twice, none missing.
5. A figure: a backlog of BENCH samples (default 200000; env CITYGATE_RW_BENCH_SAMPLES, 0: off)
   written into citygate over its own remote-write endpoint, then timed as the sender drains it
   into VictoriaMetrics (samples/s).

Usage: remote_write_victoria.py CITYGATE_BINARY. Exits 77 (skipped) only when victoria-metrics is
not installed (Debian package victoria-metrics; deploy/install-deps.sh)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import citygate_process  # noqa: E402
from citygate_process import fail, free_port  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import snappy  # noqa: F401  (the bench's writes into citygate)
except ImportError:
    # Debian's python3-snappy lives in the system Python; another python3 first in PATH
    # (pyenv, a venv) does not see it.
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != \
            os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

VM = shutil.which("victoria-metrics") or ("/usr/bin/victoria-metrics"
                                          if os.path.exists("/usr/bin/victoria-metrics") else None)
if not VM:
    print("SKIP: victoria-metrics not installed (Debian package victoria-metrics)")
    sys.exit(77)
MOSQUITTO_PUB = shutil.which("mosquitto_pub")

OUTAGE_S = float(os.environ.get("CITYGATE_RW_OUTAGE_S", "30"))
BENCH_SAMPLES = int(os.environ.get("CITYGATE_RW_BENCH_SAMPLES", "200000"))
DEADLINE = time.monotonic() + 60 + OUTAGE_S + (60 if BENCH_SAMPLES else 0)
citygate_process.DEADLINE = DEADLINE  # the shared Citygate waits as long as this test
RAW = 'source="raw"'
DEVICES = 4
FIELDS = ("pm25", "pm10", "no2")
RATE = 50  # messages per second per device


def wait_until(what, check, interval=0.2, deadline=None):
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError, IndexError, AssertionError):
            pass
        if time.monotonic() > (deadline or DEADLINE):
            fail("timed out waiting for " + what)
        time.sleep(interval)


def request(url, body=None, headers=None, method=None, timeout=20):
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Victoria:
    def __init__(self, work, flags=()):
        self.port = free_port()
        self.data = os.path.join(work, "vm")
        self.flags = list(flags)
        self.scheme = "https" if "-tls" in self.flags else "http"
        self.url = "%s://127.0.0.1:%d" % (self.scheme, self.port)
        self.starts = 0
        self.proc = None
        self.start()

    def start(self):
        self.starts += 1
        self.proc = subprocess.Popen(
            [VM, "-httpListenAddr=127.0.0.1:%d" % self.port, "-storageDataPath=" + self.data,
             "-retentionPeriod=1y", "-loggerLevel=WARN"] + self.flags,
            stdout=open(self.data + "-%d.log" % self.starts, "w"), stderr=subprocess.STDOUT)
        wait_until("VictoriaMetrics to answer", lambda: self.request("/health")[0] == 200)

    def request(self, path, timeout=20):
        if self.scheme == "https":
            import ssl
            context = ssl._create_unverified_context()  # the test's own check, on loopback
            try:
                with urllib.request.urlopen(self.url + path, timeout=timeout,
                                            context=context) as reply:
                    return reply.status, reply.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()
        return request(self.url + path, timeout=timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def series(self, match):
        """{series key as citygate writes it: sorted [(ts, value)]} of raw samples."""
        self.request("/internal/force_flush")  # newly written rows become searchable
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        status, body = self.request("/api/v1/export?" + query, timeout=60)
        if status != 200:
            fail("VictoriaMetrics export: %d %s" % (status, body[:300]))
        out = {}
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            metric = dict(row["metric"])
            name = metric.pop("__name__")
            key = name + "{" + ",".join('%s="%s"' % (k, metric[k]) for k in sorted(metric)) + "}"
            samples = sorted(zip(row["timestamps"], row["values"]))
            out.setdefault(key, []).extend(samples)
        return {k: sorted(v) for k, v in out.items()}


class Citygate(citygate_process.Citygate):
    """The shared one, with this test's metric sums and series reads."""

    def metric(self, name, labels=""):
        """Sum of the samples of `name` whose label text contains `labels`."""
        status, body = request(self.url + "/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if (line.startswith(name + " ") or line.startswith(name + "{")) and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def series(self, selector):
        end_ms = int(time.time() * 1000) + 600_000
        query = urllib.parse.urlencode({"series": selector, "start": 0, "end": end_ms})
        status, body = request(self.url + "/api/v1/query_range?" + query, timeout=60)
        if status != 200:
            fail("citygate query_range %s: %d %s" % (selector, status, body[:300]))
        result = json.loads(body)["data"]["result"]
        return {r["series"]: sorted((int(t), float(v)) for t, v in r["values"]) for r in result}


class Sensors:
    """DEVICES mosquitto_pub processes (-l: one QoS 1 PUBLISH per stdin line), fed at RATE."""

    def __init__(self, gate, tag):
        self.procs = []
        for d in range(DEVICES):
            self.procs.append(subprocess.Popen(
                [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(gate.mqtt_port), "-q", "1",
                 "-i", "rw-%s-%d" % (tag, d), "-t", "city/x/air/d-%d" % d, "-l"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        self.published = 0
        self.running = True
        self.value = 0
        self.thread = threading.Thread(target=self.feed)
        self.thread.start()

    def feed(self):
        last_ts = 0
        while self.running:
            ts = max(int(time.time() * 1000), last_ts + 1)
            last_ts = ts
            for proc in self.procs:
                self.value += 1
                fields = ", ".join('"%s": %d.5' % (f, self.value + i) for i, f in enumerate(FIELDS))
                proc.stdin.write(('{"ts": %d, %s}\n' % (ts, fields)).encode())
                proc.stdin.flush()
                self.published += len(FIELDS)
            time.sleep(1.0 / RATE)

    def stop(self):
        self.running = False
        self.thread.join()
        for proc in self.procs:
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def compare(gate, vm, what):
    """Waits until VictoriaMetrics holds exactly what citygate stores; returns the sample count."""
    mine = gate.series('{__name__=~"pm25|pm10|no2"}')
    expected = sum(len(v) for v in mine.values())

    def same():
        theirs = vm.series('{__name__=~"pm25|pm10|no2"}')
        got = sum(len(v) for v in theirs.values())
        if got != expected:
            raise AssertionError("VictoriaMetrics has %d of %d samples" % (got, expected))
        return theirs
    try:
        theirs = wait_until("VictoriaMetrics to hold what citygate stores (" + what + ")", same,
                            interval=0.5)
    except AssertionError:
        theirs = vm.series('{__name__=~"pm25|pm10|no2"}')
        for key in sorted(set(mine) | set(theirs)):
            a, b = mine.get(key, []), theirs.get(key, [])
            if a != b:
                sa, sb = set(a), set(b)
                dup = len(b) - len(sb)
                print("  %s: citygate %d, VictoriaMetrics %d (missing %d, extra %d, duplicates %d)"
                      % (key, len(a), len(b), len(sa - sb), len(sb - sa), dup))
        raise
    if set(mine) != set(theirs):
        fail("series differ: %s vs %s" % (sorted(mine), sorted(theirs)))
    for key, samples in mine.items():
        got = theirs[key]
        if got != samples:
            fail("%s: samples differ (%d in citygate, %d in VictoriaMetrics)"
                 % (key, len(samples), len(got)))
        if len(set(t for t, _ in got)) != len(got):
            fail("%s: a timestamp twice in VictoriaMetrics" % key)
    sums = {k: round(sum(v for _, v in s), 3) for k, s in mine.items()}
    print("ok: %s: %d series, %d samples, per series the same timestamps, values, count and sum "
          "(e.g. %s count %d sum %s)" % (what, len(mine), expected, next(iter(mine)),
                                         len(next(iter(mine.values()))), sums[next(iter(mine))]))
    return expected


def check_rollups(gate, vm):
    """Each 1-minute bucket VictoriaMetrics got (name:count_1m, :min_1m, :max_1m, :avg_1m at the
    minute's start) agrees with citygate's raw samples of that minute."""
    mine = gate.series('{__name__=~"pm25|pm10|no2"}')
    theirs = vm.series('{__name__=~"(pm25|pm10|no2):(count|min|max|avg)_1m"}')
    buckets = 0
    for key, samples in mine.items():
        name, labels = key.split("{", 1)
        per_minute = {}
        for ts, value in samples:
            per_minute.setdefault(ts // 60000 * 60000, []).append(value)
        for function in ("count", "min", "max", "avg"):
            for minute, value in theirs.get("%s:%s_1m{%s" % (name, function, labels), []):
                values = per_minute.get(minute, [])
                want = {"count": len(values), "min": min(values, default=None),
                        "max": max(values, default=None),
                        "avg": sum(values) / len(values) if values else None}[function]
                if want is None or abs(want - value) > 1e-9 * max(1, abs(want)):
                    fail("%s:%s_1m at %d: VictoriaMetrics %s, citygate's raw samples %s"
                         % (key, function, minute, value, want))
                buckets += 1
    print("ok: %d rollup buckets in VictoriaMetrics (source = \"both\") agree with the raw "
          "samples" % buckets)


def check_https(binary, work):
    """https: a VictoriaMetrics serving TLS with a certificate for 127.0.0.1; citygate verifies it
    against tls_ca_file, and refuses it (retrying, sending nothing) against the system's CAs."""
    openssl = shutil.which("openssl")
    if not openssl:
        print("https check skipped: openssl not installed")
        return
    tls = os.path.join(work, "tls")
    os.makedirs(tls)
    key, cert = os.path.join(tls, "key.pem"), os.path.join(tls, "cert.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    vm = Victoria(tls, ["-tls", "-tlsCertFile=" + cert, "-tlsKeyFile=" + key])
    try:
        https = EXPORT % (vm.url, "raw")
        os.makedirs(os.path.join(tls, "trusted"))
        gate = Citygate(binary, os.path.join(tls, "trusted"),
                        https + 'tls_ca_file = "%s"\n' % cert)
        os.makedirs(os.path.join(tls, "untrusted"))
        untrusted = Citygate(binary, os.path.join(tls, "untrusted"), https)
        try:
            for g in (gate, untrusted):
                ts = int(time.time() * 1000)
                for i in range(5):
                    subprocess.run([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(g.mqtt_port),
                                    "-q", "1", "-t", "city/tls/air/t-1",
                                    "-m", '{"ts": %d, "pm25": %d}' % (ts + i, i)], check=True)
            wait_until("samples over https", lambda: gate.metric(
                "citygate_remote_write_samples_sent_total", RAW) == 5)
            wait_until("the untrusted sender to retry",
                       lambda: untrusted.metric("citygate_remote_write_retries_total") >= 2)
            if untrusted.metric("citygate_remote_write_samples_sent_total", RAW) != 0:
                fail("a sender that cannot verify the receiver's certificate sent samples")
        finally:
            gate.stop()
            untrusted.stop()
        got = vm.series('{__name__="pm25",district="tls"}')
        n = sum(len(v) for v in got.values())
        if n != 5:
            fail("https: VictoriaMetrics holds %d of 5 samples" % n)
        print("ok: https with tls_ca_file: 5 samples; without it the certificate is refused "
              "(retried, nothing sent)")
    finally:
        vm.stop()


def bench(binary, work, vm):
    """Drain rate of a stored backlog into VictoriaMetrics: a citygate without the export stores
    it, then restarts with the export on and no cursor yet, so it sends all it holds."""
    import remote_proto
    try:
        import snappy
    except ImportError:
        print("bench skipped: python3-snappy not installed")
        return
    plain = """
[ingest]
max_new_series_per_minute = 1000000
[http]
max_write_body = 16777216
"""
    os.makedirs(os.path.join(work, "bench"))
    gate = Citygate(binary, os.path.join(work, "bench"), plain)
    try:
        now = int(time.time() * 1000)
        series_n = 1000
        per_series = BENCH_SAMPLES // series_n
        for first in range(0, series_n, 50):
            batch = []
            for s in range(first, first + 50):
                labels = {"__name__": "bench_value", "device": "b-%04d" % s, "district": "bench"}
                samples = [(now - 600_000 + i * (500_000 // per_series), float(i))
                           for i in range(per_series)]
                batch.append((labels, samples))
            body = snappy.compress(remote_proto.encode_write_request(batch))
            status, reply = request(gate.url + "/api/v1/write", body, {
                "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                "X-Prometheus-Remote-Write-Version": "0.1.0"})
            if status != 204:
                fail("bench write into citygate: %d %s" % (status, reply[:200]))
        gate.stop()
        total = series_n * per_series
        gate.toml = plain + EXPORT % (vm.url, "raw")
        started = time.monotonic()
        gate.start()
        wait_until("the sender to drain the bench backlog",
                   lambda: gate.metric("citygate_remote_write_samples_sent_total", RAW) >= total,
                   interval=0.05)
        elapsed = time.monotonic() - started
    finally:
        gate.stop()
    print("figure: remote-write sender drained %d stored samples (%d series) into "
          "VictoriaMetrics in %.2f s from citygate's start: %.0f samples/s "
          "(batch_samples 10000, 2 shards)" % (total, series_n, elapsed, total / elapsed))
    got = vm.series('{__name__="bench_value"}')
    n = sum(len(v) for v in got.values())
    if n != total:
        fail("bench: VictoriaMetrics holds %d of %d samples" % (n, total))


EXPORT = """
[export.remote_write]
url = "%s/api/v1/write"
select = ['{__name__=~".+"}']
source = "%s"
batch_samples = 10000
batch_age = "500ms"
settle_delay = "2s"
min_backoff = "200ms"
max_backoff = "2s"
timeout = "5s"
max_backlog = "1h"
"""


def main():
    if not MOSQUITTO_PUB:
        fail("mosquitto_pub not installed (Debian package mosquitto-clients)")
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="citygate-rw.")
    vm = gate = sensors = None
    ok = False
    try:
        vm = Victoria(work)
        gate = Citygate(binary, work, "[ingest]\nmax_new_series_per_minute = 1000000\n" +
                        EXPORT % (vm.url, "both"))

        # 1. Readings flow through to VictoriaMetrics.
        sensors = Sensors(gate, "a")
        wait_until("samples to reach VictoriaMetrics",
                   lambda: gate.metric("citygate_remote_write_samples_sent_total", RAW) > 100)
        print("ok: readings reach VictoriaMetrics")

        # 2. VictoriaMetrics down for OUTAGE_S while readings keep coming.
        vm.stop()
        retries_before = gate.metric("citygate_remote_write_retries_total")
        time.sleep(OUTAGE_S)
        retries = gate.metric("citygate_remote_write_retries_total") - retries_before
        lag = gate.metric("citygate_remote_write_lag_seconds", RAW)
        if retries < 1:
            fail("no retries during a %.0f s outage" % OUTAGE_S)
        if lag < OUTAGE_S - 5:
            fail("lag %.1f s after a %.0f s outage" % (lag, OUTAGE_S))
        print("ok: %.0f s outage: %d retries, lag %.1f s" % (OUTAGE_S, retries, lag))
        vm.start()
        back = time.monotonic()
        wait_until("the sender to catch up after the outage",
                   lambda: gate.metric("citygate_remote_write_lag_seconds", RAW) < 5, interval=0.1)
        print("ok: caught up %.1f s after VictoriaMetrics came back" % (time.monotonic() - back))
        time.sleep(2)
        sensors.stop()
        first = sensors.published
        compare(gate, vm, "after a %.0f s outage" % OUTAGE_S)

        # 3. A citygate restart: the cursor is kept.
        sent_before = gate.metric("citygate_remote_write_samples_sent_total", RAW)
        if gate.stop() != 0:
            fail("citygate did not stop cleanly")
        cursor = open(os.path.join(work, "data", "export", "remote_write.cursor")).read()
        if "raw_ms" not in cursor:
            fail("cursor file: %r" % cursor)
        gate.start()
        sensors = Sensors(gate, "b")
        time.sleep(3)
        sensors.stop()
        n = compare(gate, vm, "after a citygate restart")
        sent_after = gate.metric("citygate_remote_write_samples_sent_total", RAW)
        print("ok: the restarted citygate sent %d samples (counted from its start), %d before; "
              "%d readings x fields published in all" % (sent_after, sent_before,
                                                         first + sensors.published))
        if sent_before + sent_after != n:
            fail("sent %d + %d samples for %d stored: a restart resent or skipped some"
                 % (sent_before, sent_after, n))
        dropped = gate.metric("citygate_remote_write_samples_dropped_total")
        if dropped:
            fail("%d samples dropped" % dropped)

        check_rollups(gate, vm)
        check_https(binary, work)

        if BENCH_SAMPLES:
            gate.stop()
            bench(binary, work, vm)
        ok = True
    finally:
        if sensors:
            sensors.running = False
        if gate:
            gate.stop()
        if vm:
            vm.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)
            for name in sorted(os.listdir(work)):
                if name.endswith(".log"):
                    print("---", name)
                    print(open(os.path.join(work, name)).read()[-3000:])


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL:", e)
        sys.exit(1)
    print("PASS")
