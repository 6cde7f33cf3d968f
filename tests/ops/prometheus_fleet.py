#!/usr/bin/env python3
"""Fleet queries: the Prometheus of deploy/prometheus/prometheus-fleet.yml, run as shipped (its
rule files, scrape jobs and remote_read entries; only the host names citygate-N:8080 replaced by
two real citygate instances on loopback), answers one PromQL query with the data of both.

1. Each instance holds its own districts, and one device's readings are split between the two
   (as a shared subscription splits a stream): count, sum and *_over_time through Prometheus
   see every sample of both, the split series as one.
2. Range queries over both instances agree with the samples written.
3. One instance stopped: the query answers with the other's data and a warning, not an error;
   started again, the answer is whole again.
4. The fleet file and the compose "scale" profile name the same consumers.

Usage: prometheus_fleet.py CITYGATE_BINARY. Exits 77 (skipped) only when prometheus or
python3-snappy is missing (deploy/install-deps.sh installs both)."""

import json
import os
import re
import shutil
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prometheus_remote as remote  # noqa: E402  (exits 77 without prometheus or snappy)

import yaml  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FLEET = os.path.join(ROOT, "deploy", "prometheus", "prometheus-fleet.yml")
COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.yml")
fail = remote.fail


def write_lines(gate, lines):
    status, reply, _ = remote.request(gate.url + "/write?db=city&precision=ms",
                                      ("\n".join(lines) + "\n").encode())
    if status != 204:
        fail("line protocol into %s: %d %s" % (gate.url, status, reply[:300]))


def fleet_config(work, gates):
    """The shipped fleet file with citygate-N:8080 pointed at the test instances."""
    text = open(FLEET).read()
    config = yaml.safe_load(text)
    names = [entry["name"] for entry in config["remote_read"]]
    if names != ["citygate-%d" % i for i in range(len(gates))]:
        fail("prometheus-fleet.yml reads %s, the test runs %d instances" % (names, len(gates)))
    for i, gate in enumerate(gates):
        text = text.replace("citygate-%d:8080" % i, "127.0.0.1:%d" % gate.port)
    if re.search(r"citygate-\d+:8080", text):
        fail("host names left in the fleet config: %s" % text)
    path = os.path.join(work, "fleet")
    os.makedirs(path, exist_ok=True)
    for rules in config["rule_files"]:
        shutil.copy(os.path.join(ROOT, "deploy", "prometheus", rules), path)
    return text


def check_compose_names():
    compose = yaml.safe_load(open(COMPOSE))
    consumers = sorted(name for name, service in compose["services"].items()
                       if "scale" in service.get("profiles", []) and name.startswith("citygate-"))
    fleet = yaml.safe_load(open(FLEET))
    read = sorted(entry["name"] for entry in fleet["remote_read"])
    urls = sorted(entry["url"] for entry in fleet["remote_read"])
    if consumers != read or urls != ["http://%s:8080/api/v1/read" % c for c in consumers]:
        fail("compose scale consumers %s, fleet remote_read %s %s" % (consumers, read, urls))
    targets = fleet["scrape_configs"][0]["static_configs"][0]["targets"]
    if sorted(targets) != ["%s:8080" % c for c in consumers]:
        fail("fleet scrape targets %s, compose consumers %s" % (targets, consumers))
    print("ok: prometheus-fleet.yml reads and scrapes the compose consumers %s" % consumers)


