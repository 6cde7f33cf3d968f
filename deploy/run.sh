#!/usr/bin/env bash
# Builds citygate and runs the gateway in the foreground on the embedded defaults:
# MQTT on 1883, HTTP API and /metrics on 8080, data under ./var/. Extra arguments go to citygate
# (for example --config deploy/citygate.example.toml).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/build.sh" >&2
cd "$root"
exec "${CITYGATE_BUILD_DIR:-$root/build}/gateway/citygate" "$@"
