#!/usr/bin/env bash
# Installs what is missing, configures and builds citygate into ./build (Release by default).
# Shared by run.sh and test.sh; safe to run again.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/install-deps.sh"

build_dir=${CITYGATE_BUILD_DIR:-$root/build}
build_type=${CITYGATE_BUILD_TYPE:-RelWithDebInfo}
jobs=${CITYGATE_JOBS:-$(nproc)}
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE="$build_type" "$@"
elif [ $# -gt 0 ]; then
  cmake -S "$root" -B "$build_dir" "$@"
fi
cmake --build "$build_dir" -j "$jobs"
