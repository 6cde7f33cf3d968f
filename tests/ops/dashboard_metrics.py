#!/usr/bin/env python3
"""Checks that deploy/grafana/citygate.json and deploy/prometheus's rules only use metrics that
exist: starts the real citygate on loopback, reads the names /metrics serves (and /metrics/city
when it is served), and checks every PromQL expression in the dashboard (panel targets and
template variable queries) against them plus the recording rules. Also checks the dashboard's
structure: unique panel ids, a datasource and refId on every target, the templating variables
the queries use.

Usage: dashboard_metrics.py CITYGATE_BINARY
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "citygate.json")
RULES = [os.path.join(ROOT, "deploy", "prometheus", f) for f in ("recording-rules.yml", "alert-rules.yml")]
# Per-district aggregates are served on a separate path (issue 7, item 1); their name is part of
# the contract even before the running binary serves it. Prometheus's own series are allowed too.
CONTRACT_NAMES = {"citygate_city_avg_1m", "up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2",
            # aggregation operators, which may stand before their by/without clause
            "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
            "bottomk", "topk", "quantile"}
failures = []


def fail(message):
    failures.append(message)
    print("FAIL:", message)


def served_names(binary):
    """Starts citygate on free loopback ports and returns the metric names it serves."""
    with tempfile.TemporaryDirectory(prefix="citygate-dashboard.") as work:
        log_path = os.path.join(work, "citygate.log")
        with open(log_path, "w") as log:
            gateway = subprocess.Popen(
                [binary, "--mqtt-listen", "127.0.0.1", "--http-listen", "127.0.0.1", "--mqtt-port", "0",
                 "--http-port", "0", "--data-dir", os.path.join(work, "data"), "--io-threads", "1",
                 "--shards", "1"], stdout=log, stderr=subprocess.STDOUT)
        try:
            port = None
            deadline = time.monotonic() + 20
            while port is None:
                if time.monotonic() > deadline or gateway.poll() is not None:
                    sys.exit("citygate did not start:\n" + open(log_path).read())
                found = re.search(r"http listening on 127\.0\.0\.1:(\d+)", open(log_path).read())
                port = found and found.group(1)
                time.sleep(0.1)
            names = set()
            for path in ("/metrics", "/metrics/city"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                        text = answer.read().decode()
                except urllib.error.HTTPError as error:
                    if path == "/metrics":
                        raise
                    print(f"note: {path} answers {error.code}; {sorted(CONTRACT_NAMES - {'up'})} taken from the contract")
                    continue
                for match in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
                    name, kind = match.groups()
                    names.add(name)
                    if kind in ("histogram", "summary"):
                        names.update({name + "_bucket", name + "_sum", name + "_count"})
                for match in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M):
                    names.add(match.group(1))
            return names
        finally:
            gateway.terminate()
            try:
                gateway.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gateway.kill()
                gateway.wait()


def metric_names(expr):
    """The metric names a PromQL expression (with Grafana variables) selects."""
    names = set()
    # Grafana's label_values(metric, label) / label_values(label): only the metric is a name.
    for match in re.finditer(r"label_values\(\s*([^,()]*?)\s*(?:,\s*\w+\s*)?\)", expr):
        inner = match.group(1)
        if "," in match.group(0) or "{" in inner:
            names.update(metric_names(inner))
        return names
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)                                     # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)                                    # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", text)                               # Grafana variables
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.groups()
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs(dashboard):
    """(where, expr) for every panel target and query variable, rows' nested panels included."""
    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f'panel "{panel.get("title")}" target {target.get("refId")}', target.get("expr", "")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield f'variable ${variable["name"]}', query["query"] if isinstance(query, dict) else query


def rule_exprs(path):
    """(kind, name, expr) of every rule; a small reader for the rule files' own layout."""
    text = open(path).read()
    rules = []
    for block in re.split(r"\n(?=[ \t]*- (?:record|alert):)", text)[1:]:
        kind, name = re.match(r"[ \t]*- (record|alert): *(\S+)", block).groups()
        expr = re.search(r"\n\s*expr: *(\|\n(?:\s{10,}.*\n?)+|.*)", block).group(1)
        rules.append((kind, name, expr.lstrip("|")))
    return rules


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    served = served_names(sys.argv[1])
    citygate_served = {n for n in served if n.startswith("citygate_")}
    print(f"citygate serves {len(citygate_served)} citygate_* names")
    recorded = {name for path in RULES for kind, name, _ in rule_exprs(path) if kind == "record"}
    known = served | recorded | CONTRACT_NAMES

    with open(DASHBOARD) as f:
        dashboard = json.load(f)  # parses, or the test fails here
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dashboard:
            fail(f"dashboard has no {key}")
    ids = []
    checked = 0
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for where, expr in dashboard_exprs(dashboard):
        if not expr.strip():
            fail(f"{where}: empty expression")
            continue
        for name in sorted(metric_names(expr)):
            checked += 1
            if name not in known:
                fail(f"{where}: {name} is neither served by citygate nor a recording rule: {expr}")
        for used in re.findall(r"\$\{?(\w+)", expr):
            if not used.startswith("__") and used not in variables:
                fail(f"{where}: uses ${used}, which is not a dashboard variable")
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        if "gridPos" not in panel:
            fail(f'panel "{panel["title"]}" has no gridPos')
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != "${datasource}" or not target.get("refId"):
                fail(f'panel "{panel["title"]}": a target without the $datasource or a refId')
    if len(ids) != len(set(ids)):
        fail("panel ids are not unique")
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("ingest rate", "ack latency", "connections", "queue depth", "wal write latency", "district"):
        if topic not in titles:
            fail(f"no panel about {topic}")

    # The rules: every citygate_* name they read is served, every citygate:* name is recorded.
    for path in RULES:
        for kind, name, expr in rule_exprs(path):
            for used in metric_names(expr):
                checked += 1
                if used.startswith("citygate_") and used not in served:
                    fail(f"{os.path.basename(path)} {name}: {used} is not served by citygate")
                if used.startswith("citygate:") and used not in recorded:
                    fail(f"{os.path.basename(path)} {name}: {used} is not a recording rule")
    if failures:
        sys.exit(f"{len(failures)} problem(s)")
    print(f"PASS: {checked} metric references in the dashboard and rules all exist")


if __name__ == "__main__":
    main()
