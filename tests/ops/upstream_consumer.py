#!/usr/bin/env python3
"""Consumer mode against a real mosquitto: two citygates in one share group ($share/cg/city/#),
publishers at QoS 1 (mosquitto_pub -l, one message per line, each reading with its own ms
timestamp), on 127.0.0.1 only.

  (a) every message published is stored exactly once across the two consumers, and the rollups
      count each reading once;
  (b) kill -9 one consumer mid-stream and restart it: nothing the broker considered delivered
      (acknowledged) is missing, and a redelivered reading is stored once (its rollup counts it
      once);
  (c) stop the broker for a while (its persistence keeps the sessions): both consumers
      reconnect and resume, and what was published afterwards arrives;
  (d) mqtts:// (when openssl is installed): a broker with a certificate from a test CA; a
      consumer given the CA (tls_ca_file) connects and stores, one without it is refused.

  tests/ops/upstream_consumer.py build/gateway/citygate
"""

import getpass
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import citygate_process  # noqa: E402
from citygate_process import Citygate, fail, free_port, make_test_ca, request, wait_until  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
PUB = shutil.which("mosquitto_pub")
if not MOSQUITTO or not PUB:
    print("SKIP: mosquitto / mosquitto-clients not installed (deploy/install-deps.sh installs them)")
    sys.exit(77)

