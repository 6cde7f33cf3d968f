#!/usr/bin/env bash
# Installs the Debian 12 packages citygate needs to build, test and run.
# Idempotent: only packages that are missing are installed; nothing is downloaded
# outside apt.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git clang clang-format libclang-rt-14-dev
  libboost-dev libboost-system-dev libboost-program-options-dev
  libpaho-mqttpp-dev libpaho-mqtt-dev
  librocksdb-dev
  prometheus-cpp-dev
  catch2 libbenchmark-dev
  libsimdjson-dev libtomlplusplus-dev libssl-dev libre2-dev
  libsnappy-dev zlib1g-dev libprotobuf-dev protobuf-compiler
  mosquitto mosquitto-clients curl
  chromium
  prometheus victoria-metrics python3-yaml python3-snappy python3-protobuf
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
