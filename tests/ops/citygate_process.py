"""Shared by the ops tests: a real citygate process on loopback ports, and waiting helpers."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

DEADLINE = time.monotonic() + 150  # a test sets its own


def fail(message):
    raise AssertionError(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, interval=0.2):
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError, IndexError, AssertionError):
            pass
        if time.monotonic() > DEADLINE:
            fail("timed out waiting for " + what)
        time.sleep(interval)


def request(url, body=None, headers=None, method=None):
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as reply:
            return reply.status, reply.read(), dict(reply.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


class Citygate:
    """citygate on 127.0.0.1 with its data under `work`; the HTTP port is read from its log
    (port 0) unless `fixed_port` is set before a restart."""

    def __init__(self, binary, work, toml=""):
        self.binary, self.work, self.toml = binary, work, toml
        self.starts = 0
        self.fixed_port = None
        self.start()

    def start(self):
        self.starts += 1
        config = os.path.join(self.work, "citygate.toml")
        with open(config, "w") as f:
            f.write(self.toml)
        self.log = os.path.join(self.work, "citygate-%d.log" % self.starts)
        self.proc = subprocess.Popen(
            [self.binary, "--config", config, "--mqtt-listen", "127.0.0.1", "--http-listen",
             "127.0.0.1", "--mqtt-port", "0", "--http-port", str(self.fixed_port or 0),
             "--data-dir", os.path.join(self.work, "data"), "--io-threads", "1", "--shards", "2"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

        def ports():
            if self.proc.poll() is not None:
                fail("citygate exited: " + open(self.log).read()[-2000:])
            mqtt = http = None
            with open(self.log) as f:
                for line in f:
                    if "mqtt listening on 127.0.0.1:" in line:
                        mqtt = int(line.split("mqtt listening on 127.0.0.1:")[1].split()[0])
                    if "http listening on 127.0.0.1:" in line:
                        http = int(line.split("http listening on 127.0.0.1:")[1].split()[0])
            return (mqtt, http) if mqtt and http else None
        self.mqtt_port, self.port = wait_until("citygate to listen", ports)
        self.url = "http://127.0.0.1:%d" % self.port

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM (SIGKILL after 20 s); the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def series(self, selector, start_ms=0, end_ms=None):
        """{series key: [(ts, value), ...]} from citygate's own raw query API."""
        end_ms = end_ms or int(time.time() * 1000) + 600_000
        query = urllib.parse.urlencode({"series": selector, "start": start_ms, "end": end_ms})
        status, body, _ = request(self.url + "/api/v1/query_range?" + query)
        if status != 200:
            fail("query_range %s: %d %s" % (selector, status, body[:300]))
        result = json.loads(body)["data"]["result"]
        return {r["series"]: [(int(t), float(v)) for t, v in r["values"]] for r in result}

    def metric(self, name, labels=""):
        """The value of one sample of /metrics (`name{labels}`), 0 when absent."""
        _, body, _ = request(self.url + "/metrics")
        want = name + ("{" + labels + "}" if labels else "")
        for line in body.decode().splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0


def make_test_ca(openssl, directory):
    """A test CA (ca.pem, ca.key) and a server certificate for 127.0.0.1 signed by it
    (server.pem, server.key) in `directory`, readable by a broker that drops to its own user."""
    os.makedirs(directory, exist_ok=True)

    def run(*args):
        subprocess.run([openssl] + list(args), check=True, capture_output=True, cwd=directory)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=citygate test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
    os.chmod(directory, 0o755)
