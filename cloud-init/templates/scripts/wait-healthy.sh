#!/bin/bash
# Usage: wait-healthy.sh PORT [SECONDS]
# Waits until the app on 127.0.0.1:PORT answers its health path with 2xx; exits 1 after SECONDS (default 60).
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}

port=${1:?usage: wait-healthy.sh PORT [SECONDS]}
limit=${2:-60}
url="http://127.0.0.1:$port$APP_HEALTH_PATH"
for _ in $(seq 1 "$limit"); do
  if curl --fail --silent --max-time 5 --output /dev/null "$url"; then
    echo "kit: app healthy at $url"
    exit 0
  fi
  sleep 1
done
echo "kit: app not healthy at $url after ${limit}s; see: journalctl -u app@$port.service" >&2
exit 1
