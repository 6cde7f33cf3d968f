#!/usr/bin/env python3
"""Scale-out check on this machine, loopback only: the load generator publishes QoS 1 readings
to a real mosquitto for --seconds; behind it 1, 2, 3 ... citygate consumers share the stream
($share/cg/city/#) and acknowledge each message upstream once it is in their WAL. Prints, per
run, the messages/s acknowledged upstream after the WAL next to what the capacity model of
docs/scale-out.md predicts (N x one consumer's rate, capped by the broker's own fan-out rate),
and as references, in the same run:

  fan-out    mosquitto delivering the same load to one plain QoS 1 subscriber (mosquitto_sub)
  one-by-one one consumer with receive_maximum = 1: a single message in flight per connection,
             which is what acknowledging after the WAL costs with Paho MQTT C++ (it acknowledges
             when its callback returns, so the callback would have to wait for the WAL)

  bench/scale_out.py --citygate build/gateway/citygate --loadgen build/loadgen/citygate-loadgen
"""

import argparse
import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ops"))
import citygate_process  # noqa: E402
from citygate_process import Citygate, free_port, wait_until  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SUB = shutil.which("mosquitto_sub")


def start_broker(work):
    port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
                "max_queued_messages 10000000\nmax_inflight_messages 0\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    return proc, port


def load(args, port, work, tag):
    report = os.path.join(work, f"loadgen-{tag}.json")
    subprocess.run([args.loadgen, "--host", "127.0.0.1", "--port", str(port), "--clients", str(args.clients),
                    "--messages", "100000000", "--qos", "1", "--inflight", str(args.inflight),
                    "--duration", str(args.seconds), "--drain", "2", "--connect-rate", "0",
                    "--threads", "1", "--client-id", f"lg-{tag}-{{index}}", "--report", report,
                    "--start-ms", str(int(time.time() * 1000) - 600_000)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=args.seconds + 60)
    with open(report) as f:
        return json.load(f)


def consumer_toml(port, index, receive_maximum, fsync):
    return f"""
[storage]
fsync = "{fsync}"
[ingest]
max_future = "0s"  # the load generator stamps reading n at start + n x 10 s
max_new_series_per_minute = 0
max_series_per_identity = 0
[[upstream]]
name = "broker"
url = "mqtt://127.0.0.1:{port}"
topics = ["city/#"]
share_group = "cg"
client_id = "scale{index}-{{name}}-{{n}}"
connections = 2
receive_maximum = {receive_maximum}
session_expiry = "0s"
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def acks(gates):
    return sum(g.metric("citygate_upstream_acks_total", 'upstream="broker"') for g in gates)


def consumer_run(args, consumers, receive_maximum, tag):
    work = tempfile.mkdtemp(prefix=f"scale-{tag}-")
    broker, port = start_broker(work)
    gates = []
    try:
        for i in range(consumers):
            d = os.path.join(work, f"cg{i}")
            os.makedirs(d)
            gates.append(Citygate(args.citygate, d, consumer_toml(port, i, receive_maximum, args.fsync)))
        for g in gates:
            wait_until("consumer connected", lambda g=g: g.metric("citygate_upstream_connected", 'upstream="broker"') == 2)
        before = acks(gates)
        cpu_before = sum(cpu_seconds(g.proc.pid) for g in gates)
        t0 = time.monotonic()
        report = load(args, port, work, tag)
        elapsed = time.monotonic() - t0
        during = acks(gates) - before
        cpu = sum(cpu_seconds(g.proc.pid) for g in gates) - cpu_before
        rss = max(rss_bytes(g.proc.pid) for g in gates)
        if during:
            print(f"  {consumers} consumer(s): {cpu / during * 1e6:.1f} us consumer CPU per message, "
                  f"largest RSS {rss / 2**20:.0f} MiB")
        refused = sum(g.metric("citygate_upstream_refused_total", 'upstream="broker"') for g in gates)
        if refused:
            print(f"  ({refused:.0f} messages refused by the consumers: see their logs)")
        return during / elapsed, report.get("acked_per_s", 0)
    finally:
        for g in gates:
            g.stop()
        broker.terminate()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)


def fanout_run(args):
    work = tempfile.mkdtemp(prefix="scale-fanout-")
    broker, port = start_broker(work)
    try:
        received = [0]
        sub = subprocess.Popen([SUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "city/#",
                                "-V", "mqttv5", "-c", "-i", "fanout-sub", "-x", "600"], stdout=subprocess.PIPE)

        def count():
            for _ in sub.stdout:
                received[0] += 1
        reader = threading.Thread(target=count, daemon=True)
        reader.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        report = load(args, port, work, "fanout")
        elapsed = time.monotonic() - t0
        n = received[0]
        sub.terminate()
        sub.wait()
        return n / elapsed, report.get("acked_per_s", 0)
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citygate", default="build/gateway/citygate")
    parser.add_argument("--loadgen", default="build/loadgen/citygate-loadgen")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--consumers", default="1,2,3")
    parser.add_argument("--fsync", default="none", choices=["none", "batch"],
                        help="the consumers' storage.fsync: batch acknowledges only what survives a power loss")
    args = parser.parse_args()
    if not os.path.exists(MOSQUITTO) or not SUB:
        print("SKIP: mosquitto / mosquitto-clients not installed")
        return 77
    citygate_process.DEADLINE = time.monotonic() + 3600
    print(f"load: {args.clients} QoS 1 publishers, inflight {args.inflight}, {args.seconds} s per run, "
          f"{os.cpu_count()} cores shared by broker, publishers and consumers, consumers' fsync {args.fsync}")
    fan, fan_pub = fanout_run(args)
    print(f"fan-out    mosquitto -> mosquitto_sub (QoS 1): {fan:10.0f} msg/s (publishers acked {fan_pub:.0f}/s)")
    one, one_pub = consumer_run(args, 1, 1, "one")
    print(f"one-by-one 1 consumer, receive_maximum 1:      {one:10.0f} msg/s after the WAL (publishers {one_pub:.0f}/s)")
    per_consumer = None
    print(f"{'consumers':>10} {'measured msg/s':>15} {'model msg/s':>12} {'measured/model':>15}")
    for n in (int(x) for x in args.consumers.split(",")):
        rate, pub = consumer_run(args, n, 256, f"n{n}")
        if per_consumer is None:
            per_consumer = rate / n
        model = min(n * per_consumer, fan)
        print(f"{n:>10} {rate:>15.0f} {model:>12.0f} {rate / model:>15.2f}   (publishers acked {pub:.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
