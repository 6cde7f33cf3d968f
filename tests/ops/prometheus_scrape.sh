#!/usr/bin/env bash
# A real Prometheus scraping a real citygate, all on loopback: starts the gateway on free ports,
# Prometheus (Debian's /usr/bin/prometheus) with deploy/prometheus's rules, scraping and
# evaluating every second, publishes 10 clients x 50 QoS 1 readings with citygate-loadgen, and
# asserts through Prometheus's HTTP API that the series arrived with the values the load implies,
# that the recording rules evaluate and that every rule is healthy.
# Usage: prometheus_scrape.sh CITYGATE_BINARY LOADGEN_BINARY. Exits 77 (skipped) only when
# prometheus is not installed.
set -euo pipefail
citygate=$1
loadgen=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

prometheus=$(command -v prometheus || true)
if [ -z "$prometheus" ]; then
  echo "SKIP: prometheus not installed (Debian package prometheus; deploy/install-deps.sh installs it)"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/citygate-prometheus.XXXXXX")
citygate_pid=""
prometheus_pid=""
cleanup() {
  local status=$?
  # Only the two processes this script started.
  [ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null && wait "$prometheus_pid" 2>/dev/null
  [ -n "$citygate_pid" ] && kill "$citygate_pid" 2>/dev/null && wait "$citygate_pid" 2>/dev/null
  if [ $status -ne 0 ]; then
    echo "--- citygate log (tail)"; tail -n 20 "$work/citygate.log" 2>/dev/null || true
    echo "--- prometheus log (tail)"; tail -n 20 "$work/prometheus.log" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
# The whole test is bounded: no wait below outlives this.
deadline=$((SECONDS + 75))

fail() { echo "FAIL: $*" >&2; exit 1; }
wait_until() {  # wait_until DESCRIPTION COMMAND...: retry every 0.2 s until it succeeds.
  local what=$1; shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    sleep 0.2
  done
}

"$citygate" --mqtt-listen 127.0.0.1 --http-listen 127.0.0.1 --mqtt-port 0 --http-port 0 \
  --data-dir "$work/data" --io-threads 1 --shards 2 >"$work/citygate.log" 2>&1 &
citygate_pid=$!
wait_until "citygate to listen" grep -q "http listening on 127.0.0.1:" "$work/citygate.log"
wait_until "citygate to listen" grep -q "mqtt listening on 127.0.0.1:" "$work/citygate.log"
mqtt_port=$(sed -n 's/.*mqtt listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/citygate.log" | head -n1)
http_port=$(sed -n 's/.*http listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/citygate.log" | head -n1)

prometheus_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/prometheus.yml" <<CONFIG
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/deploy/prometheus/recording-rules.yml
  - $root/deploy/prometheus/alert-rules.yml
scrape_configs:
  - job_name: citygate
    static_configs:
      - targets: ["127.0.0.1:$http_port"]
CONFIG
"$prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prometheus_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
api="http://127.0.0.1:$prometheus_port/api/v1"
wait_until "prometheus to be ready" curl -fsS "http://127.0.0.1:$prometheus_port/-/ready"

# query EXPR: prints the value of a one-element instant vector (nothing if empty).
query() {
  curl -fsS --max-time 5 -G "$api/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
answer = json.load(sys.stdin)
assert answer["status"] == "success", answer
result = answer["data"]["result"]
assert len(result) <= 1, result
if result:
    print(result[0]["value"][1])'
}
# query_is EXPR VALUE: the query answers exactly VALUE (compared as numbers).
query_is() {
  local got
  got=$(query "$1") || return 1
  [ -n "$got" ] && python3 -c 'import sys; sys.exit(float(sys.argv[1]) != float(sys.argv[2]))' "$got" "$2"
}
query_positive() {
  local got
  got=$(query "$1") || return 1
  [ -n "$got" ] && python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > 0)' "$got"
}

wait_until "the first scrape of citygate" query_is 'up{job="citygate"}' 1
query_is 'citygate_samples_written_total{job="citygate"}' 0 || fail "samples written before any load"

"$loadgen" --port "$mqtt_port" --http-port "$http_port" --clients 10 --messages 50 --qos 1 \
  --threads 1 --verify >"$work/loadgen.out" 2>&1 || { cat "$work/loadgen.out"; fail "loadgen failed"; }
report=$(tail -n1 "$work/loadgen.out")
read -r acknowledged readings < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["acknowledged"], r["verify"]["readings_expected"])' "$report")
[ "$acknowledged" -eq 500 ] || fail "loadgen: $acknowledged of 500 readings acknowledged"
echo "loadgen: $acknowledged messages acknowledged, $readings readings stored"

# What the load implies, seen through Prometheus (waits for the next scrapes).
wait_until "citygate_samples_written_total == $readings" \
  query_is 'citygate_samples_written_total{job="citygate"}' "$readings"
wait_until "500 QoS 1 messages" query_is 'citygate_messages_received_total{job="citygate",qos="1"}' 500
wait_until "500 PUBACKs" query_is 'citygate_packets_total{job="citygate",direction="out",type="puback"}' 500
wait_until "500 ack latencies" query_is 'citygate_ack_latency_seconds_count{job="citygate"}' 500
wait_until "10 accepted connects" query_is 'citygate_connects_total{job="citygate",result="accepted"}' 10
wait_until "per-shard points adding up" query_is 'sum(citygate_storage_points_written_total{job="citygate"})' "$readings"
wait_until "connections closed again" query_is 'citygate_connections{job="citygate",listener="mqtt"}' 0
query_positive 'citygate_series{job="citygate"}' || fail "no series in citygate_series"
query_is 'sum(citygate_errors_total{job="citygate"})' 0 || fail "errors counted under a clean load"
query_is 'count(citygate_build_info{job="citygate"})' 1 || fail "no citygate_build_info"

# Recording rules evaluated on the scraped data.
wait_until "citygate:samples_written:rate1m > 0" query_positive 'citygate:samples_written:rate1m{job="citygate"}'
wait_until "citygate:ack_latency_seconds:p99_5m" query_positive 'citygate:ack_latency_seconds:p99_5m{job="citygate"}'
# The limit the gateway serves: mqtt.max_connections, or less where the open-file limit is lower.
limit=$(curl -fsS --max-time 5 "http://127.0.0.1:$http_port/metrics" |
  sed -n 's/^citygate_connections_limit \([0-9.e+]*\)$/\1/p' | python3 -c 'import sys; print(int(float(sys.stdin.read())))')
[ "$limit" -gt 0 ] || fail "citygate_connections_limit not served"
wait_until "citygate:connections_limit == $limit" query_is 'citygate:connections_limit{job="citygate"}' "$limit"
query_is 'citygate:connections:sum{job="citygate"}' 0 || fail "citygate:connections:sum"

# Every rule group loaded and every rule healthy (no evaluation errors); nothing firing.
curl -fsS --max-time 5 "$api/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
names = {g["name"] for g in groups}
assert names == {"citygate.recording", "citygate.alerts"}, names
bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
assert not bad, bad
firing = [r["name"] for r in rules if r.get("state") == "firing"]
assert not firing, firing
print(f"prometheus: {len(rules)} rules healthy, none firing")'
echo "PASS: Prometheus scraped citygate: $readings samples, 500 messages, recording rules evaluated"
