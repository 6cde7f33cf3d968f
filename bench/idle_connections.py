#!/usr/bin/env python3
"""RSS per idle MQTT connection: citygate against Mosquitto in one run.

For each server and each connection count, starts the server afresh on a free loopback port
(citygate with its default storage and I/O threads, Mosquitto 2.0 in memory), reads its RSS,
opens N idle MQTT 3.1.1 connections with citygate-loadgen (--messages 0 --hold, a long
keep-alive, source addresses 127.0.0.1-127.0.0.16, a generator process per 10,000 connections
since each process may hold at most RLIMIT_NOFILE descriptors), waits until every CONNACK is in
and the server's RSS has settled, reads it again and prints (after - before) / N for both and
their ratio. RSS is VmRSS from /proc/<pid>/status (what the kernel side of a socket costs is
not in it; the server's malloc arenas are). Loopback only; every wait is bounded.

usage: bench/idle_connections.py [--build build] [--counts 10000,19000]
"""

import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PER_GENERATOR = 10_000  # connections per citygate-loadgen process, well under its fd limit
SOURCES = "127.0.0.1-127.0.0.16"


def fail(message):
    print("idle_connections: " + message, file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    # Children inherit it: the servers and the generators may use the whole hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    fail("no VmRSS for pid %d" % pid)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_for(what, check, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    fail("timed out after %.0f s waiting for %s" % (timeout, what))


def settled_rss(pid, timeout=30):
    """RSS once two readings a second apart differ by under 0.2% (or at the timeout)."""
    deadline = time.monotonic() + timeout
    last = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss_bytes(pid)
        if abs(now - last) <= last * 0.002:
            return now
        last = now
    return last


class Server:
    def __init__(self, name, argv, log, ready, port):
        self.name, self.log_path, self.port = name, log, port
        self.proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_for(name + " to listen", lambda: self.exited() or ready(self.log_text()), 30)
        if self.proc.poll() is not None:
            fail("%s exited: %s" % (name, self.log_text()[-2000:]))

    def exited(self):
        return self.proc.poll() is not None

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_citygate(binary, work):
    data = os.path.join(work, "citygate-data")
    shutil.rmtree(data, ignore_errors=True)
    log = os.path.join(work, "citygate.log")
    argv = [binary, "--mqtt-listen", "127.0.0.1", "--mqtt-port", "0", "--http-listen",
            "127.0.0.1", "--http-port", "0", "--data-dir", data]

    def ready(text):
        return "mqtt listening on 127.0.0.1:" in text and "http listening on" in text

    server = Server("citygate", argv, log, ready, 0)
    text = server.log_text()
    server.port = int(text.split("mqtt listening on 127.0.0.1:")[1].split()[0])
    return server


def start_mosquitto(work):
    port = free_port()
    config = os.path.join(work, "mosquitto.conf")
    with open(config, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_connections -1\nmax_inflight_messages 0\n" % port)
    log = os.path.join(work, "mosquitto.log")
    return Server("mosquitto", ["mosquitto", "-c", config], log,
                  lambda text: "running" in text, port)


def hold_connections(loadgen, server, count, work):
    """Opens `count` idle connections; returns the generators once all are CONNACKed."""
    generators = []
    for index, start in enumerate(range(0, count, PER_GENERATOR)):
        clients = min(PER_GENERATOR, count - start)
        log = os.path.join(work, "loadgen-%s-%d.log" % (server.name, index))
        argv = [loadgen, "--port", str(server.port), "--bind", SOURCES, "--clients", str(clients),
                "--messages", "0", "--hold", "true", "--keep-alive", "600", "--connect-rate",
                "4000", "--duration", "600", "--drain", "5", "--client-id",
                "idle%d-{index}" % index]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        generators.append((proc, log))

    def open_now(log):
        # The generator's progress line each second: "[  12s] open 9876, connects/s ...".
        with open(log) as f:
            lines = [line for line in f if "] open " in line]
        return int(lines[-1].split("] open ")[1].split(",")[0]) if lines else 0

    def all_open():
        for proc, log in generators:
            if proc.poll() is not None:
                with open(log) as f:
                    fail("citygate-loadgen exited early: " + f.read()[-2000:])
        if server.exited():
            fail(server.name + " exited: " + server.log_text()[-2000:])
        return sum(open_now(log) for _, log in generators) >= count

    wait_for("%d connections to %s" % (count, server.name), all_open, 120, interval=0.5)
    return generators


def stop_generators(generators):
    for proc, _ in generators:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def measure(server, loadgen, count, work):
    time.sleep(1)
    before = settled_rss(server.proc.pid)
    fds_before = open_fds(server.proc.pid)
    generators = hold_connections(loadgen, server, count, work)
    try:
        wait_for("%s to hold %d sockets" % (server.name, count),
                 lambda: open_fds(server.proc.pid) - fds_before >= count, 30)
        time.sleep(2)
        after = settled_rss(server.proc.pid)
        if server.exited():
            fail(server.name + " exited: " + server.log_text()[-2000:])
    finally:
        stop_generators(generators)
    return before, after


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build", help="build directory (default: build)")
    parser.add_argument("--counts", default="10000,19000",
                        help="idle connection counts, comma separated (default: 10000,19000)")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    citygate = os.path.join(args.build, "gateway", "citygate")
    loadgen = os.path.join(args.build, "loadgen", "citygate-loadgen")
    for binary in (citygate, loadgen):
        if not os.access(binary, os.X_OK):
            fail(binary + " not built")
    if not shutil.which("mosquitto"):
        fail("mosquitto not installed")
    limit = raise_fd_limit()
    if max(counts) + 500 > limit:
        fail("%d connections need more than the file limit %d allows" % (max(counts), limit))

    work = tempfile.mkdtemp(prefix="idle-connections.")
    results = {}
    try:
        for count in counts:
            for name in ("citygate", "mosquitto"):
                server = start_citygate(citygate, work) if name == "citygate" else \
                    start_mosquitto(work)
                try:
                    before, after = measure(server, loadgen, count, work)
                finally:
                    server.stop()
                per = (after - before) / count
                results[(name, count)] = per
                print("%-9s %6d idle connections: RSS %7.1f MiB -> %7.1f MiB, %6.0f B per "
                      "connection" % (name, count, before / 2**20, after / 2**20, per), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for count in counts:
        cg, mq = results[("citygate", count)], results[("mosquitto", count)]
        print("%6d idle connections: citygate %.0f B, mosquitto %.0f B per connection, "
              "citygate/mosquitto %.2f" % (count, cg, mq, cg / mq if mq > 0 else float("nan")))


if __name__ == "__main__":
    main()
