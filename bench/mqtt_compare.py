#!/usr/bin/env python3
"""citygate against Mosquitto in one run, QoS 1 over MQTT 3.1.1 on loopback: the same
citygate-loadgen scenario drives each server in turn (a fresh process on a free port per run),
and the table says what each server spent per message and the ratio citygate/mosquitto.

  mosquitto: in memory (persistence false), no subscribers
  citygate:  durable (QoS 1 acknowledged after the WAL), fsync none or --fsync batch

Scenarios: closed loop (--clients connections, inflight 64, interval 0: as fast as acks allow)
and fixed rates (clients x 1000 / interval-ms msg/s, interval 10 ms: 10k = 100 sensors).

Measured over the steady part of each run (after --warmup s, until 0.5 s before publishing
stops), from the server's /proc: CPU per message (utime + stime of /proc/<pid>/stat),
context switches per message (voluntary + nonvoluntary of every /proc/<pid>/task/*/status),
the acknowledged msg/s from the generator's timeline, and the generator's ack p50/p99 of the
whole run. --threads prints citygate's CPU per message by thread as well (where the time goes).
The generator runs on the same machine: on a small one the closed loop shares its cores.

  bench/mqtt_compare.py --build build [--fsync batch] [--seconds 12] [--rates 10000,30000,100000]
"""

import argparse
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def thread_figures(pid):
    """{tid: (name, cpu s, context switches)} of every live thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            fields = rest.split()
            switches = 0
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
            out[tid] = (head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / TICK,
                        switches)
        except (OSError, IndexError, ValueError):
            pass  # the thread ended
    return out


class Sampler(threading.Thread):
    """Samples a server's CPU and context switches every 0.2 s while the generator runs."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic(), process_cpu_s(self.pid),
                                     thread_figures(self.pid)))
            except OSError:
                return
            self.done.wait(0.2)

    def at(self, t):
        """The first sample at or after monotonic time t."""
        for sample in self.samples:
            if sample[0] >= t:
                return sample
        return self.samples[-1]


def start_mosquitto(work):
    port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                f"user {getpass.getuser()}\nmax_inflight_messages 0\nmax_queued_messages 0\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mqtt_compare: mosquitto did not start")


def start_citygate(args, work):
    data = os.path.join(work, "citygate-data")
    shutil.rmtree(data, ignore_errors=True)
    log = os.path.join(work, "citygate.log")
    command = [args.citygate, "--mqtt-listen", "127.0.0.1", "--http-listen", "127.0.0.1",
               "--mqtt-port", "0", "--http-port", "0", "--data-dir", data, "--fsync", args.fsync,
               "--io-threads", str(args.io_threads), "--shards", str(args.shards),
               ]
    proc = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("mqtt_compare: citygate exited: " + open(log).read()[-2000:])
        with open(log) as f:
            for line in f:
                if "mqtt listening on 127.0.0.1:" in line:
                    return proc, int(line.split("mqtt listening on 127.0.0.1:")[1].split()[0])
        time.sleep(0.05)
    proc.kill()
    sys.exit("mqtt_compare: citygate did not start: " + open(log).read()[-2000:])


def acked_at(timeline, t):
    """Acknowledged messages by generator time t, interpolated between timeline rows."""
    previous = (0.0, 0)
    for row in timeline:
        if row[0] >= t:
            span = row[0] - previous[0]
            share = (t - previous[0]) / span if span > 0 else 1.0
            return previous[1] + share * (row[4] - previous[1])
        previous = (row[0], row[4])
    return previous[1]


