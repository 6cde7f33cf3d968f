#!/usr/bin/env bash
# Installs what is missing, configures and builds citygate into ./build (RelWithDebInfo by
# default). Shared by run.sh and test.sh; safe to run again. Extra arguments go to CMake (a build
# dir configured before is configured again with them). Warnings are errors only where asked:
# test.sh and CI pass -DCITYGATE_WERROR=ON; run.sh passes nothing, so a user's first build never
# stops on a warning a newer compiler invents (a build dir keeps the value it was configured with).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/install-deps.sh"

build_dir=${CITYGATE_BUILD_DIR:-$root/build}
build_type=${CITYGATE_BUILD_TYPE:-RelWithDebInfo}
jobs=${CITYGATE_JOBS:-$(nproc)}
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
launcher=()  # a developer's ccache, when installed, makes rebuilds in fresh build dirs cheap
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build_dir" "${generator[@]}" "${launcher[@]}" \
    -DCMAKE_BUILD_TYPE="$build_type" "$@"
elif [ $# -gt 0 ]; then
  cmake -S "$root" -B "$build_dir" "$@"
fi
cmake --build "$build_dir" -j "$jobs"
