#!/usr/bin/env python3
"""Re-admission after a restart: how fast a freshly started gateway (cold credential cache)
admits N devices that all reconnect at once with their own username and password.

Writes a credentials file for N devices (hmac-sha256 device secrets, or pbkdf2-sha256 at 100k
iterations as a human account would have), starts citygate with anonymous access off on
127.0.0.1, connects N clients at once with citygate-loadgen and prints the admission rate and the
time 100,000 devices would take at that rate. Loopback only, bounded by --timeout.

  bench/readmission.py BUILD_DIR [--devices 18000] [--scheme device|password]
  bench/readmission.py --citygate BIN --loadgen BIN ...    (e.g. an older build to compare)
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def credential(scheme, secret):
    salt = os.urandom(16)
    b64 = lambda b: base64.b64encode(b).decode()
    if scheme == "device":
        mac = hmac.new(salt, secret.encode(), hashlib.sha256).digest()
        return f"hmac-sha256${b64(salt)}${b64(mac)}"
    derived = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 100_000)
    return f"pbkdf2-sha256$100000${b64(salt)}${b64(derived)}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build", nargs="?", help="build directory with gateway/ and loadgen/")
    parser.add_argument("--citygate")
    parser.add_argument("--loadgen")
    parser.add_argument("--devices", type=int, default=18000)
    parser.add_argument("--scheme", choices=["device", "password"], default="device")
    parser.add_argument("--connect-rate", type=int, default=0,
                        help="new connections per second (0: all at once, the worst case)")
    parser.add_argument("--hold", type=int, default=60,
                        help="s the run lasts: every device must be admitted within it")
    parser.add_argument("--timeout", type=int, default=600, help="s the loadgen may run")
    args = parser.parse_args()
    citygate = args.citygate or os.path.join(args.build, "gateway/citygate")
    loadgen = args.loadgen or os.path.join(args.build, "loadgen/citygate-loadgen")

    with tempfile.TemporaryDirectory(prefix="citygate-readmission-") as work:
        started = time.monotonic()
        with open(os.path.join(work, "credentials"), "w") as out:
            for i in range(args.devices):
                out.write(f"d{i}:{credential(args.scheme, f'secret-{i}-0123456789abcdef')}\n")
        print(f"credentials: {args.devices} {args.scheme} lines in "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr)
        with open(os.path.join(work, "citygate.toml"), "w") as out:
            out.write(f'[auth]\nallow_anonymous = "never"\n'
                      f'credentials_file = "{work}/credentials"\n')
        log = open(os.path.join(work, "citygate.log"), "w+")
        gateway = subprocess.Popen(
            [citygate, "--config", f"{work}/citygate.toml", "--mqtt-listen", "127.0.0.1",
             "--http-listen", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0",
             "--data-dir", f"{work}/var"], stdout=log, stderr=subprocess.STDOUT)
        try:
            port = None
            for _ in range(300):
                log.seek(0)
                found = re.search(r"mqtt listening on 127\.0\.0\.1:(\d+)", log.read())
                if found:
                    port = found.group(1)
                    break
                time.sleep(0.1)
            if not port:
                sys.exit("citygate did not start:\n" + open(log.name).read())
            run = subprocess.run(
                [loadgen, "--port", port, "--clients", str(args.devices), "--messages", "0",
                 "--hold", "true", "--duration", str(args.hold), "--drain", "1",
                 "--connect-rate", str(args.connect_rate),
                 "--threads", "2", "--keep-alive", "300", "--bind", "127.0.0.2-127.0.0.3",
                 "--client-id", "d{index}", "--username", "d{index}",
                 "--password", "secret-{index}-0123456789abcdef"],
                capture_output=True, text=True, timeout=args.timeout)
            report = json.loads(run.stdout.strip().splitlines()[-1])
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)
    rate = report.get("connects_per_s", 0)
    print(json.dumps({
        "scheme": args.scheme, "devices": args.devices, "connected": report.get("connected"),
        "connect_failed": report.get("connect_failed"), "connects_per_s": rate,
        "connack_p50_ms": report.get("connack_ms", {}).get("p50"),
        "connack_p99_ms": report.get("connack_ms", {}).get("p99"),
        "s_for_100k_devices": round(100_000 / rate, 1) if rate else None}))


if __name__ == "__main__":
    main()
