#!/usr/bin/env python3
"""[export.mqtt] against a real mosquitto broker and the real citygate binary, all on loopback.

1. citygate publishes, every 2 s window, the count, avg, min and max of each district and
   measurement to <topic_prefix>/<district>/<measurement>; mosquitto_sub -v receives them, and
   every value matches what citygate's HTTP API (query_range, function=count|avg|min|max,
   group_by=district, one step of the window) reports for the same window. The latest message
   of each pair is retained.
2. Broker down: windows keep closing, Paho buffers export.mqtt.max_buffered messages and the
   rest are dropped and counted in /metrics (citygate_export_mqtt_dropped_total);
   citygate_export_mqtt_connected is 0. Broker back on the same port: citygate reconnects, the
   buffered messages and new windows are published again.

3. mqtts:// (when openssl is installed): a broker with a certificate from a test CA; citygate
   with export.mqtt.tls_ca_file set to that CA connects and publishes; one without it (the
   system's CAs) refuses the broker's certificate and stays disconnected.

Usage: mqtt_aggregates.py CITYGATE_BINARY. Exits 77 (skipped) when mosquitto, mosquitto_sub or
mosquitto_pub is not installed (deploy/install-deps.sh installs them)."""

import calendar
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from citygate_process import fail, free_port, make_test_ca  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
SUB, PUB = shutil.which("mosquitto_sub"), shutil.which("mosquitto_pub")
if not (MOSQUITTO and SUB and PUB):
    print("SKIP: mosquitto, mosquitto_sub or mosquitto_pub not installed "
          "(Debian packages mosquitto, mosquitto-clients; deploy/install-deps.sh)")
    sys.exit(77)

DEADLINE = time.monotonic() + 55
INTERVAL_MS = 2000
MAX_BUFFERED = 4
PREFIX = "test/agg"
DISTRICTS = ["d01", "d02"]
MEASUREMENTS = ["pm25", "no2"]  # 2 x 2 pairs: four messages a window


def wait_until(what, check, interval=0.1):
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > DEADLINE:
            fail("timed out waiting for " + what)
        time.sleep(interval)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def metric(base, name):
    for line in get(base + "/metrics").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.split()[-1])
    fail("metric %s not served" % name)


class Broker:
    def __init__(self, work, port, extra=""):
        self.config = os.path.join(work, "mosquitto-%d.conf" % port)
        with open(self.config, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n%s" % (
                port, extra))
        self.port, self.work, self.proc, self.starts = port, work, None, 0

    def start(self):
        self.starts += 1
        log = open(os.path.join(self.work, "mosquitto-%d-%d.log" % (self.port, self.starts)),
                   "w")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.config], stdout=log,
                                     stderr=subprocess.STDOUT)

        def listening():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        wait_until("mosquitto to listen", listening)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Subscriber:
    """mosquitto_sub -v on the aggregate tree; lines collected on a thread."""

    def __init__(self, port, *extra):
        self.messages, self.lock = [], threading.Lock()
        self.proc = subprocess.Popen(
            [SUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-v", "-t", PREFIX + "/#"] +
            list(extra), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            with self.lock:
                self.messages.append((topic, json.loads(payload)))

    def received(self):
        with self.lock:
            return list(self.messages)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)


class Sensors:
    """Two mosquitto_pub -l processes (one per district) sending readings with unique ms
    timestamps, so storage and the aggregates see exactly the same points."""

    def __init__(self, port):
        self.pubs = {d: subprocess.Popen(
            [PUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-l", "-t",
             "city/%s/air/s-%s" % (d, d)], stdin=subprocess.PIPE, text=True) for d in DISTRICTS}
        self.last_ts, self.n = 0, 0

    def send_round(self):
        for d in DISTRICTS:
            ts = max(self.last_ts + 1, int(time.time() * 1000))
            self.last_ts = ts
            self.n += 1
            # Values vary inside a window, so min, max and avg differ.
            body = {"ts": ts, "pm25": 10 + (self.n * 7) % 23 + 0.25, "no2": -(self.n % 5) * 1.5}
            self.pubs[d].stdin.write(json.dumps(body) + "\n")
            self.pubs[d].stdin.flush()

    def stop(self):
        for p in self.pubs.values():
            p.stdin.close()
            p.wait(timeout=5)


def api_value(base, district, measurement, function, start, end):
    query = urllib.parse.urlencode({
        "series": '%s{district="%s"}' % (measurement, district), "start": start,
        "end": end - 1, "step": INTERVAL_MS, "function": function, "group_by": "district",
        "source": "raw"})
    reply = json.loads(get(base + "/api/v1/query_range?" + query))
    values = [v for r in reply["data"]["result"] for v in r["values"] if v[0] == start]
    if len(values) != 1:
        fail("HTTP API: no single %s for %s/%s at %d: %s" % (function, district, measurement,
                                                            start, reply))
    return float(values[0][1])


def rfc3339_ms(text):
    assert text.endswith("Z"), text
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) * 1000


