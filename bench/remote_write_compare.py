#!/usr/bin/env python3
"""Remote-write ingest: citygate against Prometheus' own receiver, in the same run, same load.

Starts citygate (the binary given) and Prometheus (--web.enable-remote-write-receiver, nothing
scraped) on loopback with temporary data directories, builds the requests once (snappy
WriteRequests of --samples samples each: one sample for each of that many series out of a pool
of --series, timestamps advancing a second per round, as a Prometheus sender batches them),
then sends the same requests to each server over --connections keep-alive connections and
reports, per server and request size: samples/s (wall) and samples per server CPU-second (user +
system from /proc/<pid>/stat from the first request until the server is idle again, so the
background work the writes cause counts too), and the ratio citygate / Prometheus.

Usage: bench/remote_write_compare.py build/gateway/citygate [--requests 200] [--samples 1000 5000]
Needs python3-snappy and Debian's prometheus (deploy/install-deps.sh)."""

import argparse
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ops"))
import remote_proto  # noqa: E402

try:
    import snappy
except ImportError:  # Debian's python3-snappy is in the system Python (not pyenv's, a venv's)
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != \
            os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def wait_ready(url, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("not ready: " + url)


def start_citygate(binary, work):
    log = os.path.join(work, "citygate.log")
    config = os.path.join(work, "citygate.toml")
    with open(config, "w") as f:  # the whole series pool is new within the first minute
        f.write("[ingest]\nmax_new_series_per_minute = 10000000\nmax_series_per_identity = 10000000\n")
    proc = subprocess.Popen(
        [binary, "--config", config, "--mqtt-listen", "127.0.0.1", "--http-listen", "127.0.0.1", "--mqtt-port", "0",
         "--http-port", "0", "--data-dir", os.path.join(work, "citygate-data")],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        with open(log) as f:
            for line in f:
                if "http listening on 127.0.0.1:" in line:
                    port = int(line.split("http listening on 127.0.0.1:")[1].split()[0])
                    wait_ready("http://127.0.0.1:%d/readyz" % port)
                    return proc, port
        time.sleep(0.1)
    raise SystemExit("citygate did not start; see " + log)


def start_prometheus(work):
    port = free_port()
    config = os.path.join(work, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1h\n")
    proc = subprocess.Popen(
        ["prometheus", "--config.file", config, "--storage.tsdb.path",
         os.path.join(work, "prometheus-data"), "--web.listen-address", "127.0.0.1:%d" % port,
         "--web.enable-remote-write-receiver"],
        stdout=open(os.path.join(work, "prometheus.log"), "w"), stderr=subprocess.STDOUT)
    wait_ready("http://127.0.0.1:%d/-/ready" % port)
    return proc, port


def build_requests(count, samples, series_pool, start_ms, partitions):
    """Request i carries series of partition i % partitions only, and connection k sends
    requests k, k + partitions, ...: every series is sent in time order over one connection, as
    Prometheus' sender shards series by hash (Prometheus refuses out-of-order samples)."""
    per_partition = series_pool // partitions
    cursors = [0] * partitions
    bodies = []
    for r in range(count):
        p = r % partitions
        batch = []
        for _ in range(samples):
            cur = cursors[p]
            s = p + partitions * (cur % per_partition)
            ts = start_ms + (cur // per_partition) * 1000
            batch.append(({"__name__": "bench_metric_%d" % (s % 10), "instance": "host-%d" % (s // 10),
                           "job": "bench", "district": "d%d" % (s % 16)}, [(ts, float(cur % 997))]))
            cursors[p] += 1
        bodies.append(snappy.compress(remote_proto.encode_write_request(batch)))
    return bodies, max(cursors) // per_partition + 1


def send_all(port, bodies, connections):
    errors = []
    lock = threading.Lock()

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(k, len(bodies), connections):
            for attempt in range(50):
                conn.request("POST", "/api/v1/write", bodies[i], {
                    "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                    "X-Prometheus-Remote-Write-Version": "0.1.0"})
                reply = conn.getresponse()
                text = reply.read()
                if reply.status in (200, 204):
                    break
                if reply.status >= 500 or reply.status == 429:  # back-pressure: retry
                    time.sleep(0.01)
                    continue
                with lock:
                    errors.append((reply.status, text[:200]))
                break
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def settled_cpu(pid, quiet=0.02, most=10.0):
    """CPU seconds of `pid` once it has gone quiet (under `quiet` CPU-s in 0.5 s; at most `most`
    s), so background work the writes caused (head flushes, compaction) is counted too."""
    end = time.monotonic() + most
    last = cpu_seconds(pid)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last < quiet:
            return now
        last = now
    return last


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("citygate")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("prometheus"):
        raise SystemExit("prometheus not installed (deploy/install-deps.sh)")

    work = tempfile.mkdtemp(prefix="citygate-rw-bench.")
    procs = []
    try:
        gate, gate_port = start_citygate(args.citygate, work)
        procs.append(gate)
        prom, prom_port = start_prometheus(work)
        procs.append(prom)
        now = int(time.time() * 1000)
        rounds = sum(args.requests * s for s in args.samples) * 2 // args.series + 4
        start_ms = now - rounds * 1000
        print("%-10s %8s %9s %12s %12s %14s" % ("server", "samples", "requests", "samples/s",
                                                 "server CPU s", "samples/CPU-s"))
        for samples in args.samples:
            bodies, rounds_used = build_requests(args.requests, samples, args.series, start_ms,
                                                 args.connections)
            start_ms += rounds_used * 1000
            per_cpu = {}
            for name, proc, port in (("citygate", gate, gate_port),
                                     ("prometheus", prom, prom_port)):
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                errors = send_all(port, bodies, args.connections)
                wall = time.monotonic() - t0
                cpu = settled_cpu(proc.pid) - cpu0
                if errors:
                    print("  %s: %d requests refused, first: %s" % (name, len(errors), errors[0]))
                total = samples * args.requests
                per_cpu[name] = total / cpu if cpu > 0 else float("inf")
                print("%-10s %8d %9d %12.0f %12.2f %14.0f" % (name, samples, args.requests,
                                                              total / wall, cpu, per_cpu[name]))
            print("  citygate / prometheus, samples per CPU-second at %d samples/request: %.2fx" %
                  (samples, per_cpu["citygate"] / per_cpu["prometheus"]))
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
