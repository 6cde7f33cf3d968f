#!/usr/bin/env bash
# Builds the unit tests (every module's, no integration tests) with ASan and UBSan into
# build-asan and runs them. CI runs it after the main suite; a finding fails the run.
# Usage: tests/sanitize.sh   Environment: SANITIZE_BUILD (build dir), SANITIZE_JOBS (default 2).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SANITIZE_BUILD:-$root/build-asan}
jobs=${SANITIZE_JOBS:-2}
units=(protocols_tests city_tests storage_tests ingest_tests export_tests gateway_tests loadgen_tests
       promql_tests)

launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$root" -B "$build" -G Ninja "${launcher[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCITYGATE_SANITIZE=address,undefined -DCITYGATE_WERROR=ON >/dev/null
cmake --build "$build" -j "$jobs" --target "${units[@]}"

# The first finding ends the test that made it (and so fails the run); leaks are findings too.
# alloc_dealloc_mismatch=0: the tests that count allocations replace the global operator new
# with one on malloc, so ASan would see every such block freed "with the wrong function".
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:alloc_dealloc_mismatch=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd "$build"
# The PromQL harness against a real Prometheus shares the "promql:" prefix but drives the
# citygate binary, which this build does not make: not a unit test.
ctest --output-on-failure --timeout 600 -j "$jobs" \
    -R '^(protocols|city|storage|ingest|export|gateway|loadgen|promql)[:]' \
    -E '^promql: results match a real Prometheus$'