def check_against_api(base, topic, message):
    district, measurement = message["district"], message["measurement"]
    if topic != "%s/%s/%s" % (PREFIX, district, measurement):
        fail("topic %s for %s" % (topic, message))
    start, end = rfc3339_ms(message["window_start"]), rfc3339_ms(message["window_end"])
    if end - start != INTERVAL_MS or start % INTERVAL_MS:
        fail("window not aligned to the interval: %s" % message)
    if message["count"] <= 0:
        fail("published an empty window: %s" % message)
    for field, function in (("count", "count"), ("avg", "avg"), ("min", "min"), ("max", "max")):
        expected = api_value(base, district, measurement, function, start, end)
        if abs(message[field] - expected) > 1e-9 * max(1.0, abs(expected)):
            fail("%s of %s/%s [%s, %s): published %r, HTTP API %r" % (
                field, district, measurement, message["window_start"], message["window_end"],
                message[field], expected))


class Citygate:
    def __init__(self, binary, work, name, toml):
        config = os.path.join(work, name + ".toml")
        with open(config, "w") as f:
            f.write(toml)
        self.log_path = os.path.join(work, name + ".log")
        self.proc = subprocess.Popen(
            [binary, "--config", config, "--mqtt-listen", "127.0.0.1", "--http-listen",
             "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--data-dir",
             os.path.join(work, name + "-data"), "--io-threads", "1", "--shards", "2"],
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)

        def ports():
            if self.proc.poll() is not None:
                fail("citygate exited: " + open(self.log_path).read())
            text = open(self.log_path).read()
            if "http listening on 127.0.0.1:" not in text:
                return None
            http = int(text.split("http listening on 127.0.0.1:")[1].split()[0])
            mqtt = int(text.split("mqtt listening on 127.0.0.1:")[1].split()[0])
            return http, mqtt
        http_port, self.mqtt_port = wait_until("citygate to listen", ports)
        self.base = "http://127.0.0.1:%d" % http_port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


def check_tls(binary, work, procs):
    openssl = shutil.which("openssl")
    if not openssl:
        print("skipped mqtts://: openssl not installed")
        return
    tls = os.path.join(work, "tls")
    make_test_ca(openssl, tls)
    os.chmod(work, 0o755)
    broker = Broker(work, free_port(), "cafile %s/ca.pem\ncertfile %s/server.pem\n"
                    "keyfile %s/server.key\n" % (tls, tls, tls))
    broker.start()
    procs.append(broker)
    options = '[export.mqtt]\nurl = "mqtts://127.0.0.1:%d"\ntopic_prefix = "%s"\n' \
        'interval = "2s"\n' % (broker.port, PREFIX)
    trusted = Citygate(binary, work, "tls", options + 'tls_ca_file = "%s/ca.pem"\n' % tls)
    procs.append(trusted)
    untrusted = Citygate(binary, work, "tls-untrusted", options)
    procs.append(untrusted)
    sensors = Sensors(trusted.mqtt_port)
    procs.append(sensors)

    def published():
        sensors.send_round()
        return metric(trusted.base, "citygate_export_mqtt_published_total") >= 4
    wait_until("aggregates published over mqtts://", published, interval=0.15)
    if metric(untrusted.base, "citygate_export_mqtt_connected") != 0:
        fail("connected over mqtts:// to a broker whose CA it was not given")
    if "export.mqtt cannot connect" not in open(untrusted.log_path).read():
        fail("no log line for the refused certificate")
    print("ok: mqtts:// with tls_ca_file publishes; without it the certificate is refused")


