#!/usr/bin/env bash
# Validates deploy/'s container, compose, systemd and Kubernetes files (see deploy_files.py);
# picks a python3 that has PyYAML (Debian python3-yaml). Usage: deploy_files.sh CITYGATE LOADGEN
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for python in /usr/bin/python3 python3; do
  if command -v "$python" >/dev/null 2>&1 && "$python" -c 'import yaml' 2>/dev/null; then
    exec "$python" "$here/deploy_files.py" "$@"
  fi
done
echo "SKIP: no python3 with PyYAML (Debian package python3-yaml; deploy/install-deps.sh installs it)"
exit 77
