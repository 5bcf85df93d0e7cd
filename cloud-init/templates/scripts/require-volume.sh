#!/bin/bash
# Exits non-zero unless the data volume is mounted, so that the app, Litestream and the backups never
# write to the root disk (where data would be lost with the server).
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}
# shellcheck source=/dev/null
. "$VOLUME_ENV_FILE"

if ! mountpoint -q "$VOLUME_MOUNT"; then
  echo "kit: the data volume is not mounted at $VOLUME_MOUNT (expected device $VOLUME_DEVICE)." >&2
  echo "kit: refusing to start: nothing may be written to the root disk." >&2
  echo "kit: fix: attach the volume (cdktf deploy, or the cloud console), then run:" >&2
  echo "kit:   sudo $(dirname "$0")/mount-volume.sh && sudo systemctl restart {{restoreUnit}} {{litestreamUnit}} app@$APP_PORT.service" >&2
  exit 1
fi
