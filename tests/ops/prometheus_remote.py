#!/usr/bin/env python3
"""Prometheus remote write and remote read against a real citygate and a real Prometheus, and
the InfluxDB line protocol write paths, all on loopback.

1. A Prometheus scraping itself remote-writes into citygate; its series (prometheus_build_info,
   up) are then read back through citygate's query API.
2. Line protocol: a large gzip body through /api/v2/write (Telegraf's path and headers), a v1
   /write with precision=s; then a bad body (line 3 broken) gets 400 naming the line, and none
   of its good lines is stored; remote-write errors (415, 400, 413) with nothing half-written.
3. A Prometheus with remote_read pointed at citygate (and nothing of its own) answers
   /api/v1/query with citygate's data.
4. Durability: every sample acknowledged with 204 is there after kill -9 and a restart.

Usage: prometheus_remote.py CITYGATE_BINARY. Exits 77 (skipped) only when prometheus or
python3-snappy is not installed (deploy/install-deps.sh installs both)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import gzip

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import remote_proto  # noqa: E402

try:
    import snappy
except ImportError:
    # Debian's python3-snappy lives in the system Python; another python3 first in PATH
    # (pyenv, a venv) does not see it.
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != \
            os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("SKIP: python3-snappy not installed (deploy/install-deps.sh installs it)")
    sys.exit(77)

PROMETHEUS = shutil.which("prometheus")
if not PROMETHEUS:
    print("SKIP: prometheus not installed (Debian package prometheus; deploy/install-deps.sh)")
    sys.exit(77)

DEADLINE = time.monotonic() + 150


def fail(message):
    raise AssertionError(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, interval=0.2):
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError, IndexError, AssertionError):
            pass
        if time.monotonic() > DEADLINE:
            fail("timed out waiting for " + what)
        time.sleep(interval)


def request(url, body=None, headers=None, method=None):
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as reply:
            return reply.status, reply.read(), dict(reply.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


class Citygate:
    def __init__(self, binary, work, toml=""):
        self.binary, self.work, self.toml = binary, work, toml
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        config = os.path.join(self.work, "citygate.toml")
        with open(config, "w") as f:
            f.write(self.toml)
        self.log = os.path.join(self.work, "citygate-%d.log" % self.starts)
        self.proc = subprocess.Popen(
            [self.binary, "--config", config, "--mqtt-listen", "127.0.0.1", "--http-listen",
             "127.0.0.1", "--mqtt-port", "0", "--http-port", str(getattr(self, "fixed_port", 0)), "--data-dir",
             os.path.join(self.work, "data"), "--io-threads", "1", "--shards", "2"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

        def port():
            with open(self.log) as f:
                for line in f:
                    if "http listening on 127.0.0.1:" in line:
                        return int(line.split("http listening on 127.0.0.1:")[1].split()[0])
            return None
        self.port = wait_until("citygate to listen", port)
        self.url = "http://127.0.0.1:%d" % self.port

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def series(self, selector, start_ms=0, end_ms=None):
        """{series key: [(ts, value), ...]} from citygate's own raw query API."""
        end_ms = end_ms or int(time.time() * 1000) + 600_000
        query = urllib.parse.urlencode({"series": selector, "start": start_ms, "end": end_ms})
        status, body, _ = request(self.url + "/api/v1/query_range?" + query)
        if status != 200:
            fail("query_range %s: %d %s" % (selector, status, body[:300]))
        result = json.loads(body)["data"]["result"]
        return {r["series"]: [(int(t), float(v)) for t, v in r["values"]] for r in result}


