#!/usr/bin/env python3
"""Healthy client's PUBACK latency while N wrong-password CONNECTs hit at once (loopback only).

usage: bench/auth_flood.py CITYGATE_BINARY [--attackers 500] [--extra-toml '...']
Starts the binary on free ports with a PBKDF2 (100k) credentials file, connects an anonymous
healthy client from 127.0.0.1, sends QoS 1 PUBLISHes every 10 ms for 8 s and fires the CONNECTs
from 127.0.0.2-51 one second in. Prints p50/p99/max PUBACK latency and how the attackers ended."""
import argparse, os, socket, struct, subprocess, sys, tempfile, threading, time, re, select

def s(b): return struct.pack('>H', len(b)) + b
def frame(first, body):
    out = bytearray([first]); n = len(body)
    while True:
        b = n % 128; n //= 128; out.append(b | 0x80 if n else b)
        if not n: break
    return bytes(out) + body
def connect(cid, user=None, pw=None):
    flags = 0x02 | (0xC0 if user else 0)
    body = s(b'MQTT') + bytes([4, flags, 0, 60]) + s(cid.encode())
    if user: body += s(user.encode()) + s(pw.encode())
    return frame(0x10, body)
def publish(pid, topic, payload):
    return frame(0x32, s(topic.encode()) + struct.pack('>H', pid) + payload.encode())
def recv_n(sock, n, timeout=30):
    data = b''; end = time.time() + timeout
    while len(data) < n:
        r, _, _ = select.select([sock], [], [], max(0, end - time.time()))
        if not r: return None
        chunk = sock.recv(n - len(data))
        if not chunk: return None
        data += chunk
    return data

ap = argparse.ArgumentParser()
ap.add_argument('binary'); ap.add_argument('--attackers', type=int, default=500)
ap.add_argument('--extra-toml', default='')
a = ap.parse_args()
d = tempfile.mkdtemp(prefix='auth-bench-')
h = subprocess.run([a.binary, '--hash-password'], input=b'a human password\n', capture_output=True).stdout.decode().strip()
open(os.path.join(d, 'cred'), 'w').write('person:' + h + '\n')
open(os.path.join(d, 'c.toml'), 'w').write('[auth]\ncredentials_file = "%s/cred"\n%s\n' % (d, a.extra_toml.replace('\\n', '\n')))
log = open(os.path.join(d, 'log'), 'w')
p = subprocess.Popen([a.binary, '--config', d + '/c.toml', '--mqtt-listen', '127.0.0.1', '--http-listen', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0', '--data-dir', d + '/var'], stdout=log, stderr=subprocess.STDOUT)
port = None
for _ in range(300):
    m = re.search(r'mqtt listening on [^:]+:(\d+)', open(d + '/log').read())
    if m: port = int(m.group(1)); break
    time.sleep(0.1)
assert port, open(d + '/log').read()
hc = socket.create_connection(('127.0.0.1', port)); hc.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
hc.sendall(connect('healthy')); assert recv_n(hc, 4)[3] == 0
lat = []; results = {}
def attack():
    socks = []
    for i in range(a.attackers):
        c = socket.socket(); c.bind(('127.0.0.%d' % (2 + i % 50), 0)); c.connect(('127.0.0.1', port))
        socks.append(c)
    for i, c in enumerate(socks): c.sendall(connect('att%d' % i, 'person', 'wrong'))
    for c in socks:
        r = recv_n(c, 4, 120); k = 'none' if not r else 'code%d' % r[3]
        results[k] = results.get(k, 0) + 1
t = threading.Thread(target=attack)
start = time.time(); pid = 0; started = False
while time.time() - start < 8:
    if not started and time.time() - start > 1: t.start(); started = True
    pid = pid % 65535 + 1; t0 = time.perf_counter()
    hc.sendall(publish(pid, 'city/putuo/air/healthy', '{"ts":%d,"pm25":1}' % int(time.time() * 1000)))
    r = recv_n(hc, 4, 30); lat.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.01)
t.join(); p.terminate(); p.wait()
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
print('attackers=%d pubacks=%d p50=%.1fms p99=%.1fms max=%.1fms attackers_end=%s' % (a.attackers, len(lat), q(0.5), q(0.99), lat[-1], results))
