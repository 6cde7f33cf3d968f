#!/usr/bin/env python3
"""Issue 12's query attacks against a citygate binary it starts itself, loopback only, bounded.

Stores 20 series (pm25 of devices d00..d19, 5 points each, one SenML pack per device through
mosquitto_pub), then runs, each while a prober GETs /healthz every 100 ms and RSS is sampled
from /proc/PID/status every 50 ms:

  steps   query_range step=60000 over 4,000,000 minutes: 80 M series x steps
  regex   query_range with a hostile regex over the device label

and prints the answer, its time, RSS before, at peak and 2 s after, and the slowest /healthz.
Last, SIGTERM and the time to exit. The gateway is SIGKILLed once its RSS passes --rss-limit-mb
(the machine is shared). --sigterm-after S sends the SIGTERM S seconds into each query instead.

  bench/query_attacks.py build/gateway/citygate /tmp/qa
  bench/query_attacks.py build/gateway/citygate /tmp/qa --sigterm-after 2 \\
      --toml '[storage]\\ntest_read_delay = "300ms"'      # a query made slow, drained meanwhile
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("binary")
parser.add_argument("workdir", help="emptied, then holds the data directory and the log")
parser.add_argument("--rss-limit-mb", type=int, default=8192)
parser.add_argument("--toml", default="", help="configuration file text ('\\n' for newlines)")
parser.add_argument("--sigterm-after", type=float, help="SIGTERM this long into each query")
parser.add_argument("--only", choices=["steps", "regex"])
args = parser.parse_args()

shutil.rmtree(args.workdir, ignore_errors=True)
os.makedirs(args.workdir)
log_path = os.path.join(args.workdir, "citygate.log")
argv = [args.binary, "--mqtt-listen", "127.0.0.1", "--http-listen", "127.0.0.1", "--mqtt-port",
        "0", "--http-port", "0", "--data-dir", os.path.join(args.workdir, "var"), "--io-threads",
        "2", "--shards", "2"]
if args.toml:
    config = os.path.join(args.workdir, "citygate.toml")
    with open(config, "w") as f:
        f.write(args.toml.replace("\\n", "\n"))
    argv += ["--config", config]
proc = subprocess.Popen(argv, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def listening(what):
    for _ in range(300):
        found = re.search(what + r" listening on [0-9.]+:(\d+)", open(log_path).read())
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    raise SystemExit("citygate did not start:\n" + open(log_path).read())


mqtt_port, http_port = listening("mqtt"), listening("http")


def rss_kb():
    try:
        with open("/proc/%d/status" % proc.pid) as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def get(path, params=None, timeout=120):
    url = "http://127.0.0.1:%d%s" % (http_port, path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read(), time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - started
    except Exception as e:  # refused, reset, timed out
        return 0, str(e).encode(), time.monotonic() - started


now = int(time.time() * 1000)
first = now - 10 * 60_000
for d in range(20):
    pack = [{"n": "pm25", "t": (first + i * 60_000) / 1000.0, "v": d + i} for i in range(5)]
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mqtt_port), "-q", "1", "-t",
                    "city/pudong/air/d%02d" % d, "-m", json.dumps(pack)], check=True)


class Watch:
    """RSS sampler, /healthz prober and the optional SIGTERM, around one query."""

    def __init__(self):
        self.stop = threading.Event()
        self.peak_kb = 0
        self.killed_after = None
        self.gone_after = None
        self.probes = []
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self.sample), threading.Thread(target=self.probe)]
        if args.sigterm_after is not None:
            self.threads.append(threading.Thread(target=self.terminate))
        for t in self.threads:
            t.start()

    def sample(self):
        while not self.stop.is_set() and proc.poll() is None:
            kb = rss_kb()
            self.peak_kb = max(self.peak_kb, kb)
            if kb > args.rss_limit_mb * 1024 and self.killed_after is None:
                self.killed_after = time.monotonic() - self.started
                proc.kill()
            time.sleep(0.05)

    def probe(self):
        while not self.stop.is_set() and proc.poll() is None:
            status, _, took = get("/healthz", timeout=60)
            self.probes.append((status, took))
            time.sleep(0.1)

    def terminate(self):
        time.sleep(args.sigterm_after)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        self.gone_after = time.monotonic() - sent

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def attack(name, params):
    before = rss_kb()
    watch = Watch()
    status, body, took = get("/api/v1/query_range", params)
    watch.finish()
    print("== %s" % name)
    print("   answer: HTTP %d in %.3f s: %s" % (status, took, body[:150].decode(errors="replace")))
    peak = "   RSS before %.0f MB, peak %.0f MB" % (before / 1024, watch.peak_kb / 1024)
    if watch.killed_after is not None:
        peak += " (SIGKILLed at the %d MB cap, %.1f s in)" % (args.rss_limit_mb,
                                                              watch.killed_after)
    print(peak)
    if proc.poll() is None:
        time.sleep(2)
        print("   RSS 2 s after the answer: %.0f MB" % (rss_kb() / 1024))
    if watch.gone_after is not None:
        print("   SIGTERM %.1f s into the query: process gone %.3f s later%s" % (
            args.sigterm_after, watch.gone_after,
            " (by the RSS cap's SIGKILL)" if watch.killed_after is not None else ""))
    slowest = max((t for _, t in watch.probes), default=0)
    failed = sum(1 for s, _ in watch.probes if s != 200)
    print("   /healthz meanwhile: %d probes, slowest %.3f s, %d not 200" % (len(watch.probes),
                                                                          slowest, failed))


minute = 60_000
start = (now - 4_000_000 * minute) // minute * minute
if args.only in (None, "steps") and proc.poll() is None:
    attack("steps: step=60000 over 4,000,000 minutes, 20 series",
           {"series": "pm25", "start": start, "end": now, "step": "60000"})
if args.only in (None, "regex") and proc.poll() is None:
    attack("regex: device=~\"(d|d0|d00|.*)*(x+x+)+y.{0,900}\"",
           {"series": 'pm25{device=~"(d|d0|d00|.*)*(x+x+)+y.{0,900}"}', "start": first,
            "end": now})
if proc.poll() is None:
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
        print("== SIGTERM: exited %d after %.3f s" % (code, time.monotonic() - sent))
    except subprocess.TimeoutExpired:
        print("== SIGTERM: still running after 30 s; killed")
        proc.kill()
proc.wait()
