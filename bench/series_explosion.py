#!/usr/bin/env python3
"""Series explosion against a citygate binary (issue 11): one anonymous client sends QoS 1
messages of --fields new field names each (every message new series), on the loopback only,
bounded in time. Reports the gateway's RSS and series count over time, when the first reading
was refused (or, before series limits, when storage silently stopped creating series), and what a
new device and an existing series get afterwards.

  bench/series_explosion.py --binary build/gateway/citygate
  bench/series_explosion.py --binary /tmp/citygate-before --seconds 120
  bench/series_explosion.py --binary build/gateway/citygate --protocol 3.1.1
  bench/series_explosion.py --binary build/gateway/citygate --toml 'ingest.max_new_series_per_minute = 0'

The gateway is started by the script (temporary data directory, free ports, 2 I/O threads,
2 shards). "refused" counts PUBACKs with a reason code >= 0x80 (MQTT 5) and connections the
gateway closed instead of acknowledging (3.1.1); the client reconnects after a close, as devices
do.
"""

import argparse
import json
import socket
import sys
import time
import urllib.parse

import mqtt_hostile_clients  # bench/: the script's own directory is on sys.path


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


def utf8(s):
    return len(s).to_bytes(2, "big") + s.encode()


class Client:
    """A blocking raw MQTT client: CONNECT, pipelined QoS 1 PUBLISHes, PUBACK reasons."""

    def __init__(self, port, client_id, v5):
        self.v5 = v5
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        level = 5 if v5 else 4
        body = b"\x00\x04MQTT" + bytes([level, 0x02]) + (60).to_bytes(2, "big")
        if v5:
            body += b"\x00"  # no properties
        body += utf8(client_id)
        self.sock.sendall(packet(0x10, body))
        self.buf = b""
        kind, data = self.read_packet()
        if kind != 0x20 or data[1] != 0:
            raise RuntimeError(f"CONNECT refused: {data!r}")
        self.next_id = 1

    def read_packet(self):
        while True:
            if len(self.buf) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buf):
                    length |= (self.buf[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not self.buf[i - 1] & 0x80:
                        break
                else:
                    i = None
                if i is not None and not (self.buf[i - 1] & 0x80) and len(self.buf) >= i + length:
                    kind = self.buf[0] & 0xF0
                    data = self.buf[i:i + length]
                    self.buf = self.buf[i + length:]
                    return kind, data
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed by the gateway")
            self.buf += chunk

    def publish(self, topic, payload):
        pid = self.next_id
        self.next_id = self.next_id % 65535 + 1
        body = utf8(topic) + pid.to_bytes(2, "big")
        if self.v5:
            body += b"\x00"
        self.sock.sendall(packet(0x32, body + payload))
        return pid

    def puback(self):
        """The next PUBACK's reason code (0 for a 3.1.1 PUBACK)."""
        while True:
            kind, data = self.read_packet()
            if kind == 0x40:
                return data[2] if len(data) > 2 else 0

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.close()
        except OSError:
            pass


class Gateway(mqtt_hostile_clients.Gateway):
    """The hostile-clients bench's gateway, with the queries this bench reads."""

    def __init__(self, binary, toml):
        super().__init__(binary, toml.replace("\\n", "\n") + "\n")

    def metric(self, name):
        total = 0.0
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def metric_lines(self, prefix):
        return [l for l in self.get("/metrics").splitlines() if l.startswith(prefix)]

    def stored(self, selector):
        q = urllib.parse.urlencode({"match": selector})
        return json.loads(self.get("/api/v1/series?" + q))["data"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--protocol", choices=["3.1.1", "5"], default="5")
    p.add_argument("--fields", type=int, default=50, help="new field names per message")
    p.add_argument("--inflight", type=int, default=32, help="unacknowledged messages at once")
    p.add_argument("--seconds", type=float, default=60, help="bound on the explosion")
    p.add_argument("--after", type=float, default=5,
                   help="seconds to keep sending once the first refusal was seen")
    p.add_argument("--toml", default="", help="configuration text (\\n for newlines)")
    args = p.parse_args()
    v5 = args.protocol == "5"

    gateway = Gateway(args.binary, args.toml)
    try:
        now_ms = lambda: int(time.time() * 1000)
        # An existing series of another device, written before the explosion.
        keeper = Client(gateway.mqtt_port, "keeper", v5)
        keeper.publish("city/pudong/air/keeper-1", b'{"pm25": 1}')
        keeper.puback()

        started = time.time()
        first_refusal = None
        sent = acked = refused = closes = 0
        counter = 0
        samples = []
        next_sample = started
        client = Client(gateway.mqtt_port, "exploder", v5)
        outstanding = 0
        series_stalled_at = None
        last_series, last_series_change = -1, started
        while True:
            t = time.time()
            if t - started > args.seconds:
                break
            if first_refusal is not None and t - first_refusal > args.after:
                break
            if t >= next_sample:
                series = gateway.metric("citygate_series")
                samples.append((round(t - started, 1), int(series), round(gateway.rss_mib())))
                if series != last_series:
                    last_series, last_series_change = series, t
                elif series_stalled_at is None and t - last_series_change > 3 and series > 0:
                    # Before limits were refused: storage stops creating series, silently.
                    series_stalled_at = last_series_change - started
                    if first_refusal is None:
                        first_refusal = t  # stop soon after, as after a refusal
                next_sample = t + 1
            try:
                while outstanding < args.inflight:
                    fields = ", ".join(f'"f{counter * args.fields + i}": {i}'
                                       for i in range(args.fields))
                    counter += 1
                    client.publish("city/pudong/air/exploder",
                                   ("{" + fields + f', "ts": {now_ms()}' + "}").encode())
                    sent += 1
                    outstanding += 1
                reason = client.puback()
                outstanding -= 1
                if reason >= 0x80:
                    refused += 1
                    if first_refusal is None:
                        first_refusal = time.time()
                else:
                    acked += 1
            except (ConnectionError, OSError):
                closes += 1
                refused += outstanding  # never acknowledged
                outstanding = 0
                if first_refusal is None:
                    first_refusal = time.time()
                client = Client(gateway.mqtt_port, "exploder", v5)
        client.close()
        exploded_s = time.time() - started
        series = int(gateway.metric("citygate_series"))
        rss = round(gateway.rss_mib())

        # Afterwards: a new device, and the existing series of another.
        fresh = Client(gateway.mqtt_port, "newcomer", v5)
        fresh.publish("city/pudong/air/newcomer-1", f'{{"pm25": 7, "ts": {now_ms()}}}'.encode())
        fresh_reason = fresh.puback()
        fresh.close()
        keeper.publish("city/pudong/air/keeper-1", f'{{"pm25": 2, "ts": {now_ms()}}}'.encode())
        keeper_reason = keeper.puback()
        keeper.close()
        fresh_stored = len(gateway.stored('pm25{device="newcomer-1"}'))

        report = {
            "protocol": args.protocol,
            "messages_sent": sent,
            "acknowledged_ok": acked,
            "refused": refused,
            "closed_by_gateway": closes,
            "first_refusal_s": round(first_refusal - started, 2) if first_refusal else None,
            "series_stopped_growing_s": round(series_stalled_at, 1) if series_stalled_at else None,
            "ran_s": round(exploded_s, 1),
            "series": series,
            "rss_mib": rss,
            "peak_rss_mib": max([s[2] for s in samples] + [rss]),
            "new_device_puback": hex(fresh_reason),
            "new_device_stored": fresh_stored,
            "existing_series_puback": hex(keeper_reason),
            "timeline_s_series_rssmib": samples[:: max(1, len(samples) // 12)],
            "metrics": gateway.metric_lines("citygate_series_refused_total")
            + [l for l in gateway.metric_lines("citygate_errors_total") if "series" in l]
            + gateway.metric_lines("citygate_storage_points_rejected_total"),
        }
        print(json.dumps(report))
        log = open(gateway.log_path).read()
        warns = [l for l in log.splitlines() if "series" in l and " warn " in l]
        for line in warns[:3]:
            print("log:", line[:300], file=sys.stderr)
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