def main(binary):
    work = tempfile.mkdtemp(prefix="citygate-aggmqtt-")
    broker = Broker(work, free_port())
    broker.start()
    citygate = Citygate(binary, work, "plain", """[export.mqtt]
url = "mqtt://127.0.0.1:%d"
topic_prefix = "%s"
client_id = "citygate-agg-test-{host}"
qos = 1
retain = true
interval = "2s"
max_buffered = %d
[city]
max_pairs = %d  # max_buffered must hold a whole window
""" % (broker.port, PREFIX, MAX_BUFFERED, MAX_BUFFERED))
    log_path = citygate.log_path
    procs = [citygate]
    try:
        base, mqtt_port = citygate.base, citygate.mqtt_port
        wait_until("the export to connect",
                   lambda: metric(base, "citygate_export_mqtt_connected") == 1)

        # 1. Published windows match the HTTP API.
        sub = Subscriber(broker.port)
        procs.append(sub)
        sensors = Sensors(mqtt_port)
        procs.append(sensors)
        first_ms = int(time.time() * 1000)

        def complete_windows():
            sensors.send_round()
            starts = {}
            for _, m in sub.received():
                start = rfc3339_ms(m["window_start"])
                if start > first_ms:  # windows wholly after the first reading
                    starts.setdefault(start, set()).add((m["district"], m["measurement"]))
            full = [s for s, pairs in starts.items() if len(pairs) == 4]
            return len(full) >= 2
        wait_until("two whole windows of four pairs", complete_windows, interval=0.15)
        received = sub.received()
        for topic, message in received:
            check_against_api(base, topic, message)
        print("ok: %d published windows match the HTTP API" % len(received))

        retained = subprocess.run(
            [SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-t", PREFIX + "/#", "-v",
             "--retained-only", "-W", "2"], capture_output=True, text=True).stdout.splitlines()
        if sorted(line.split()[0] for line in retained) != sorted(
                "%s/%s/%s" % (PREFIX, d, m) for d in DISTRICTS for m in MEASUREMENTS):
            fail("retained: expected one message per pair, got %s" % retained)
        print("ok: the latest message of each pair is retained")
        published_before = metric(base, "citygate_export_mqtt_published_total")
        sub.stop()

        # 2. Broker down: bounded buffer, drops counted; back: published again.
        broker.stop()
        down_ms = int(time.time() * 1000)
        wait_until("the export to see the broker gone",
                   lambda: metric(base, "citygate_export_mqtt_connected") == 0)

        def dropping():
            sensors.send_round()
            return metric(base, "citygate_export_mqtt_dropped_total") >= 2 * 4
        wait_until("messages beyond max_buffered dropped", dropping, interval=0.15)
        buffered = metric(base, "citygate_export_mqtt_buffered")
        if buffered != MAX_BUFFERED:
            fail("buffered %r while down, expected max_buffered %d" % (buffered, MAX_BUFFERED))
        print("ok: broker down: %d buffered, %d dropped and counted" % (
            buffered, metric(base, "citygate_export_mqtt_dropped_total")))

        broker.start()
        sub = Subscriber(broker.port)
        procs.append(sub)

        def republished():
            sensors.send_round()
            return any(rfc3339_ms(m["window_start"]) > down_ms + INTERVAL_MS
                       for _, m in sub.received())
        wait_until("new windows after the broker returns", republished, interval=0.15)
        if metric(base, "citygate_export_mqtt_connected") != 1:
            fail("published but not connected?")
        wait_until("the buffer to empty",
                   lambda: metric(base, "citygate_export_mqtt_buffered") == 0)
        if metric(base, "citygate_export_mqtt_published_total") < published_before + 1:
            fail("published_total did not grow after the broker returned")
        # The window the broker went down in closed while it was down: Paho buffered its four.
        old = [m for _, m in sub.received()
               if rfc3339_ms(m["window_end"]) <= down_ms + 2 * INTERVAL_MS]
        if not old:
            fail("none of the messages buffered while the broker was down arrived")
        for topic, message in sub.received():
            check_against_api(base, topic, message)
        print("ok: broker back: %d buffered messages delivered, new windows published, "
              "all matching the HTTP API" % len(old))
        if metric(base, "citygate_export_mqtt_failed_total") != 0:
            fail("failed_total is not 0")
        sensors.stop()
        procs.remove(sensors)
        citygate.stop()
        broker.stop()

        check_tls(binary, work, procs)
    except BaseException:
        for p in procs:
            if isinstance(p, Citygate):
                sys.stdout.write("--- citygate log %s\n" % p.log_path + open(p.log_path).read())
        raise
    finally:
        for p in reversed(procs):
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main(sys.argv[1])
