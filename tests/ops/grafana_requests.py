#!/usr/bin/env python3
"""Replays the requests Grafana's Prometheus data source sends against a real citygate and checks
the shape of every answer. The requests follow Grafana's open-source Prometheus data source
(pkg/tsdb/prometheus and public/app/plugins/datasource/prometheus, Grafana 10/11) and its
documented behaviour with `httpMethod: POST`; they were not captured from a running Grafana:

  health check    POST /api/v1/query  query=1+1&time=NOW (the "Save & test" button), and
                  GET /api/v1/status/buildinfo (version detection)
  metric browser  GET /api/v1/labels?start&end, GET /api/v1/label/__name__/values?start&end,
                  GET /api/v1/metadata
  templating      label_values(metric, label): GET /api/v1/label/LABEL/values?match[]=..&start&end
                  (Prometheus >= 2.24), or GET /api/v1/series?match[]=..&start&end (older)
  panels          POST /api/v1/query_range query&start&end&step, form-encoded, for every
                  target of deploy/grafana/city.json (variables substituted), and its instant
                  targets as POST /api/v1/query

Starts citygate on loopback (free ports, a temporary directory), publishes a city's readings
over MQTT (QoS 1, JSON with timestamps) and asks. Also checks the error envelope of a bad query,
of one over http.max_query_series (a gateway with a small limit) and of one past its timeout= (503).

Usage: grafana_requests.py CITYGATE_BINARY
"""
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import mqtt_hostile_clients as mqtt  # noqa: E402  (bench/: a plain-socket MQTT client)

failures = []


def check(ok, message):
    if not ok:
        failures.append(message)
        print("FAIL:", message)


def request(base, method, path, params):
    body = urllib.parse.urlencode(params, doseq=True)
    if method == "GET":
        req = urllib.request.Request(f"{base}{path}?{body}")
    else:
        req = urllib.request.Request(f"{base}{path}", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), json.loads(e.read())


