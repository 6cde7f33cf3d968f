#!/usr/bin/env python3
"""Soak benchmark: a steady MQTT load against a real citygate for a given time, sampled.

Starts citygate on free loopback ports with its embedded defaults (data in a temporary
directory), runs the load generator at a fixed rate (clients x 1000 / interval-ms messages per
second, QoS 1), and every --sample seconds records the gateway's RSS, CPU, allocator figures,
head points, memtable bytes and data directory size. After the load stops it keeps sampling for
--quiet seconds, to show what an idle gateway gives back. Prints one row per sample, then the
growth of RSS between the end of the warm-up and the end of the load, and what was left once
quiet. Bounded: the load stops after --minutes, the whole run after minutes + quiet + a margin.

usage: bench/soak.py [--binary build/gateway/citygate] [--loadgen build/loadgen/citygate-loadgen]
                     [--clients 1000] [--rate 50000] [--minutes 60] [--warmup 10] [--sample 30]
                     [--quiet 300] [--toml FILE] [--env NAME=VALUE ...] [--json FILE]
       bench/soak.py --summarize FILE   (the summary of a run saved with --json)
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PARTS = ("memtables", "block_cache", "head", "series_index", "queries", "other")


def scrape(port):
    """Sums each metric family over its labels, {name: value}; memory parts also by part."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as reply:
        text = reply.read().decode()
    sums = {}
    for line in text.splitlines():
        m = SAMPLE_LINE.match(line)
        if m and not line.startswith("#"):
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            sums[m.group(1)] = sums.get(m.group(1), 0.0) + value
            if m.group(1) == "citygate_memory_used_bytes":
                sums[m.group(1) + m.group(2)] = value
    return sums


