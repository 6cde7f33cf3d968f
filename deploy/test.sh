#!/usr/bin/env bash
# Builds citygate with warnings as errors and runs the whole test suite with ctest. Extra
# arguments go to ctest (for example -R integration). CITYGATE_WERROR=OFF builds without -Werror.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/build.sh" -DCITYGATE_WERROR="${CITYGATE_WERROR:-ON}"
cd "${CITYGATE_BUILD_DIR:-$root/build}"
ctest --output-on-failure --timeout 600 -j "${CITYGATE_TEST_JOBS:-2}" "$@"
