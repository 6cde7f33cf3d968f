#!/usr/bin/env bash
# Runs the same citygate-loadgen scenario against citygate (durable: WAL fsync per batch) and
# against Mosquitto (in memory), both on loopback at free ports, and prints both JSON results,
# their throughput ratio and the generator's own CPU use. Bounded: every run stops by --duration.
#
# usage: bench/compare-mosquitto.sh [build-dir] [-- extra loadgen flags]
#   default scenario: 200 sensors x 500 readings, QoS 1, inflight 16, 1 generator thread.
set -euo pipefail

build=${1:-build-loadgen}
shift || true
[ "${1:-}" = "--" ] && shift
loadgen="$build/loadgen/citygate-loadgen"
citygate="$build/gateway/citygate"
for binary in "$loadgen" "$citygate"; do
  [ -x "$binary" ] || { echo "compare-mosquitto: $binary not built" >&2; exit 2; }
done
command -v mosquitto > /dev/null || { echo "compare-mosquitto: mosquitto not installed" >&2; exit 2; }

work=$(mktemp -d /tmp/compare-mosquitto.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

scenario=(--clients 200 --messages 500 --qos 1 --inflight 16 --threads 1 --connect-rate 2000
          --duration 120 --drain 10 "$@")

# citygate: one I/O thread and two shards, durable acknowledgements (fsync per WAL batch).
"$citygate" --mqtt-listen 127.0.0.1 --http-listen 127.0.0.1 --mqtt-port 0 --http-port 0 \
  --data-dir "$work/citygate" --io-threads 1 --shards 2 --fsync batch > "$work/citygate.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'http listening on' "$work/citygate.log" && break; sleep 0.1; done
cg_port=$(grep -o 'mqtt listening on [0-9.:]*' "$work/citygate.log" | awk -F: '{print $NF}')
[ -n "$cg_port" ] || { cat "$work/citygate.log" >&2; exit 1; }

mq_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\n' \
  "$mq_port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'running' "$work/mosquitto.log" && break; sleep 0.1; done

echo "scenario: ${scenario[*]}"
"$loadgen" --port "$cg_port" "${scenario[@]}" 2> /dev/null | tail -1 > "$work/citygate.json" || true
"$loadgen" --port "$mq_port" "${scenario[@]}" 2> /dev/null | tail -1 > "$work/mosquitto.json" || true
echo "citygate:  $(cat "$work/citygate.json")"
echo "mosquitto: $(cat "$work/mosquitto.json")"
python3 - "$work/citygate.json" "$work/mosquitto.json" << 'PY'
import json, sys
cg, mq = (json.load(open(p)) for p in sys.argv[1:3])
def line(name, r):
    cpu = r["cpu_user_s"] + r["cpu_system_s"]
    print(f"{name:10s} acked {r['acknowledged']:>9} in {r['seconds']:7.2f} s = {r['acked_per_s']:>10.0f}/s"
          f"  ack p50 {r['ack_ms']['p50']:.3f} p99 {r['ack_ms']['p99']:.3f} p99.9 {r['ack_ms']['p99_9']:.3f}"
          f" max {r['ack_ms']['max']:.3f} ms  generator CPU {cpu:.2f} s ({100 * cpu / r['seconds']:.0f}% of a core)")
line("citygate", cg)
line("mosquitto", mq)
if mq["acked_per_s"] > 0:
    print(f"ratio citygate/mosquitto (acked/s): {cg['acked_per_s'] / mq['acked_per_s']:.2f}")
PY