def proc_figures(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return cpu, rss


def dir_bytes(path):
    total = wal = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                size = os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
            total += size
            if name.endswith(".log"):
                wal += size
    return total, wal


def mib(n):
    return n / (1 << 20)


def summarize(samples, report, warmup_minutes):
    """Prints the loadgen's figures, RSS growth after the warm-up and what the quiet left."""
    warm = [s for s in samples if s["load"] and s["t"] >= warmup_minutes * 60]
    loaded = [s for s in samples if s["load"]]
    quiet = [s for s in samples if not s["load"]]
    print()
    if report:
        ack = report.get("ack_ms", {})
        print("loadgen: %s acknowledged of %s sent (%.0f/s), %s negative, %s unacknowledged,"
              " %s dropped early; ack p50 %s ms, p99 %s ms" %
              (report.get("acknowledged"), report.get("sent"), report.get("acked_per_s", 0),
               report.get("negative_acks"), report.get("unacknowledged"),
               report.get("disconnected_early"), ack.get("p50"), ack.get("p99")))
    if len(warm) >= 2:
        first, last = warm[0], warm[-1]
        peak = max(s["rss"] for s in warm)
        print("RSS after warm-up (t=%.0f s): %.1f MiB; at the end of the load (t=%.0f s): %.1f MiB;"
              " growth %+.1f %% (peak %.1f MiB, %+.1f %%)" %
              (first["t"], mib(first["rss"]), last["t"], mib(last["rss"]),
               100 * (last["rss"] / first["rss"] - 1), mib(peak), 100 * (peak / first["rss"] - 1)))
        # The head and memtables fill and drain in cycles of minutes, so single samples swing:
        # the first and last 10 minutes after the warm-up, their means and peaks, and the
        # least-squares slope over the whole span tell growth from the cycle.
        span = 600 if warm[-1]["t"] - warm[0]["t"] >= 1800 else (warm[-1]["t"] - warm[0]["t"]) / 3
        early = [s for s in warm if s["t"] < warm[0]["t"] + span]
        late = [s for s in warm if s["t"] > warm[-1]["t"] - span]
        mean = lambda xs: sum(s["rss"] for s in xs) / len(xs)
        top = lambda xs: max(s["rss"] for s in xs)
        n = len(warm)
        tx = sum(s["t"] for s in warm) / n
        ry = sum(s["rss"] for s in warm) / n
        var = sum((s["t"] - tx) ** 2 for s in warm)
        slope = sum((s["t"] - tx) * (s["rss"] - ry) for s in warm) / var if var else 0
        print("RSS in the first / last %.0f min after warm-up: mean %.1f / %.1f MiB (%+.1f %%),"
              " peak %.1f / %.1f MiB (%+.1f %%); trend %+.1f %% per hour" %
              (span / 60, mib(mean(early)), mib(mean(late)), 100 * (mean(late) / mean(early) - 1),
               mib(top(early)), mib(top(late)), 100 * (top(late) / top(early) - 1),
               100 * slope * 3600 / ry))
        if any(s.get("parts") for s in warm):
            print("memory parts at the end of the load (MiB): " + ", ".join(
                "%s %.1f" % (part, mib(last["parts"].get(part, 0))) for part in PARTS))
        cpu = sum(s["cpu_share"] for s in warm) / len(warm)
        print("gateway CPU under load: %.1f %% of a core" % (100 * cpu))
    elif loaded:
        print("load shorter than the warm-up: no growth figure")
    if quiet:
        q = quiet[-1]
        print("quiet for %.0f s after the load: RSS %.1f MiB, head %d points, memtables %.1f MiB,"
              " WAL %.1f MiB, data %.1f MiB" %
              (q["t"] - (loaded[-1]["t"] if loaded else 0), mib(q["rss"]), q["head_points"],
               mib(q["memtables"]), mib(q["wal"]), mib(q["disk"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="build/gateway/citygate")
    ap.add_argument("--loadgen", default="build/loadgen/citygate-loadgen")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=50000, help="messages per second, all clients")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10, help="minutes before growth is counted")
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    ap.add_argument("--quiet", type=float, default=300, help="seconds sampled after the load")
    ap.add_argument("--toml", help="configuration file for citygate (default: none)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for citygate")
    ap.add_argument("--json", help="write the samples here as JSON")
    ap.add_argument("--summarize", metavar="JSON",
                    help="print the summary of a run saved with --json, and run nothing")
    args = ap.parse_args()
    if args.summarize:
        with open(args.summarize) as f:
            saved = json.load(f)
        summarize(saved["samples"], saved.get("loadgen", {}),
                  saved.get("args", {}).get("warmup", args.warmup))
        return

    interval_ms = args.clients * 1000 / args.rate
    if interval_ms < 1 or interval_ms != int(interval_ms):
        sys.exit("soak: clients x 1000 / rate must be a whole number of ms (is %.3f)" % interval_ms)
    load_seconds = int(args.minutes * 60)
    work = tempfile.mkdtemp(prefix="citygate-soak.")
    mqtt_port, http_port = free_port(), free_port()
    env = dict(os.environ)
    for item in args.env:
        name, _, value = item.partition("=")
        env[name] = value
    command = [args.binary, "--mqtt-listen", "127.0.0.1", "--http-listen", "127.0.0.1",
               "--mqtt-port", str(mqtt_port), "--http-port", str(http_port),
               "--data-dir", os.path.join(work, "data")]
    if args.toml:
        command += ["--config", args.toml]
    log = open(os.path.join(work, "citygate.log"), "w")
    gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    loadgen = None
    samples = []
    try:
        for _ in range(100):
            try:
                scrape(http_port)
                break
            except OSError:
                if gateway.poll() is not None:
                    sys.exit("soak: citygate exited: " + open(log.name).read()[-2000:])
                time.sleep(0.1)
        start = time.monotonic()
        loadgen = subprocess.Popen(
            [args.loadgen, "--port", str(mqtt_port), "--clients", str(args.clients),
             "--messages", str(int(load_seconds * 1000 / interval_ms)),
             "--start-ms", str(int(time.time() * 1000)), "--qos", "1", "--inflight", "16",
             "--interval-ms", str(int(interval_ms)), "--connect-rate", "2000",
             "--duration", str(load_seconds), "--drain", "10", "--threads", "1",
             "--report", os.path.join(work, "loadgen.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("soak: %d clients, %d msg/s for %.0f min, sampled every %.0f s; data in %s" %
              (args.clients, args.rate, args.minutes, args.sample, work), flush=True)
        print("%7s %6s %9s %9s %9s %9s %9s %10s %9s %8s %9s" %
              ("t_s", "phase", "rss_MiB", "cpu_%", "used_MiB", "free_MiB", "mmap_MiB",
               "head_pts", "memt_MiB", "wal_MiB", "disk_MiB"), flush=True)
        end = start + load_seconds + 15 + args.quiet
        last_cpu, last_t = proc_figures(gateway.pid)[0], start
        next_sample = start + args.sample
        while time.monotonic() < end:
            time.sleep(max(0.0, next_sample - time.monotonic()))
            next_sample += args.sample
            if gateway.poll() is not None:
                sys.exit("soak: citygate exited: " + open(log.name).read()[-2000:])
            now = time.monotonic()
            cpu, rss = proc_figures(gateway.pid)
            m = scrape(http_port)
            total, wal = dir_bytes(os.path.join(work, "data"))
            loading = loadgen.poll() is None
            sample = {
                "t": round(now - start, 1), "load": loading, "rss": rss,
                "cpu_share": (cpu - last_cpu) / (now - last_t),
                "in_use": m.get("citygate_allocator_in_use_bytes", 0),
                "free": m.get("citygate_allocator_free_bytes", 0),
                "mmapped": m.get("citygate_allocator_mmapped_bytes", 0),
                "head_points": m.get("citygate_storage_head_points", 0),
                "memtables": m.get("citygate_rocksdb_memtable_bytes", 0),
                "parts": {part: m.get('citygate_memory_used_bytes{part="%s"}' % part, 0)
                          for part in PARTS},
                "wal": wal, "disk": total,
            }
            last_cpu, last_t = cpu, now
            samples.append(sample)
            print("%7.0f %6s %9.1f %9.1f %9.1f %9.1f %9.1f %10.0f %9.1f %8.1f %9.1f" %
                  (sample["t"], "load" if loading else "quiet", mib(rss),
                   100 * sample["cpu_share"], mib(sample["in_use"]), mib(sample["free"]),
                   mib(sample["mmapped"]), sample["head_points"], mib(sample["memtables"]),
                   mib(wal), mib(total)), flush=True)
        if loadgen.poll() is None:
            loadgen.wait(timeout=60)
    finally:
        if loadgen and loadgen.poll() is None:
            loadgen.kill()
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gateway.kill()

    report = {}
    try:
        with open(os.path.join(work, "loadgen.json")) as f:
            report = json.load(f)
    except (OSError, ValueError):
        pass
    summarize(samples, report, args.warmup)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "loadgen": report, "samples": samples}, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