citygate_process.DEADLINE = time.monotonic() + 170
T0 = (int(time.time() * 1000) // 3600_000) * 3600_000 - 3600_000  # readings stamped in the last hour


class Broker:
    def __init__(self, work, tls=""):
        self.work, self.port = work, free_port()
        self.conf = os.path.join(work, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\n{tls}allow_anonymous true\n"
                    f"user {getpass.getuser()}\n"  # root drops to `mosquitto`, which cannot write here
                    f"persistence true\npersistence_location {work}/\nautosave_interval 1\n"
                    "max_queued_messages 1000000\nmax_inflight_messages 0\n")
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        self.log = open(os.path.join(self.work, f"mosquitto-{self.starts}.log"), "w")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until("mosquitto to listen", lambda: _connectable(self.port))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _connectable(port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def publish(port, device, first, count):
    """QoS 1 messages on city/d01/air/<device>, reading i = value i, stamped T0 + i * 10 ms;
    returns once mosquitto_pub has had every PUBACK (it exits after the last)."""
    lines = "".join(f"pm25 value={i} {T0 + i * 10}\n" for i in range(first, first + count))
    proc = subprocess.run([PUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-V", "mqttv311",
                           "-t", f"city/d01/air/{device}", "-l", "-i", f"pub-{device}-{first}"],
                          input=lines.encode(), capture_output=True, timeout=120)
    if proc.returncode != 0:
        fail(f"mosquitto_pub {device}: {proc.returncode} {proc.stderr[-500:]!r}")


def consumer_toml(broker_port, instance, url=None, extra=""):
    return f"""
[ingest]
default_format = "line"
line_precision = "ms"
max_future = "0s"
max_new_series_per_minute = 0
[storage]
out_of_order_window = "3h"
[[upstream]]
name = "broker"
url = "{url or f'mqtt://127.0.0.1:{broker_port}'}"
topics = ["city/#"]
share_group = "cg"
client_id = "cg{instance}-{{name}}-{{n}}"  # both run on this host: {{host}} would not tell them apart
connections = 2
receive_maximum = 64
session_expiry = "10m"
keep_alive = "5s"
reconnect_min = "100ms"
reconnect_max = "1s"
{extra}"""


def stored(gates, device):
    """{ts: [value, ...]} of device across the gateways: one entry per gateway holding it."""
    out = {}
    for gate in gates:
        for _, points in gate.series(f'pm25{{device="{device}"}}', T0 - 1, T0 + 10_000_000).items():
            for ts, v in points:
                out.setdefault(ts, []).append(v)
    return out


def rollup_count(gate, device):
    """Readings of the device in gate counted by its 1-hour rollups."""
    import json
    import urllib.parse
    q = urllib.parse.urlencode({"series": f'pm25{{device="{device}"}}', "start": T0, "end": T0 + 3 * 3600_000,
                                "step": "1h", "function": "count"})
    status, body, _ = request(gate.url + "/api/citygate/v1/query_range?" + q)
    if status != 200:
        fail(f"aggregate query: {status} {body[:300]!r}")
    return sum(float(v) for r in json.loads(body)["data"]["result"] for _, v in r["values"])


def check_exactly_once(gates, device, count, allow_copies):
    want = set(T0 + i * 10 for i in range(count))
    have = wait_until(f"{count} readings of {device}",
                      lambda: (lambda s: s if want <= set(s) else None)(stored(gates, device)),
                      interval=0.5)
    extra = set(have) - want
    if extra:
        fail(f"{device}: {len(extra)} readings nobody published")
    copies = sum(1 for ts in want if len(have[ts]) > 1)
    if copies and not allow_copies:
        fail(f"{device}: {copies} readings stored by both consumers")
    wrong = [ts for ts in want if any(v != (ts - T0) // 10 for v in have[ts])]
    if wrong:
        fail(f"{device}: {len(wrong)} readings with a wrong value")
    selector = f'pm25{{device="{device}"}}'
    raw = sum(len(pts) for g in gates for pts in g.series(selector, T0 - 1, T0 + 10_000_000).values())
    rolled = sum(rollup_count(g, device) for g in gates)
    if rolled != raw:
        fail(f"{device}: rollups count {rolled} readings, raw points {raw}")
    return copies


def check_tls(binary, work):
    openssl = shutil.which("openssl")
    if not openssl:
        print("(d) skipped: openssl not installed")
        return
    tls = os.path.join(work, "tls")
    make_test_ca(openssl, tls)
    broker_dir = os.path.join(work, "tls-broker")
    os.makedirs(broker_dir)
    broker = Broker(broker_dir, f"cafile {tls}/ca.pem\ncertfile {tls}/server.pem\nkeyfile {tls}/server.key\n")
    gates = []
    try:
        url = f"mqtts://127.0.0.1:{broker.port}"
        for name, extra in (("trusted", f'tls_ca_file = "{tls}/ca.pem"\n'), ("untrusted", "")):
            d = os.path.join(work, name)
            os.makedirs(d)
            gates.append(Citygate(binary, d, consumer_toml(broker.port, name, url, extra)))
        trusted, untrusted = gates
        wait_until("the consumer with the CA connected over mqtts://", lambda: trusted.metric(
            "citygate_upstream_connected", 'upstream="broker"') == 2)
        publish_tls = subprocess.run(
            [PUB, "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", f"{tls}/ca.pem", "-q", "1",
             "-t", "city/d01/air/tls0", "-l", "-i", "pub-tls"],
            input="".join(f"pm25 value={i} {T0 + i * 10}\n" for i in range(500)).encode(),
            capture_output=True, timeout=60)
        if publish_tls.returncode != 0:
            fail(f"mosquitto_pub over TLS: {publish_tls.stderr[-300:]!r}")
        check_exactly_once([trusted], "tls0", 500, allow_copies=False)
        wait_until("the consumer without the CA to fail", lambda: untrusted.metric(
            "citygate_upstream_connect_failures_total", 'upstream="broker"') > 0)
        if untrusted.metric("citygate_upstream_connected", 'upstream="broker"') != 0:
            fail("connected over mqtts:// to a broker whose CA it was not given")
        print("(d) mqtts://: with tls_ca_file 500 readings stored; without it the certificate is refused")
    finally:
        for gate in gates:
            gate.stop()
        broker.stop()


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="upstream-consumer-")
    broker = None
    gates = []
    ok = False
    try:
        broker = Broker(work)
        for n in range(2):
            d = os.path.join(work, f"cg{n}")
            os.makedirs(d)
            gates.append(Citygate(binary, d, consumer_toml(broker.port, n)))
        for gate in gates:
            wait_until("consumers connected", lambda g=gate: g.metric(
                "citygate_upstream_connected", 'upstream="broker"') == 2)

        # (a) 4 publishers x 5,000 messages, split between the two consumers.
        n = 5000
        t = time.monotonic()
        threads = [threading.Thread(target=publish, args=(broker.port, f"a{k}", 0, n)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for k in range(4):
            check_exactly_once(gates, f"a{k}", n, allow_copies=False)
        split = [g.metric("citygate_upstream_acks_total", 'upstream="broker"') for g in gates]
        print(f"(a) 20000 messages stored exactly once in {time.monotonic() - t:.1f} s; "
              f"acknowledged upstream by the consumers: {split[0]:.0f} + {split[1]:.0f}")
        if min(split) == 0:
            fail("the share group did not split the stream")

        # (b) kill -9 the first consumer while a publisher streams, then restart it.
        pub = threading.Thread(target=publish, args=(broker.port, "b0", 0, 20000))
        pub.start()
        wait_until("messages in flight", lambda: gates[0].metric(
            "citygate_upstream_messages_total", 'upstream="broker"') > split[0] + 2000, interval=0.05)
        gates[0].kill9()
        time.sleep(1)
        gates[0].start()
        pub.join()
        copies = check_exactly_once(gates, "b0", 20000, allow_copies=True)
        redelivered = gates[0].metric("citygate_upstream_redelivered_total", 'upstream="broker"')
        print(f"(b) kill -9 mid-stream: all 20000 readings stored; {copies:.0f} stored by both "
              f"consumers (delivered to one, unacknowledged at the kill, then sent to the other), "
              f"{redelivered:.0f} redelivered to the restarted one")

        # (c) stop the broker for 3 s; both reconnect and resume.
        broker.stop()
        wait_until("consumers to notice", lambda: all(g.metric(
            "citygate_upstream_connected", 'upstream="broker"') == 0 for g in gates))
        time.sleep(3)
        broker.start()
        for gate in gates:
            wait_until("consumers reconnected", lambda g=gate: g.metric(
                "citygate_upstream_connected", 'upstream="broker"') == 2)
        before = [g.metric("citygate_upstream_acks_total", 'upstream="broker"') for g in gates]
        threads = [threading.Thread(target=publish, args=(broker.port, f"c{k}", 0, 3000)) for k in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for k in range(2):
            check_exactly_once(gates, f"c{k}", 3000, allow_copies=False)
        after = [g.metric("citygate_upstream_acks_total", 'upstream="broker"') for g in gates]
        if any(a <= b for a, b in zip(after, before)):
            fail(f"a consumer did not resume after the broker restart: acks {before} -> {after}")
        print("(c) broker stopped for 3 s: both consumers reconnected and resumed; 6000 more "
              "readings stored exactly once")
        check_tls(binary, work)
        ok = True
        print("PASS")
    finally:
        for gate in gates:
            gate.stop()
        if broker:
            try:
                broker.stop()
            except Exception:
                pass
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("logs kept in", work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