def main():
    binary = sys.argv[1]
    check_compose_names()
    work = tempfile.mkdtemp(prefix="citygate-fleet.")
    gates, procs, ok = [], [], False
    try:
        for i in range(2):
            os.makedirs(os.path.join(work, "gate%d" % i))
            gates.append(remote.Citygate(binary, os.path.join(work, "gate%d" % i)))
        now = int(remote.time.time() * 1000) // 1000 * 1000
        a, b = gates
        write_lines(a, ["fleet_pm25,district=pudong,device=p1 value=12.5 %d" % (now - 60_000),
                        "fleet_pm25,district=pudong,device=p1 value=14.5 %d" % (now - 30_000),
                        "fleet_temp,district=jingan,device=s1 value=20 %d" % (now - 90_000),
                        "fleet_temp,district=jingan,device=s1 value=22 %d" % (now - 30_000)])
        write_lines(b, ["fleet_pm25,district=xuhui,device=x1 value=30 %d" % (now - 60_000),
                        "fleet_pm25,district=xuhui,device=x1 value=31 %d" % (now - 20_000),
                        "fleet_temp,district=jingan,device=s1 value=21 %d" % (now - 60_000),
                        "fleet_temp,district=jingan,device=s1 value=23 %d" % now])
        proc, url = remote.prometheus(work, "fleet", fleet_config(work, gates))
        procs.append(proc)

        def query(q, at=now, path="/api/v1/query", extra=None):
            params = {"query": q, "time": "%.3f" % (at / 1000)}
            params.update(extra or {})
            status, body, _ = remote.request(url + path + "?" + urllib.parse.urlencode(params))
            if status != 200:
                fail("fleet query %s: %d %s" % (q, status, body[:300]))
            return json.loads(body)

        def values(q, at=now):
            answer = query(q, at)
            return {tuple(sorted(r["metric"].items())): float(r["value"][1])
                    for r in answer["data"]["result"]}, answer.get("warnings", [])

        got, warnings = values("sum by (district) (fleet_pm25)")
        want = {(("district", "pudong"),): 14.5, (("district", "xuhui"),): 31.0}
        if got != want or warnings:
            fail("sum by district over both instances: %s %s, want %s" % (got, warnings, want))
        got, _ = values('count_over_time(fleet_temp{device="s1"}[5m])')
        if list(got.values()) != [4.0] or len(got) != 1:
            fail("the split series through the fleet: %s, want one series of 4 samples" % got)
        got, _ = values('max_over_time(fleet_temp{device="s1"}[5m])')
        if list(got.values()) != [23.0]:
            fail("max_over_time of the split series: %s" % got)
        got, _ = values("count(fleet_pm25)")
        if list(got.values()) != [2.0]:
            fail("count(fleet_pm25): %s" % got)
        print("ok: one PromQL query through the fleet Prometheus sees both instances' data")

        answer = query('fleet_temp{device="s1"}', path="/api/v1/query_range",
                       extra={"start": "%.3f" % ((now - 90_000) / 1000),
                              "end": "%.3f" % (now / 1000), "step": "30"})
        points = [(int(float(t)), float(v)) for t, v in answer["data"]["result"][0]["values"]]
        want = [((now - 90_000) // 1000, 20.0), ((now - 60_000) // 1000, 21.0),
                ((now - 30_000) // 1000, 22.0), (now // 1000, 23.0)]
        if points != want:
            fail("range query of the split series: %s, want %s" % (points, want))
        print("ok: range query interleaves the two instances' samples of one device")

        b.fixed_port = b.port  # restarted on the port the fleet config names
        b.stop()
        got, warnings = values("sum by (district) (fleet_pm25)")
        if got != {(("district", "pudong"),): 14.5} or not warnings:
            fail("with citygate-1 stopped: %s warnings %s, want pudong only with a warning" %
                 (got, warnings))
        print("ok: one instance down: a partial answer with a warning (%s)" % warnings[0][:80])
        b.start()
        got, warnings = values("sum by (district) (fleet_pm25)")
        want = {(("district", "pudong"),): 14.5, (("district", "xuhui"),): 31.0}
        if got != want or warnings:
            fail("after citygate-1 restarted: %s %s" % (got, warnings))
        print("ok: instance back, the answer is whole again")
        ok = True
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except remote.subprocess.TimeoutExpired:
                proc.kill()
        for gate in gates:
            gate.stop()
        if not ok:
            for root, _, files in os.walk(work):
                for name in files:
                    if name.endswith(".log"):
                        print("--- %s (tail)" % name)
                        with open(os.path.join(root, name), errors="replace") as f:
                            print("".join(f.readlines()[-15:]))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
