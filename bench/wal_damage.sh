#!/usr/bin/env bash
# Issue 11's damaged-WAL table: kill -9 citygate under QoS 1 load, then damage copies of the data
# directory as the issue did (cut 7 bytes / 1 MB off the newest shard log, overwrite 64 bytes in
# its middle) and restart on each: does it start, and how many readings are readable?
# "acked" is the count readable after the kill with the log untouched (every acknowledged
# reading, as the kill -9 tests prove); "lost" is what a damage made disappear. A binary that
# refuses is then started with --recover=point-in-time, if it knows the flag.
# Usage: bench/wal_damage.sh CITYGATE_BINARY [LOADGEN_BINARY] [load seconds]
# Example (before/after): bench/wal_damage.sh /work/main/build/gateway/citygate
#                         bench/wal_damage.sh build/gateway/citygate
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(realpath "$1")
loadgen=$(realpath "${2:-$root/build/loadgen/citygate-loadgen}")
seconds=${3:-6}
work=$(mktemp -d /tmp/citygate-wal-damage.XXXXXX)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mqtt=$((20000 + RANDOM % 20000)); http=$((mqtt + 1))
cat > "$work/citygate.toml" <<TOML
[http]
max_query_points = 200000000
max_query_bytes = 4294967296
query_memory_budget = 4294967296
max_query_series = 1000000
TOML

start() {  # start DIR LOG [extra args]: sets pid
  local dir=$1 log=$2; shift 2
  "$bin" --config "$work/citygate.toml" --mqtt-listen 127.0.0.1 --http-listen 127.0.0.1 \
    --mqtt-port "$mqtt" --http-port "$http" --data-dir "$dir" --shards 2 --io-threads 2 "$@" \
    >"$log" 2>&1 &
  pid=$!
}

wait_up() {  # wait_up PID LOG: 0 once serving, 1 when it exited
  for _ in $(seq 600); do
    grep -q "http listening on" "$2" && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

readable() {  # points stored, all series, all time
  curl -sS --max-time 120 -G "http://127.0.0.1:$http/api/v1/query_range" \
    --data-urlencode 'series={__name__=~".+"}' --data-urlencode start=0 \
    --data-urlencode end=9000000000000 --data-urlencode step=9000000000000 \
    --data-urlencode function=count --data-urlencode group_by= --data-urlencode source=raw |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(sum(v[1] for s in r for v in s["values"])))'
}

# Load, then kill -9 in the middle of it.
start "$work/var" "$work/run.log"
wait_up "$pid" "$work/run.log"
"$loadgen" --port "$mqtt" --clients 400 --messages 3000 --qos 1 --inflight 32 \
  --duration $((seconds + 5)) --drain 1 --threads 1 >"$work/loadgen.json" 2>"$work/loadgen.log" &
sleep "$seconds"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
sleep 1

newest_log() {  # the biggest log of any shard: where the load's recent batches are
  find "$1" -name '*.log' -path '*shard-*' -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2
}

echo "binary: $bin"
printf '%-34s %-40s %10s %10s\n' case start readable lost
baseline=
for case in untouched "cut 7 bytes" "cut 1 MB" "overwrite 64 bytes in the middle"; do
  dir="$work/case"
  rm -rf "$dir"
  cp -a "$work/var" "$dir"
  log=$(newest_log "$dir")
  size=$(stat -c %s "$log")
  case "$case" in
    "cut 7 bytes") truncate -s $((size - 7)) "$log" ;;
    "cut 1 MB") truncate -s $((size > 1048576 ? size - 1048576 : 0)) "$log" ;;
    "overwrite 64 bytes"*) printf 'Z%.0s' $(seq 64) | dd of="$log" bs=1 seek=$((size / 2)) conv=notrunc status=none ;;
  esac
  start "$dir" "$work/case.log"
  how="starts"
  if ! wait_up "$pid" "$work/case.log"; then
    wait "$pid" 2>/dev/null && rc=0 || rc=$?
    how="refused (exit $rc)"
    echo "    $case: $(grep -o 'shard [0-9]*: the write-ahead log is damaged ([^)]*)' "$work/case.log" | head -1 || tail -c 300 "$work/case.log")" >&2
    if "$bin" --help 2>&1 | grep -q -- '--recover'; then
      start "$dir" "$work/case.log" --recover=point-in-time
      wait_up "$pid" "$work/case.log" && how="$how; --recover=point-in-time starts"
    fi
  fi
  if kill -0 "$pid" 2>/dev/null; then
    n=$(readable)
    [ -z "$baseline" ] && baseline=$n
    dropped=$(curl -sS "http://127.0.0.1:$http/metrics" | awk '/^citygate_storage_wal_dropped_(bytes|records)\{/ {s[$1]=$2} END {for (k in s) if (s[k] > 0) printf "%s=%s ", k, s[k]}')
    printf '%-34s %-40s %10s %10s %s\n' "$case" "$how" "$n" $((baseline - n)) "$dropped"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  else
    printf '%-34s %-40s %10s %10s\n' "$case" "$how" - -
  fi
done
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("loadgen: acknowledged", r.get("acknowledged"), "messages of", r.get("sent"), "sent")' "$work/loadgen.json" 2>/dev/null || true
