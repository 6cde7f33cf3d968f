#!/usr/bin/env bash
# Builds citygate and runs the whole test suite with ctest. Extra arguments go to ctest
# (for example -R integration).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/build.sh"
cd "${CITYGATE_BUILD_DIR:-$root/build}"
ctest --output-on-failure --timeout 600 -j "${CITYGATE_TEST_JOBS:-2}" "$@"
