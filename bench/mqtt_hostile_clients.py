#!/usr/bin/env python3
"""Hostile MQTT clients against a citygate binary, on the loopback only, bounded in time.

Three attacks, each against a fresh gateway started by this script (temporary data directory,
free ports), reporting the gateway's RSS (/proc/<pid>/status VmRSS) and CPU time
(/proc/<pid>/stat utime + stime):

  flood    one client sends PINGREQs (or QoS 1 PUBLISHes, --qos1) for --seconds and never reads
  partial  --connections clients each send the first 100 KB of a 250 KB PUBLISH and stop; RSS
           while they are held and after they close
  dribble  one 100 KB PUBLISH sent a byte per segment (TCP_NODELAY, one send per byte); gateway
           CPU time for that packet against the same packet sent whole

  bench/mqtt_hostile_clients.py --binary build/gateway/citygate all
  bench/mqtt_hostile_clients.py --binary /tmp/citygate-before partial --connections 6000

Each client is a plain socket in this process; keep --connections under the descriptor limit
(the script raises its own soft limit to the hard one).
"""

import argparse
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
KEEP = False


def varint(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id, keep_alive=60):
    body = b"\x00\x04MQTT\x04\x02" + keep_alive.to_bytes(2, "big")
    body += len(client_id).to_bytes(2, "big") + client_id.encode()
    return packet(0x10, body)


def publish_packet(topic, payload, packet_id=1):
    body = len(topic).to_bytes(2, "big") + topic.encode() + packet_id.to_bytes(2, "big") + payload
    return packet(0x32, body)


def big_publish(size, device="d"):
    """A QoS 1 PUBLISH of exactly `size` bytes with a JSON payload padded by spaces."""
    topic = "city/a/air/" + device
    json = b'{"pm25": 1}'
    overhead = len(publish_packet(topic, json)) - len(json)
    # The remaining length grows by a byte or two for large packets.
    pad = size - overhead - len(json)
    while True:
        candidate = publish_packet(topic, json + b" " * pad)
        if len(candidate) == size:
            return candidate
        pad -= len(candidate) - size


class Gateway:
    def __init__(self, binary, toml=""):
        self.dir = tempfile.mkdtemp(prefix="citygate-hostile-")
        config = os.path.join(self.dir, "citygate.toml")
        with open(config, "w") as f:
            f.write(toml)
        self.log_path = os.path.join(self.dir, "citygate.log")
        self.log = open(self.log_path, "w")
        argv = [binary, "--config", config, "--mqtt-listen", "127.0.0.1", "--http-listen",
                "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--data-dir",
                os.path.join(self.dir, "var"), "--io-threads", "2", "--shards", "2"]
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.mqtt_port = self._port("mqtt listening on ")
        self.http_port = self._port("http listening on ")

    def _port(self, needle):
        deadline = time.time() + 60
        while time.time() < deadline:
            with open(self.log_path) as f:
                for line in f:
                    if needle in line:
                        return int(re.search(needle + r"\S+:(\d+)", line).group(1))
            time.sleep(0.05)
        raise RuntimeError("gateway did not start: " + open(self.log_path).read())

    def rss_mib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=60) as r:
            return r.read().decode()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        if KEEP:
            print(f"  gateway directory kept: {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def mqtt_client(port, client_id, keep_alive=60, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect(("127.0.0.1", port))
    s.sendall(connect_packet(client_id, keep_alive))
    s.settimeout(10)
    connack = s.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"CONNECT refused: {connack!r}")
    return s


