#!/usr/bin/env bash
# Checks deploy/prometheus with promtool: the scrape configs and rule files are valid
# (promtool check config|rules) and every alert fires and stays quiet where its unit tests say
# (promtool test rules deploy/prometheus/tests/*.yml). Exits 77 (skipped) without promtool.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if ! command -v promtool >/dev/null 2>&1; then
  echo "SKIP: promtool not installed (Debian package prometheus; deploy/install-deps.sh installs it)"
  exit 77
fi
cd "$root/deploy/prometheus"
promtool check config prometheus.yml
promtool check config prometheus-compose.yml
promtool check config prometheus-fleet.yml
promtool check rules recording-rules.yml alert-rules.yml
promtool test rules tests/*.yml

# Every alert in alert-rules.yml has a unit test that expects it to fire.
missing=0
for alert in $(sed -n 's/^ *- alert: *//p' alert-rules.yml | sort -u); do
  if ! grep -q "alertname: $alert\$" tests/*.yml; then
    echo "alert $alert has no promtool unit test in deploy/prometheus/tests" >&2
    missing=1
  fi
done
exit $missing
