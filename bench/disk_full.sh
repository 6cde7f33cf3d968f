#!/usr/bin/env bash
# Issue 11's full-disk rows, reproduced: a 64 MiB data volume (tmpfs; ext4 on a loop device when
# it can be mounted) filled under QoS 1 load from citygate-loadgen. Prints, per volume and fsync
# policy: time to full, whether citygate crashed or held writes, how long it took to resume after
# the bench freed space (a filler file it wrote first, leaving FREE_MIB, default 24 MiB, free),
# acknowledged vs stored readings
# (the load generator's --verify), and what a restart on the still-full volume does.
# Needs root (mount). Usage:
#   bench/disk_full.sh [CITYGATE_BINARY] [LOADGEN_BINARY]
#   VOLUMES="tmpfs ext4" FSYNC="none batch" DURATION=20 FREE_MIB=24 bench/disk_full.sh build/gateway/citygate
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$(realpath "${1:-$root/build/gateway/citygate}")
loadgen=$(realpath "${2:-$root/build/loadgen/citygate-loadgen}")
volumes=${VOLUMES:-"tmpfs ext4"}
policies=${FSYNC:-"none batch"}
duration=${DURATION:-20}
free_left=${FREE_MIB:-24}
[ "$(id -u)" = 0 ] || { echo "disk_full.sh: needs root to mount the 64 MiB volumes" >&2; exit 77; }

