#!/usr/bin/env bash
# Heap allocations per message of a live citygate: a fresh gateway (fsync none, data in a
# temporary directory, loopback only) under a fixed QoS 1 load from citygate-loadgen (100
# connections, MQTT 3.1.1), with malloc counted by a perf uprobe on libc over 5 s of the steady
# part. Needs root and perf (linux-perf); prints one line. Where they come from:
#   RECORD=FILE bench/live_allocations.sh ...   records call graphs instead (perf report -i FILE).
#
#   bench/live_allocations.sh [BUILD_DIR=build] [RATE=10000]
set -euo pipefail
build=${1:-build}
rate=${2:-10000}
clients=100
interval=$((clients * 1000 / rate))
if [ "$interval" -lt 1 ]; then
  echo "live_allocations: at most $((clients * 1000)) msg/s" >&2
  exit 2
fi
libc=$(ldd "$build/gateway/citygate" | awk '/libc\.so/ {print $3}')
perf probe -q -d probe_libc:malloc 2>/dev/null || true
perf probe -q -x "$libc" malloc
work=$(mktemp -d)
cleanup() {
  if [ -n "${pid:-}" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  perf probe -q -d probe_libc:malloc 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$build/gateway/citygate" --mqtt-listen 127.0.0.1 --http-listen 127.0.0.1 --mqtt-port 0 \
  --http-port 0 --data-dir "$work/data" --fsync none >"$work/citygate.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q "mqtt listening on 127.0.0.1:" "$work/citygate.log" && break
  sleep 0.1
done
port=$(grep -o "mqtt listening on 127.0.0.1:[0-9]*" "$work/citygate.log" | head -1 | cut -d: -f2)
[ -n "$port" ] || { echo "live_allocations: citygate did not start" >&2; exit 1; }

# Readings stamped up to now, one interval apart, so none is refused as late or from the future.
per_client=$((14 * 1000 / interval))
start_ms=$(($(date +%s%3N) - per_client * interval))
"$build/loadgen/citygate-loadgen" --host 127.0.0.1 --port "$port" --protocol 3.1.1 \
  --clients "$clients" --messages "$per_client" --qos 1 --inflight 64 --interval-ms "$interval" \
  --duration 12 --drain 2 --connect-rate 0 --start-ms "$start_ms" >"$work/loadgen.txt" 2>&1 &
loadgen=$!
sleep 4  # connected and steady
if [ -n "${RECORD:-}" ]; then
  perf record -q -e probe_libc:malloc --call-graph dwarf,8192 -o "$RECORD" -p "$pid" -- sleep 2
  wait "$loadgen" || true  # its verdict on the run is not this script's
  echo "call graphs of 2 s at $rate msg/s in $RECORD"
  exit 0
fi
perf stat -x, -e probe_libc:malloc -p "$pid" -o "$work/perf.txt" -- sleep 5
wait "$loadgen" || true
count=$(grep probe_libc "$work/perf.txt" | cut -d, -f1)
awk -v n="$count" -v r="$rate" 'BEGIN {
  printf "citygate at %d msg/s (QoS 1, fsync none): %d malloc calls in 5 s, %.2f a message\n", r, n, n / (5 * r)
}'