def closed_by_peer(s):
    """True once the gateway has closed `s` (reads what is pending without blocking)."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(1 << 20)
            if not data:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def flood(args):
    gateway = Gateway(args.binary, args.toml)
    try:
        time.sleep(0.5)
        start = gateway.rss_mib()
        s = mqtt_client(gateway.mqtt_port, "flood", keep_alive=args.keep_alive, rcvbuf=4096)
        s.setblocking(False)
        unit = publish_packet("city/a/air/flood", b'{"pm25": 1}') if args.qos1 else b"\xc0\x00"
        chunk = unit * (65536 // len(unit))
        sent = 0
        peak = start
        closed_at = None
        began = time.time()
        while time.time() - began < args.seconds:
            _, writable, _ = select.select([], [s], [], 0.2)
            if writable:
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    closed_at = time.time() - began
                    break
            peak = max(peak, gateway.rss_mib())
        end = gateway.rss_mib()
        kind = "QoS 1 PUBLISH" if args.qos1 else "PINGREQ"
        print(f"flood ({kind}, never reading, keep-alive {args.keep_alive} s): sent "
              f"{sent / 2**20:.1f} MiB in {min(args.seconds, time.time() - began):.0f} s; gateway "
              f"RSS {start:.0f} -> {end:.0f} MiB (peak {peak:.0f}, growth {peak - start:.0f} MiB); "
              + (f"closed by the gateway after {closed_at:.0f} s" if closed_at else
                 "still open"))
        s.close()
    finally:
        gateway.stop()


def partial(args):
    gateway = Gateway(args.binary, args.toml)
    try:
        time.sleep(0.5)
        start = gateway.rss_mib()
        head = big_publish(250_000)[:100_000]
        clients = []
        began = time.time()
        for i in range(args.connections):
            try:
                s = mqtt_client(gateway.mqtt_port, f"partial-{i}")
                s.settimeout(5)
                s.sendall(head)
                clients.append(s)
            except OSError as e:
                print(f"  connection {i}: {e}", file=sys.stderr)
                break
        time.sleep(1.0)
        held = gateway.rss_mib()
        open_now = sum(1 for s in clients if not closed_by_peer(s))
        print(f"partial: {len(clients)} clients sent 100 KB of a 250 KB PUBLISH in "
              f"{time.time() - began:.1f} s; gateway RSS {start:.0f} -> {held:.0f} MiB while "
              f"held ({open_now} still open)")
        if args.wait_deadline:
            time.sleep(args.wait_deadline)
            open_after = sum(1 for s in clients if not closed_by_peer(s))
            print(f"  after {args.wait_deadline:.0f} s more: {open_after} still open; RSS "
                  f"{gateway.rss_mib():.0f} MiB")
        for s in clients:
            s.close()
        time.sleep(3.0)
        print(f"  all closed: gateway RSS {gateway.rss_mib():.0f} MiB")
    finally:
        gateway.stop()


def dribble(args):
    gateway = Gateway(args.binary, args.toml)
    try:
        size = args.dribble_size
        whole = big_publish(size, "whole")
        s = mqtt_client(gateway.mqtt_port, "whole")
        time.sleep(0.5)
        cpu = gateway.cpu_seconds()
        repeats = 200  # one whole packet is below the clock tick
        for _ in range(repeats):
            s.sendall(whole)
            ack = s.recv(4)
        whole_cpu = (gateway.cpu_seconds() - cpu) / repeats
        s.close()

        d = mqtt_client(gateway.mqtt_port, "dribble")
        packet_bytes = big_publish(size, "dribble")
        time.sleep(0.5)
        cpu = gateway.cpu_seconds()
        began = time.time()
        gap = args.dribble_gap_us / 1e6
        for i in range(len(packet_bytes)):
            try:
                d.send(packet_bytes[i:i + 1])
            except OSError as error:
                # The packet took longer than mqtt.partial_packet_timeout: closed, as it should be.
                print(f"dribble: {size} byte PUBLISH a byte per send: closed by the gateway after "
                      f"{i} bytes in {time.time() - began:.1f} s ({error.strerror}), gateway CPU "
                      f"{gateway.cpu_seconds() - cpu:.2f} s; use a smaller --dribble-size or "
                      f"--dribble-gap-us on a loaded machine")
                return
            if gap:
                # Spin rather than sleep: sleeps are rounded up to ~60 us or more.
                until = time.perf_counter() + gap
                while time.perf_counter() < until:
                    pass
        d.settimeout(60)
        dribble_ack = d.recv(4)
        dribble_cpu = gateway.cpu_seconds() - cpu
        elapsed = time.time() - began
        d.close()
        print(f"dribble: {size} byte PUBLISH a byte per send: PUBACK {dribble_ack.hex()} after "
              f"{elapsed:.1f} s, gateway CPU {dribble_cpu:.2f} s; the same packet whole: PUBACK "
              f"{ack.hex()}, CPU {whole_cpu * 1000:.2f} ms each (mean of 200)")
    finally:
        gateway.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("attack", choices=["flood", "partial", "dribble", "all"])
    parser.add_argument("--seconds", type=float, default=25)
    parser.add_argument("--keep-alive", type=int, default=60)
    parser.add_argument("--qos1", action="store_true")
    parser.add_argument("--connections", type=int, default=6000)
    parser.add_argument("--wait-deadline", type=float, default=0,
                        help="partial: wait this long after sending (e.g. 12 s for a 10 s deadline)")
    parser.add_argument("--toml", default="", help="config text for the gateway")
    parser.add_argument("--dribble-size", type=int, default=100_000, help="dribble: packet bytes")
    parser.add_argument("--dribble-gap-us", type=float, default=0,
                        help="dribble: pause between bytes, so that each is a segment of its own "
                        "(a 100 KB packet then takes longer than the default 10 s "
                        "mqtt.partial_packet_timeout: raise it with --toml)")
    parser.add_argument("--keep", action="store_true", help="keep the gateway's directory and log")
    args = parser.parse_args()
    global KEEP
    KEEP = args.keep
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for attack in (["flood", "partial", "dribble"] if args.attack == "all" else [args.attack]):
        globals()[attack](args)


if __name__ == "__main__":
    main()
