#!/bin/bash
# First-boot bootstrap ({{bootstrapUnit}}, started by cloud-init). Each step says what it does; any
# failure stops here, leaves the unit failed (`systemctl --failed`) and names what to do.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}
# shellcheck source=/dev/null
. "$VOLUME_ENV_FILE"
lib=$(dirname "$0")
current="starting"
step() {
  current="[$1/8] $2"
  echo "kit-bootstrap: $current"
}
# Every step is safe to run again, so the one fix for any failure is: remove the cause, rerun the unit.
trap 'echo "kit-bootstrap: FAILED at $current. Fix the cause above, then rerun the bootstrap: sudo systemctl restart {{bootstrapUnit}}" >&2' ERR

step 1 "mounting the data volume $VOLUME_DEVICE at $VOLUME_MOUNT"
"$lib/mount-volume.sh"
"$lib/require-volume.sh"

step 2 "creating directories"
# The kit's directories (cloud-init/effects.ts: DIRECTORIES)
{{createDirectories}}

step 3 "installing deno $DENO_VERSION and litestream $LITESTREAM_VERSION"
"$lib/install-artifact.sh" deno
"$lib/install-artifact.sh" litestream

step 4 "fetching the app at $APP_REF"
release=$("$lib/fetch-release.sh" "$APP_REF")
ln -sfn "$release" "$SLOTS_DIR/$APP_PORT"

step 5 "restoring the database from S3 if the volume holds none"
systemctl daemon-reload
systemctl enable --quiet {{restoreUnit}}
if ! systemctl start {{restoreUnit}}; then
  # Its reason is in its own journal: repeat it here, where the operator (and cloud-init's log) looks.
  journalctl -u {{restoreUnit}} --no-pager -o cat -n 20 >&2
  false
fi

step 6 "running the migrate task ($APP_MIGRATE_TASK)"
if [ -e "$DB_FILE" ]; then
  # A restored database: keep a consistent copy from before the migration. Read-only (no write or
  # checkpoint by Debian's sqlite3, kit-sql.js says why) and as the app user (a read-only connection
  # creates the -wal/-shm it does not find, and a root-owned -shm would lock the app out).
  snapshot="$ASIDE_DIR/pre-migrate-$(basename "$release").sqlite3"
  runuser -u "$APP_USER" -- sqlite3 -readonly -cmd '.timeout 10000' "$DB_FILE" ".backup '$snapshot'"
  echo "kit-bootstrap: pre-migration snapshot at $snapshot"
fi
"$lib/run-task.sh" "$release" "$APP_MIGRATE_TASK"

step 7 "starting litestream and the app on 127.0.0.1:$APP_PORT"
systemctl enable --quiet --now {{litestreamUnit}} "app@$APP_PORT.service"
"$lib/wait-healthy.sh" "$APP_PORT"

step 8 "starting the timers ({{enabledNowUnits}}); Caddy and sshd on the kit's files"
systemctl enable --quiet --now {{enabledNowUnits}}
# What the first boot does with the packages' config files (cloud-init/server-files.ts: atFirstBoot)
{{firstBootCommands}}

echo "$release" >"$BOOTSTRAP_DONE_FILE"
echo "kit-bootstrap: done; serving $release"