def run_one(args, work, server, scenario):
    if server == "mosquitto":
        proc, port = start_mosquitto(work)
    else:
        proc, port = start_citygate(args, work)
    clients, interval = scenario["clients"], scenario["interval_ms"]
    # Reading n of a sensor is stamped start + n x step (step: the interval, or 10 s in the
    # closed loop); the last one a run can reach is stamped about now, so none is refused as
    # late (behind retention) or from the future.
    per_client = (args.seconds + 2) * (1000 // interval if interval else 20_000)
    step_ms = interval if interval else 10_000
    start_ms = int(time.time() * 1000) - per_client * step_ms
    report = os.path.join(work, f"loadgen-{server}-{scenario['name']}.json")
    command = [args.loadgen, "--host", "127.0.0.1", "--port", str(port), "--protocol", "3.1.1",
               "--clients", str(clients), "--messages", str(per_client), "--qos", "1",
               "--inflight", "64", "--interval-ms", str(interval), "--duration", str(args.seconds),
               "--drain", "3", "--connect-rate", "0", "--threads", str(args.loadgen_threads),
               "--start-ms", str(start_ms), "--report", report]
    sampler = Sampler(proc.pid)
    sampler.start()
    started = time.monotonic()
    try:
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=args.seconds + 40, check=False)
    finally:
        sampler.done.set()
        sampler.join()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with open(report) as f:
        result = json.load(f)
    first, last = args.warmup, args.seconds - 0.5
    begin, end = sampler.at(started + first), sampler.at(started + last)
    # The sample times, on the generator's clock (it starts a few ms after `started`).
    t0, t1 = begin[0] - started, end[0] - started
    acked = acked_at(result["timeline"], t1) - acked_at(result["timeline"], t0)
    threads = {}
    for tid, (name, cpu, switches) in end[2].items():
        was = begin[2].get(tid, (name, 0.0, 0))
        entry = threads.setdefault(name, [0.0, 0])
        entry[0] += cpu - was[1]
        entry[1] += switches - was[2]
    cpu = end[1] - begin[1]
    switches = sum(s for _, s in threads.values())
    seconds = t1 - t0
    return {
        "msg_s": acked / seconds if seconds > 0 else 0.0,
        "cpu_us": 1e6 * cpu / acked if acked else float("nan"),
        "cpu_share": cpu / seconds if seconds > 0 else 0.0,
        "cs": switches / acked if acked else float("nan"),
        "p50": result["ack_ms"]["p50"],
        "p99": result["ack_ms"]["p99"],
        "acked": result["acknowledged"],
        "sent": result["sent"],
        "negative": result["negative_acks"],
        "threads": {name: (1e6 * c / acked if acked else 0.0, s / acked if acked else 0.0)
                    for name, (c, s) in threads.items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default="build", help="build directory")
    parser.add_argument("--citygate", help="default: BUILD/gateway/citygate")
    parser.add_argument("--loadgen", help="default: BUILD/loadgen/citygate-loadgen")
    parser.add_argument("--fsync", choices=["none", "batch"], default="none")
    parser.add_argument("--seconds", type=int, default=12, help="publishing time of each run")
    parser.add_argument("--warmup", type=float, default=3.0, help="s left out at the start")
    parser.add_argument("--rates", default="10000,30000,100000", help="fixed rates, msg/s")
    parser.add_argument("--clients", type=int, default=100, help="closed loop connections")
    parser.add_argument("--no-closed-loop", action="store_true")
    parser.add_argument("--only", choices=["citygate", "mosquitto"])
    parser.add_argument("--io-threads", type=int, default=0, help="citygate's (0: one per core)")
    parser.add_argument("--shards", type=int, default=0, help="citygate's (0: one per core)")
    parser.add_argument("--loadgen-threads", type=int, default=1)
    parser.add_argument("--threads", action="store_true", help="citygate CPU by thread")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()
    args.citygate = args.citygate or os.path.join(args.build, "gateway", "citygate")
    args.loadgen = args.loadgen or os.path.join(args.build, "loadgen", "citygate-loadgen")
    for binary in (args.citygate, args.loadgen, MOSQUITTO):
        if not os.access(binary, os.X_OK):
            sys.exit(f"mqtt_compare: {binary} not found")
    if args.seconds <= args.warmup + 1:
        sys.exit("mqtt_compare: --seconds must leave a steady part after --warmup")

    scenarios = [] if args.no_closed_loop else [
        {"name": "closed", "label": f"closed loop {args.clients} conn", "clients": args.clients,
         "interval_ms": 0}]
    for rate in (int(r) for r in args.rates.split(",") if r):
        scenarios.append({"name": f"{rate}", "label": f"fixed {rate // 1000}k msg/s",
                          "clients": max(1, rate // 100), "interval_ms": 10})
    servers = [args.only] if args.only else ["mosquitto", "citygate"]

    print(f"QoS 1, MQTT 3.1.1, inflight 64; citygate durable, fsync {args.fsync}; mosquitto in "
          f"memory; {args.seconds} s runs, figures over [{args.warmup}, {args.seconds - 0.5}] s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="mqtt-compare-") as work:
        for scenario in scenarios:
            for server in servers:
                results[(scenario["name"], server)] = run_one(args, work, server, scenario)

    head = f"{'scenario':24s} {'server':10s} {'msg/s':>9s} {'CPU us/msg':>10s} {'CPU %':>6s} " \
           f"{'cs/msg':>7s} {'ack p50 ms':>10s} {'p99 ms':>8s}"
    print(head)
    print("-" * len(head))
    for scenario in scenarios:
        rows = [(server, results[(scenario["name"], server)]) for server in servers]
        for server, r in rows:
            print(f"{scenario['label']:24s} {server:10s} {r['msg_s']:9.0f} {r['cpu_us']:10.2f} "
                  f"{100 * r['cpu_share']:6.0f} {r['cs']:7.3f} {r['p50']:10.3f} {r['p99']:8.3f}"
                  + (f"  ({r['negative']} negative acks)" if r["negative"] else ""))
        if len(rows) == 2:
            m, c = rows[0][1], rows[1][1]

            def ratio(key):
                return c[key] / m[key] if m[key] else float("nan")

            print(f"{'':24s} {'ratio c/m':10s} {ratio('msg_s'):9.2f} {ratio('cpu_us'):10.2f} "
                  f"{ratio('cpu_share'):6.2f} {ratio('cs'):7.2f} {ratio('p50'):10.2f} "
                  f"{ratio('p99'):8.2f}")
        if args.threads and "citygate" in servers:
            threads = results[(scenario["name"], "citygate")]["threads"]
            busy = sorted(threads.items(), key=lambda kv: -kv[1][0])
            print(f"{'':24s} citygate by thread (CPU us/msg, cs/msg): " + ", ".join(
                f"{name} {cpu:.2f}/{cs:.3f}" for name, (cpu, cs) in busy if cpu > 0.005 or cs > 0.001))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{s}/{v}": r for (s, v), r in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