def prometheus(work, name, config):
    port = free_port()
    path = os.path.join(work, name)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "prometheus.yml"), "w") as f:
        f.write(config.replace("PORT", str(port)))
    proc = subprocess.Popen(
        [PROMETHEUS, "--config.file", os.path.join(path, "prometheus.yml"),
         "--storage.tsdb.path", os.path.join(path, "tsdb"),
         "--web.listen-address", "127.0.0.1:%d" % port],
        stdout=open(os.path.join(path, "prometheus.log"), "w"), stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d" % port
    wait_until(name + " to be ready", lambda: request(url + "/-/ready")[0] == 200)
    return proc, url


def remote_write(gate, series, headers=None):
    body = snappy.compress(remote_proto.encode_write_request(series))
    h = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
         "X-Prometheus-Remote-Write-Version": "0.1.0"}
    h.update(headers or {})
    return request(gate.url + "/api/v1/write", body, h)


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="citygate-remote.")
    procs = []
    gate = None
    ok = False
    try:
        gate = Citygate(binary, work, "[http]\nmax_write_body = 4194304\n"
                        "[ingest]\nmax_new_series_per_minute = 1000000\n")
        now = int(time.time() * 1000)

        # 1. Prometheus remote-writes its own scrape into citygate.
        writer, writer_url = prometheus(work, "writer", """
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: self
    static_configs: [{targets: ["127.0.0.1:PORT"]}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}
""" % gate.url)
        procs.append(writer)
        got = wait_until("Prometheus' samples of up in citygate",
                         lambda: gate.series('up{job="self"}'), interval=0.5)
        key = next(iter(got))
        if 'instance="127.0.0.1:' not in key or not all(v == 1.0 for _, v in got[key]):
            fail("up as citygate stored it: %s" % got)
        # Through citygate's PromQL too, where this build serves Prometheus' query API.
        status, body, _ = request(gate.url + "/api/v1/query?" +
                                  urllib.parse.urlencode({"query": 'up{job="self"}'}))
        if status == 200 and b'"resultType"' in body:
            result = json.loads(body)["data"]["result"]
            if len(result) != 1 or result[0]["value"][1] != "1" or \
                    result[0]["metric"].get("job") != "self":
                fail("citygate PromQL up{job=\"self\"}: %s" % result)
            print("ok: citygate's PromQL answers up{job=\"self\"} from the remote-written data")
        build = wait_until("prometheus_build_info in citygate",
                           lambda: gate.series("prometheus_build_info"), interval=0.5)
        if 'version="2.' not in next(iter(build)):
            fail("prometheus_build_info labels: %s" % build)
        written = wait_until("citygate_http_write_samples_total", lambda: [
            line for line in request(gate.url + "/metrics")[1].decode().splitlines()
            if line.startswith('citygate_http_write_samples_total{endpoint="remote_write"}')
            and float(line.split()[-1]) > 100])
        print("ok: Prometheus remote write into citygate (%s)" % written[0])

        # 2. Line protocol, large and gzip, as Telegraf's outputs.influxdb_v2 sends it.
        lines = []
        for i in range(100_000):
            lines.append("lp_big,district=d%d,device=s%05d value=%d.5,count=%di %d" %
                         (i % 16, i % 5000, i, i, (now - 100_000 + i) * 1_000_000))
        text = ("\n".join(lines) + "\n").encode()
        body = gzip.compress(text)
        status, reply, _ = request(
            gate.url + "/api/v2/write?org=city&bucket=telegraf&precision=ns", body,
            {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8",
             "Authorization": "Token not-checked-without-a-tokens-file",
             "User-Agent": "Telegraf"})
        if status != 204:
            fail("gzip line protocol: %d %s" % (status, reply[:300]))
        big = gate.series("lp_big")
        big_count = big_points = 0
        for k, points in big.items():
            big_points += len(points)
        big_count = sum(len(p) for k, p in gate.series("lp_big_count").items())
        if big_points != 100_000 or big_count != 100_000 or len(big) != 10000:
            fail("gzip body: %d series, %d value points, %d count points stored, want 10000, "
                 "100000, 100000" % (len(big), big_points, big_count))
        print("ok: %d bytes of gzip line protocol (%d raw) stored whole" % (len(body), len(text)))

        status, reply, _ = request(gate.url + "/write?db=telegraf&precision=s",
                                   b"lp_v1,host=a value=3 %d\n" % (now // 1000))
        if status != 204 or list(gate.series("lp_v1").values()) != [[(now // 1000 * 1000, 3.0)]]:
            fail("v1 /write precision=s: %d %s %s" % (status, reply, gate.series("lp_v1")))
        # Telegraf's outputs.influxdb creates its database first (a no-op here).
        status, reply, _ = request(gate.url + "/query", b'q=CREATE+DATABASE+%22telegraf%22',
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200 or b"statement_id" not in reply:
            fail("CREATE DATABASE: %d %s" % (status, reply))
        status, reply, _ = request(gate.url + "/query?q=SELECT+1", b"")
        if status != 400:
            fail("/query SELECT: %d %s" % (status, reply))
        status, _, headers = request(gate.url + "/ping")
        if status != 204 or "X-Influxdb-Version" not in headers:
            fail("/ping: %d %s" % (status, headers))

        # Bad bodies: documented errors, nothing half-written.
        bad = b"lp_bad,host=a value=1\nlp_bad,host=b value=2\nlp_bad,host=c value=\nlp_bad value=4\n"
        status, reply, _ = request(gate.url + "/api/v2/write?bucket=b", bad)
        if status != 400 or b"line 3" not in reply:
            fail("bad line protocol: %d %s" % (status, reply))
        status, reply, _ = request(gate.url + "/api/v2/write?bucket=b", gzip.compress(bad),
                                   {"Content-Encoding": "gzip"})
        if status != 400 or gate.series("lp_bad"):
            fail("bad gzip line protocol: %d %s, stored %s" % (status, reply, gate.series("lp_bad")))
        status, reply, _ = request(gate.url + "/api/v2/write?bucket=b", b"\x1f\x8b garbage",
                                   {"Content-Encoding": "gzip"})
        if status != 400:
            fail("broken gzip: %d %s" % (status, reply))
        status, reply, _ = request(gate.url + "/write", b"m value=1\n")
        if status != 400 or b"db" not in reply:
            fail("/write without db: %d %s" % (status, reply))
        status, reply, _ = request(gate.url + "/write?db=x&precision=h", b"m value=1\n")
        if status != 400:
            fail("precision=h: %d %s" % (status, reply))
        print("ok: bad line protocol bodies refused with 400, nothing stored")

        good = ({"__name__": "rw_half", "k": "good"}, [(now, 1.0)])
        nameless = ({"k": "x"}, [(now, 2.0)])
        status, reply, _ = remote_write(gate, [good, nameless])
        if status != 400 or b"__name__" not in reply:
            fail("series without __name__: %d %s" % (status, reply))
        status, reply, _ = remote_write(gate, [good, ({"__name__": "rw_half", "bad name": "1"},
                                                      [(now, 1.0)])])
        if status != 400:
            fail("bad label name: %d %s" % (status, reply))
        status, reply, _ = remote_write(gate, [good, ({"__name__": "rw_half"}, [(now + 3_600_000, 1.0)])])
        if status != 400 or b"future" not in reply:
            fail("sample an hour ahead: %d %s" % (status, reply))
        if gate.series("rw_half"):
            fail("a refused remote write left samples: %s" % gate.series("rw_half"))
        status, reply, _ = remote_write(gate, [good], {"Content-Type": "application/json"})
        if status != 415:
            fail("wrong content type: %d %s" % (status, reply))
        status, reply, _ = remote_write(gate, [good], {
            "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"})
        if status != 415:
            fail("remote write 2.0 message: %d %s" % (status, reply))
        status, reply, _ = request(gate.url + "/api/v1/write", b"not snappy", {
            "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})
        if status != 400:
            fail("not snappy: %d %s" % (status, reply))
        # 5 MiB declared, over http.max_write_body of 4 MiB: refused with the header, before
        # the body is read (a client still sending it would see its connection closed).
        with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as s:
            s.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                      b"Content-Length: 5242880\r\n\r\n" + b"\0" * 1000)
            reply = s.recv(4096)
        if not reply.startswith(b"HTTP/1.1 413") or b"limit of 4194304" not in reply:
            fail("5 MiB over http.max_write_body of 4 MiB: %s" % reply[:300])
        # A client that sends the whole body before it reads still gets the 413.
        status, reply, _ = request(gate.url + "/api/v1/write", os.urandom(5 << 20), {
            "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})
        if status != 413:
            fail("5 MiB sent whole: %d %s" % (status, reply[:200]))
        # A staleness marker (NaN) is skipped, the rest stored.
        stale = ({"__name__": "rw_stale"}, [(now - 2000, 5.0), (now - 1000, float("nan"))])
        status, reply, _ = remote_write(gate, [stale])
        if status != 204 or list(gate.series("rw_stale").values()) != [[(now - 2000, 5.0)]]:
            fail("staleness marker: %d %s %s" % (status, reply, gate.series("rw_stale")))
        print("ok: bad remote writes refused (400, 413, 415), nothing half-written")

        # 4. What was answered 204 survives kill -9.
        acknowledged = []
        for i in range(50):
            series = [({"__name__": "rw_durable", "batch": str(i)}, [(now - 5000 + j, float(j))
                                                                   for j in range(100)])]
            status, reply, _ = remote_write(gate, series)
            if status == 204:
                acknowledged.append(i)
        gate.kill9()
        gate.start()
        stored = gate.series("rw_durable")
        for i in acknowledged:
            key = 'rw_durable{batch="%d"}' % i
            if len(stored.get(key, [])) != 100:
                fail("acknowledged batch %d has %d samples after kill -9" %
                     (i, len(stored.get(key, []))))
        print("ok: %d acknowledged remote writes all there after kill -9" % len(acknowledged))

        # 3. Prometheus with remote_read pointed at citygate.
        status, reply, _ = request(gate.url + "/write?db=x&precision=ms", (
            "rr_pm25,district=pudong value=12.5 %d\nrr_pm25,district=xuhui value=30 %d\n"
            "rr_pm25,district=pudong value=14.5 %d\n" % (now - 60_000, now - 60_000, now - 30_000)
        ).encode())
        if status != 204:
            fail("remote-read fixture write: %d %s" % (status, reply))
        reader, reader_url = prometheus(work, "reader", """
global:
  scrape_interval: 1h
remote_read:
  - url: %s/api/v1/read
    read_recent: true
""" % gate.url)
        procs.append(reader)

        def instant(query):
            q = urllib.parse.urlencode({"query": query, "time": "%.3f" % (now / 1000)})
            status, body, _ = request(reader_url + "/api/v1/query?" + q)
            if status != 200:
                fail("Prometheus query %s: %d %s" % (query, status, body[:300]))
            return json.loads(body)["data"]["result"]
        result = instant('rr_pm25{district="pudong"}')
        if len(result) != 1 or float(result[0]["value"][1]) != 14.5 or \
                result[0]["metric"] != {"__name__": "rr_pm25", "district": "pudong"}:
            fail("remote read through Prometheus: %s" % result)
        result = instant("sum(rr_pm25)")
        if len(result) != 1 or float(result[0]["value"][1]) != 44.5:
            fail("sum over remote read: %s" % result)
        result = instant('count(rr_pm25{district=~"pu.*"})')
        if len(result) != 1 or float(result[0]["value"][1]) != 1:
            fail("regex matcher over remote read: %s" % result)
        result = instant('max_over_time(rr_pm25{district="pudong"}[2m])')
        if len(result) != 1 or float(result[0]["value"][1]) != 14.5:
            fail("range over remote read: %s" % result)
        # The raw protocol: a query with a regex that must match whole values only.
        read = remote_proto.encode_read_request(
            [(now - 120_000, now, [("__name__", "=", "rr_pm25"), ("district", "=~", "pu")])])
        status, body, headers = request(gate.url + "/api/v1/read", snappy.compress(read), {
            "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Read-Version": "0.1.0"})
        if status != 200 or headers.get("Content-Encoding") != "snappy":
            fail("remote read: %d %s" % (status, body[:200]))
        results = remote_proto.decode_read_response(snappy.decompress(body))
        if results != [[]]:
            fail("district=~\"pu\" must not match pudong (anchored): %s" % results)
        read = remote_proto.encode_read_request(
            [(now - 120_000, now, [("__name__", "=", "rr_pm25"), ("district", "!=", "xuhui")])])
        status, body, _ = request(gate.url + "/api/v1/read", snappy.compress(read), {
            "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})
        results = remote_proto.decode_read_response(snappy.decompress(body))
        if results != [[({"__name__": "rr_pm25", "district": "pudong"},
                         [(now - 60_000, 12.5), (now - 30_000, 14.5)])]]:
            fail("remote read samples: %s" % results)
        print("ok: Prometheus answers from citygate through remote_read")
        ok = True
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if gate:
            gate.stop()
        if not ok:
            for root, _, files in os.walk(work):
                for name in files:
                    if name.endswith(".log") and name.startswith(("citygate", "prometheus")):
                        print("--- %s (tail)" % name)
                        with open(os.path.join(root, name), errors="replace") as f:
                            print("".join(f.readlines()[-15:]))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL:", e)
        sys.exit(1)