work=$(mktemp -d /tmp/citygate-diskfull.XXXXXX)
vol=$work/vol
gw_pid=""
lg_pid=""
cleanup() {
  [ -n "$lg_pid" ] && kill "$lg_pid" 2>/dev/null
  [ -n "$gw_pid" ] && kill -9 "$gw_pid" 2>/dev/null
  wait 2>/dev/null
  mountpoint -q "$vol" && umount -l "$vol"
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
free_mib() { df -B1 --output=avail "$vol" | tail -1 | awk '{ printf "%.1f", $1 / 1048576 }'; }
readyz() { curl -s -o "$work/readyz" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$hp/readyz"; }
metric() {
  curl -s --max-time 2 "http://127.0.0.1:$hp/metrics" | awk -v m="$1" '$1 == m { print $2; exit }'
}
alive() { [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; }

mount_volume() {
  mkdir -p "$vol"
  case $1 in
    tmpfs) mount -t tmpfs -o size=64m tmpfs "$vol" ;;
    ext4)
      truncate -s 64M "$work/ext4.img" && mkfs.ext4 -q -F "$work/ext4.img" &&
        mount -o loop "$work/ext4.img" "$vol" ;;
  esac
}
unmount_volume() { umount -l "$vol" 2>/dev/null; rm -f "$work/ext4.img"; }

start_gateway() {  # log file
  "$bin" --data-dir "$vol/data" --mqtt-listen 127.0.0.1 --http-listen 127.0.0.1 \
    --mqtt-port "$mp" --http-port "$hp" --shards 2 --io-threads 2 --fsync "$fsync" >"$1" 2>&1 &
  gw_pid=$!
  for _ in $(seq 100); do
    grep -q "http listening" "$1" 2>/dev/null && return 0
    alive || return 1
    sleep 0.1
  done
  return 1
}
stop_gateway() {
  if alive; then
    kill "$gw_pid"
    for _ in $(seq 300); do alive || break; sleep 0.1; done
    alive && kill -9 "$gw_pid"
  fi
  wait "$gw_pid" 2>/dev/null
  gw_pid=""
}
exit_of() {  # the exit status of the finished gateway, as text
  wait "$gw_pid" 2>/dev/null
  local rc=$?
  gw_pid=""
  if [ "$rc" -gt 128 ]; then echo "signal $((rc - 128))$( [ $rc = 134 ] && echo ' (SIGABRT)')"; else echo "exit $rc"; fi
}

run_one() {  # volume fsync
  local volume=$1
  fsync=$2
  mount_volume "$volume" || { echo "| $volume | $fsync | cannot mount a $volume volume here | | | | |"; return; }
  mp=$(free_port)
  hp=$(free_port)
  local log=$work/gateway-$volume-$fsync.log
  start_gateway "$log" || { echo "| $volume | $fsync | did not start: $(tail -1 "$log") |"; unmount_volume; return; }
  # The filler leaves FREE_MIB free, so the load fills the volume in seconds.
  local avail
  avail=$(df -B1M --output=avail "$vol" | tail -1)
  dd if=/dev/zero of="$vol/filler" bs=1M count=$((avail - free_left)) status=none
  local t0 outcome="" t_full="-" resume="-" restart_full="-" detail=""
  # A reading per ms per sensor, stamped 1 ms apart and ending about now: all of it is stored
  # (not refused as late or from the future).
  "$loadgen" --port "$mp" --http-port "$hp" --clients 50 --messages 100000 --interval-ms 1 \
    --qos 1 --inflight 16 --threads 2 --duration "$duration" --drain 20 --reconnect true \
    --reconnect-attempts 0 --verify \
    --report "$work/report.json" >"$work/loadgen.log" 2>&1 &
  lg_pid=$!
  t0=$(now)
  # Until citygate dies or says it is full, at most the load's duration.
  while :; do
    if ! alive; then
      t_full=$(since "$t0"); outcome="crashed: $(exit_of)"
      detail=$(grep -m1 -o "Assertion.*failed" "$log" | cut -c1-80)
      break
    fi
    if [ "$(readyz)" = 503 ]; then t_full=$(since "$t0"); outcome="held"; break; fi
    [ "$(since "$t0" | cut -d. -f1)" -ge "$duration" ] && { outcome="never full"; break; }
    sleep 0.1
  done
  if [ "$outcome" = held ]; then
    local w1 w2
    w1=$(metric citygate_samples_written_total)
    sleep 3
    w2=$(metric citygate_samples_written_total)
    alive || outcome="held, then crashed: $(exit_of)"
    detail="free $(free_mib) MiB; written while held: $(awk -v a="$w1" -v b="$w2" 'BEGIN{print b-a}') samples in 3 s"
    rm -f "$vol/filler"
    local tr
    tr=$(now)
    while alive && [ "$(readyz)" != 200 ] && [ "$(since "$tr" | cut -d. -f1)" -lt 30 ]; do sleep 0.05; done
    local w3 w4
    w3=$(metric citygate_samples_written_total)
    sleep 0.5
    w4=$(metric citygate_samples_written_total)
    resume="$(since "$tr") s, no restart ($(awk -v a="$w3" -v b="$w4" 'BEGIN{printf "%d", (b-a)*2}') samples/s after)"
  else
    # The issue's path: restart on the still-full volume, then free space and restart.
    if [ "${outcome#crashed}" != "$outcome" ]; then
      local tr
      tr=$(now)
      if start_gateway "$work/restart-full.log"; then
        sleep 2
        if alive; then restart_full="up: /readyz $(readyz)"; stop_gateway; else restart_full="died after $(since "$tr") s: $(exit_of)"; fi
      else
        restart_full="died after $(since "$tr") s: $(exit_of) $(grep -m1 -o 'Assertion.*failed\|cannot open storage.*' "$work/restart-full.log" | cut -c1-60)"
      fi
      rm -f "$vol/filler"
      local tr2
      tr2=$(now)
      start_gateway "$work/restart-freed.log" && resume="restart needed; up $(since "$tr2") s after the freeing restart"
    fi
  fi
  wait "$lg_pid" 2>/dev/null
  lg_pid=""
  local acked stored
  acked=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); v=r.get("verify",{}); print(r["acknowledged"], v.get("readings_expected","?"), v.get("readings_missing","?"), v.get("error",""))' "$work/report.json" 2>/dev/null)
  stored=$(echo "$acked" | awk '{ if ($2 == "?") print "?"; else print $2 - $3 }')
  # A restart on a volume filled to the last byte (what a crash leaves behind).
  if [ "$restart_full" = "-" ] && alive; then
    stop_gateway
    dd if=/dev/zero of="$vol/filler" bs=1M status=none 2>/dev/null
    local tr
    tr=$(now)
    if start_gateway "$work/restart-full.log"; then
      sleep 2
      if alive; then
        local q
        q=$(curl -s -o /dev/null -w '%{http_code}' -G --max-time 5 "http://127.0.0.1:$hp/api/v1/series" --data-urlencode 'match={__name__=~".+"}')
        restart_full="up: /readyz $(readyz) ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reasons"][-1][:40])' "$work/readyz" 2>/dev/null)), queries $q"
        rm -f "$vol/filler"
        local tw
        tw=$(now)
        while alive && [ "$(readyz)" != 200 ] && [ "$(since "$tw" | cut -d. -f1)" -lt 30 ]; do sleep 0.05; done
        restart_full="$restart_full; writable $(since "$tw") s after freeing"
      else
        restart_full="died after $(since "$tr") s: $(exit_of)"
      fi
    else
      restart_full="died after $(since "$tr") s: $(exit_of)"
    fi
  fi
  stop_gateway
  local verdict
  verdict=$(echo "$acked" | awk '{ printf "%s messages acked = %s readings; %s of them stored", $1, $2, "'"$stored"'" }')
  [ -n "$(echo "$acked" | cut -d' ' -f4-)" ] && verdict="$verdict (verify: $(echo "$acked" | cut -d' ' -f4-))"
  echo "| $volume | $fsync | $t_full s | $outcome ${detail:+($detail)} | $resume | $verdict | $restart_full |"
  unmount_volume
}

echo "citygate: $bin ($("$bin" --version 2>/dev/null))"
echo "load: citygate-loadgen, 50 clients, QoS 1, 16 in flight each, a reading per ms per client, ${duration} s; 64 MiB volume, a filler leaves ${free_left} MiB free and is deleted to free space"
echo
echo "| volume | fsync | time to full | what happened | after freeing space | acked vs stored | restart on the full volume |"
echo "|---|---|---|---|---|---|---|"
for volume in $volumes; do
  for policy in $policies; do
    run_one "$volume" "$policy"
  done
done
