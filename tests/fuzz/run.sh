#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang, ASan and UBSan, then runs each for the
# given number of seconds (default 60) on its committed seed corpus. Usage: run.sh [seconds]
# Environment: FUZZ_BUILD (build dir, default build-fuzz), FUZZ_JOBS (parallel runs, default 1),
# FUZZ_TARGETS (space-separated subset).
set -euo pipefail

seconds=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
jobs=${FUZZ_JOBS:-1}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

targets=${FUZZ_TARGETS:-$(cd "$root/tests/fuzz" && ls *.cpp | sed 's/\.cpp$//')}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCITYGATE_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="$flags" >/dev/null
# shellcheck disable=SC2086
ninja -C "$build" -j2 $targets

status=0
for target in $targets; do
    seeds="$root/tests/fuzz/corpus/$target"
    work="$build/fuzz/$target/corpus"
    artifacts="$build/fuzz/$target/artifacts/"
    mkdir -p "$work" "$artifacts"
    log="$build/fuzz/$target/run.log"
    echo "== $target for ${seconds}s (log: $log)"
    parallel=()
    if [ "$jobs" -gt 1 ]; then parallel=(-jobs="$jobs" -workers="$jobs"); fi
    if ! "$build/tests/$target" -max_total_time="$seconds" -print_final_stats=1 \
        "${parallel[@]}" -artifact_prefix="$artifacts" -max_len=4096 \
        "$work" "$seeds" >"$log" 2>&1; then
        echo "!! $target found a problem: see $log and $artifacts"
        status=1
    fi
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)" "$log" || true
    ls "$artifacts" 2>/dev/null | sed 's/^/   artifact: /'
done
exit $status