def is_time(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_value(v):
    try:
        float(v)
        return isinstance(v, str)
    except (TypeError, ValueError):
        return False


def check_success(what, answer):
    status, ctype, body = answer
    check(status == 200, f"{what}: HTTP {status} {body}")
    check(ctype.startswith("application/json"), f"{what}: content type {ctype}")
    check(body.get("status") == "success", f"{what}: status {body.get('status')}")
    return body.get("data")


def check_matrix(what, data, want_series=True):
    check(isinstance(data, dict) and data.get("resultType") == "matrix", f"{what}: resultType {data}")
    result = data.get("result", []) if isinstance(data, dict) else []
    check(not want_series or len(result) > 0, f"{what}: no series")
    for series in result:
        check(isinstance(series.get("metric"), dict), f"{what}: metric {series}")
        values = series.get("values")
        check(isinstance(values, list) and values, f"{what}: values {series}")
        for point in values or []:
            check(len(point) == 2 and is_time(point[0]) and is_value(point[1]), f"{what}: point {point}")
    return result


def publish_city(port, now_ms):
    sock = mqtt.mqtt_client(port, "grafana-requests")
    sensors = [("pudong", "air", "a-1", "pm25"), ("xuhui", "air", "a-2", "pm25"), ("jingan", "air", "a-3", "pm25"),
               ("pudong", "noise", "n-1", "noise"), ("xuhui", "noise", "n-2", "noise"),
               ("jingan", "noise", "n-3", "noise")]
    packet_id = 0
    for minute in range(30, 0, -1):
        ts = now_ms - minute * 60_000
        for i, (district, kind, device, measurement) in enumerate(sensors):
            packet_id += 1
            payload = json.dumps({"ts": ts, measurement: 20 + i * 5 + minute % 7}).encode()
            sock.sendall(mqtt.publish_packet(f"city/{district}/{kind}/{device}", payload, packet_id))
    acks = b""
    sock.settimeout(30)
    while len(acks) < 4 * packet_id:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("citygate closed the connection")
        acks += data
    sock.close()
    return sensors


def substitute(expr, variables):
    for name, value in variables.items():
        expr = expr.replace("$" + name, value)
    return expr


def main():
    binary = sys.argv[1]
    gateway = mqtt.Gateway(binary, "")
    try:
        base = f"http://127.0.0.1:{gateway.http_port}"
        now = int(time.time() * 1000)
        publish_city(gateway.mqtt_port, now)
        start, end = str((now - 3600_000) // 1000), str(now // 1000)

        # Health check: "1+1" at now, as Grafana's data source test sends it.
        data = check_success("health check", request(base, "POST", "/api/v1/query", {"query": "1+1", "time": end}))
        check(data == {"resultType": "scalar", "result": [int(end), "2"]}, f"health check: {data}")
        data = check_success("health check (GET)", request(base, "GET", "/api/v1/query", {"query": "1+1", "time": end}))
        check(data == {"resultType": "scalar", "result": [int(end), "2"]}, f"health check (GET): {data}")
        build = check_success("buildinfo", request(base, "GET", "/api/v1/status/buildinfo", {}))
        check(re.match(r"^\d+\.\d+\.\d+$", build.get("version", "")) is not None, f"buildinfo version {build}")

        # Metric browser.
        labels = check_success("labels", request(base, "GET", "/api/v1/labels", {"start": start, "end": end}))
        check(isinstance(labels, list) and {"__name__", "district", "device", "type"} <= set(labels),
              f"labels {labels}")
        names = check_success("metric names", request(base, "GET", "/api/v1/label/__name__/values",
                                                       {"start": start, "end": end}))
        check(names == ["noise", "pm25"], f"metric names {names}")
        metadata = check_success("metadata", request(base, "GET", "/api/v1/metadata", {}))
        check(isinstance(metadata, dict) and set(metadata) == {"noise", "pm25"} and
              all(isinstance(v, list) and v and "type" in v[0] and "help" in v[0] for v in metadata.values()),
              f"metadata {metadata}")

        # Templating: label_values({__name__="pm25"}, district), both ways Grafana asks.
        values = check_success("label values with match[]", request(
            base, "GET", "/api/v1/label/district/values",
            {"match[]": '{__name__="pm25"}', "start": start, "end": end}))
        check(values == ["jingan", "pudong", "xuhui"], f"label values {values}")
        series = check_success("series", request(base, "GET", "/api/v1/series",
                                                  {"match[]": "pm25", "start": start, "end": end}))
        check(isinstance(series, list) and len(series) == 3 and
              all(s.get("__name__") == "pm25" and "district" in s for s in series), f"series {series}")
        limited = request(base, "GET", "/api/v1/label/district/values", {"limit": "1"})
        check(limited[2].get("data") == ["jingan"] and limited[2].get("warnings"), f"limit {limited}")

        # Panels of the city dashboard, variables as Grafana substitutes them.
        dashboard = json.load(open(os.path.join(ROOT, "deploy", "grafana", "city.json")))
        variables = {"measurement": "pm25", "district": "pudong|xuhui|jingan", "__interval": "1m",
                     "__rate_interval": "4m"}
        targets = 0
        for panel in dashboard["panels"]:
            check(panel.get("datasource", {}).get("uid") == "citygate", f"panel {panel['title']} data source")
            for target in panel.get("targets", []):
                targets += 1
                expr = substitute(target["expr"], variables)
                what = f"panel {panel['title']!r} {expr}"
                if target.get("instant"):
                    data = check_success(what, request(base, "POST", "/api/v1/query", {"query": expr, "time": end}))
                    check(data.get("resultType") == "vector" and data.get("result"), f"{what}: {data}")
                    for sample in data.get("result", []):
                        check(is_time(sample["value"][0]) and is_value(sample["value"][1]), f"{what}: {sample}")
                else:
                    data = check_success(what, request(base, "POST", "/api/v1/query_range",
                                                       {"query": expr, "start": start, "end": end, "step": "60"}))
                    check_matrix(what, data)
        check(targets >= 5, f"city dashboard has {targets} targets")
        # The district averages are what was published: pm25 of xuhui is 25 + minute % 7.
        data = check_success("district average", request(base, "POST", "/api/v1/query", {
            "query": 'avg by (district) (pm25{district="xuhui"})', "time": str((now - 10 * 60_000) / 1000)}))
        check(data["result"] == [{"metric": {"district": "xuhui"},
                                  "value": [(now - 10 * 60_000) / 1000, str(25 + 10 % 7)]}] or
              float(data["result"][0]["value"][1]) == 25 + 10 % 7, f"district average {data}")

        # Errors: Prometheus' envelope and codes.
        status, _, body = request(base, "POST", "/api/v1/query_range", {"query": "sum(", "start": start, "end": end,
                                                                        "step": "60"})
        check(status == 400 and body.get("errorType") == "bad_data" and "parse error" in body.get("error", ""),
              f"bad query: {status} {body}")
        status, _, body = request(base, "GET", "/api/v1/query_range", {"query": "pm25", "start": end, "end": start,
                                                                       "step": "60"})
        check(status == 400 and body.get("errorType") == "bad_data", f"end before start: {status} {body}")
        # citygate's own API still answers on the old and the new path.
        for path in ("/api/v1/query_range", "/api/citygate/v1/query_range"):
            status, _, body = request(base, "GET", path, {"series": "pm25", "start": str(now - 3600_000),
                                                          "end": str(now)})
            check(status == 200 and len(body["data"]["result"]) == 3 and "series" in body["data"]["result"][0],
                  f"own query_range on {path}: {status} {str(body)[:200]}")
    finally:
        gateway.stop()

    # A query over a budget is 422 naming the option.
    gateway = mqtt.Gateway(binary, "[http]\nmax_query_series = 2\n")
    try:
        base = f"http://127.0.0.1:{gateway.http_port}"
        now = int(time.time() * 1000)
        publish_city(gateway.mqtt_port, now)
        status, _, body = request(base, "POST", "/api/v1/query", {"query": "count(pm25)", "time": str(now / 1000)})
        check(status == 422 and body.get("errorType") == "execution" and
              "http.max_query_series" in body.get("error", ""), f"over the series limit: {status} {body}")
    finally:
        gateway.stop()

    # A query past its deadline (Prometheus' timeout= here, shorter than http.query_timeout) is
    # 503 with errorType timeout; reads are slowed by the testing option storage.test_read_delay.
    gateway = mqtt.Gateway(binary, '[storage]\ntest_read_delay = "300ms"\n')
    try:
        base = f"http://127.0.0.1:{gateway.http_port}"
        now = int(time.time() * 1000)
        publish_city(gateway.mqtt_port, now)
        status, _, body = request(base, "POST", "/api/v1/query",
                                  {"query": "pm25", "time": str(now / 1000), "timeout": "0.2"})
        check(status == 503 and body.get("errorType") == "timeout", f"past the deadline: {status} {body}")
        status, _, body = request(base, "GET", "/api/v1/query", {"query": "time()", "timeout": "5m"})
        check(status == 200 and body.get("data", {}).get("resultType") == "scalar", f"no reads: {status} {body}")
    finally:
        gateway.stop()

    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("every Grafana request answered in Prometheus' shape")
    return 0


if __name__ == "__main__":
    sys.exit(main())
