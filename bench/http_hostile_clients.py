#!/usr/bin/env python3
"""Hostile HTTP clients against a running citygate, loopback only, bounded in time.

  slowloris   N sockets from --source addresses, each sending one header byte every
              --interval s and reconnecting when closed, for --duration s; meanwhile a probe
              from 127.0.0.1 GETs /healthz once a second (2 s timeout). Prints the probe's
              success rate and how often the gateway closed a dribbler.
  checkpoints N concurrent POST /api/v1/admin/checkpoint; prints the answers by status.
  emfile      lowers the descriptor limit of the gateway (--pid) to what it has open plus 4
              (prlimit, so run as root or as its user), opens N connections, holds them
              --duration s, restores the limit; prints the log lines (--log) written meanwhile
              and whether /healthz answers afterwards.

  bench/http_hostile_clients.py slowloris --port 8080 --sockets 256 --duration 30
  bench/http_hostile_clients.py checkpoints --port 8080 --requests 100
  bench/http_hostile_clients.py emfile --port 8080 --pid $(pidof citygate) --log citygate.log \
      --sockets 64 --duration 9
"""
import argparse
import collections
import http.client
import os
import resource
import socket
import threading
import time

HEADER = b"GET /healthz HTTP/1.1\r\nHost: citygate\r\nX-Slow: " + b"a" * 4096


def probe(port, stop, results):
    while not stop.is_set():
        started = time.monotonic()
        ok = False
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            ok = connection.getresponse().status == 200
            connection.close()
        except (OSError, http.client.HTTPException):
            pass
        results.append((ok, time.monotonic() - started))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def slowloris(args):
    sources = args.source.split(",")

    def connect(i):
        s = socket.socket()
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", args.port))
        except OSError:
            s.close()
            return None
        s.setblocking(False)
        return s

    sockets = [connect(i) for i in range(args.sockets)]
    sent = [0] * args.sockets
    closed = 0
    stop = threading.Event()
    results = []
    prober = threading.Thread(target=probe, args=(args.port, stop, results))
    prober.start()
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        tick = time.monotonic()
        for i, s in enumerate(sockets):
            if s is not None:
                try:
                    if s.recv(4096) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    s = None
            if s is None:
                if sockets[i] is not None:
                    closed += 1
                sockets[i] = connect(i)
                sent[i] = 0
                s = sockets[i]
                if s is None:
                    continue
            try:
                s.send(HEADER[sent[i] % len(HEADER):][:1])
                sent[i] += 1
            except OSError:
                pass
        time.sleep(max(0.0, args.interval - (time.monotonic() - tick)))
    stop.set()
    prober.join()
    for s in sockets:
        if s is not None:
            s.close()
    ok = sum(1 for good, _ in results if good)
    slowest = max((t for good, t in results if good), default=0)
    print(f"slowloris: {args.sockets} sockets from {args.source}, one byte per {args.interval} s, "
          f"{args.duration} s: /healthz answered {ok} of {len(results)} probes "
          f"({100.0 * ok / max(1, len(results)):.0f}%), slowest answer {slowest * 1000:.0f} ms; "
          f"the gateway closed dribblers {closed} times")


def checkpoints(args):
    statuses = collections.Counter()
    lock = threading.Lock()

    def post():
        try:
            connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
            connection.request("POST", "/api/v1/admin/checkpoint")
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException) as e:
            status = type(e).__name__
        with lock:
            statuses[status] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=post) for _ in range(args.requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"checkpoints: {args.requests} concurrent POSTs in {time.monotonic() - started:.1f} s: "
          + ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items(), key=str)))


def emfile(args):
    open_now = len(os.listdir(f"/proc/{args.pid}/fd"))
    before = resource.prlimit(args.pid, resource.RLIMIT_NOFILE)
    log_start = os.path.getsize(args.log)
    resource.prlimit(args.pid, resource.RLIMIT_NOFILE, (open_now + 4, before[1]))  # soft only
    sockets = []
    try:
        for i in range(args.sockets):
            s = socket.socket()
            s.bind((args.source.split(",")[i % len(args.source.split(","))], 0))
            s.settimeout(1)
            try:
                s.connect(("127.0.0.1", args.port))
                sockets.append(s)
            except OSError:
                s.close()
        time.sleep(args.duration)
    finally:
        for s in sockets:
            s.close()
        resource.prlimit(args.pid, resource.RLIMIT_NOFILE, before)
    with open(args.log, "rb") as log:
        log.seek(log_start)
        written = log.read()
    ok = False
    for _ in range(50):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=2)
            connection.request("GET", "/healthz")
            ok = connection.getresponse().status == 200
            connection.close()
        except (OSError, http.client.HTTPException):
            pass
        if ok:
            break
        time.sleep(0.2)
    lines = written.count(b"\n")
    print(f"emfile: {len(sockets)} connections held {args.duration} s at {open_now + 4} "
          f"descriptors: {lines} log lines ({len(written)} bytes) meanwhile, "
          f"{written.count(b'http accept')} about accept; /healthz afterwards: "
          f"{'200' if ok else 'no answer'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("attack", choices=["slowloris", "checkpoints", "emfile"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sockets", type=int, default=256)
    parser.add_argument("--source", default="127.0.0.2", help="comma-separated 127.0.0.x")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--pid", type=int, help="emfile: the gateway's process id")
    parser.add_argument("--log", help="emfile: the gateway's log file")
    args = parser.parse_args()
    for source in args.source.split(","):
        if not source.startswith("127."):
            parser.error("loopback sources only")
    {"slowloris": slowloris, "checkpoints": checkpoints, "emfile": emfile}[args.attack](args)


if __name__ == "__main__":
    main()
