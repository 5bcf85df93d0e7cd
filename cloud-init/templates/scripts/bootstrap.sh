#!/bin/bash
# First-boot bootstrap (kit-bootstrap.service, started by cloud-init). Each step says what it does; any
# failure stops here, leaves the unit failed (`systemctl --failed`) and names what to do.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}
lib=$(dirname "$0")
current="starting"
step() {
  current="[$1/8] $2"
  echo "kit-bootstrap: $current"
}
# Every step is safe to run again, so the one fix for any failure is: remove the cause, rerun the unit.
trap 'echo "kit-bootstrap: FAILED at $current. Fix the cause above, then rerun the bootstrap: sudo systemctl restart kit-bootstrap.service" >&2' ERR

step 1 "mounting the data volume $VOLUME_DEVICE at $VOLUME_MOUNT"
"$lib/mount-volume.sh"
"$lib/require-volume.sh"

step 2 "creating directories"
install -d -o "$APP_USER" -g "$APP_USER" -m 0750 "$DB_DIR" "$BACKUP_DIR" "$ASIDE_DIR" "$SCRATCH_DIR" "$DRILL_DIR"
install -d -m 0755 "$RELEASES_DIR" "$SLOTS_DIR" "$(dirname "$BOOTSTRAP_DONE_FILE")"

step 3 "installing deno $DENO_VERSION and litestream $LITESTREAM_VERSION"
"$lib/install-artifact.sh" deno
"$lib/install-artifact.sh" litestream

step 4 "fetching the app at $APP_REF"
release=$("$lib/fetch-release.sh" "$APP_REF")
ln -sfn "$release" "$SLOTS_DIR/$APP_PORT"

step 5 "restoring the database from S3 if the volume holds none"
systemctl daemon-reload
systemctl enable --quiet db-restore.service
if ! systemctl start db-restore.service; then
  # Its reason is in its own journal: repeat it here, where the operator (and cloud-init's log) looks.
  journalctl -u db-restore.service --no-pager -o cat -n 20 >&2
  false
fi

step 6 "running the migrate task ($APP_MIGRATE_TASK)"
if [ -e "$DB_FILE" ]; then
  # A restored database: keep a consistent copy from before the migration.
  snapshot="$ASIDE_DIR/pre-migrate-$(basename "$release").sqlite3"
  sqlite3 "$DB_FILE" ".backup '$snapshot'"
  chown "$APP_USER:$APP_USER" "$snapshot"
  echo "kit-bootstrap: pre-migration snapshot at $snapshot"
fi
"$lib/run-task.sh" "$release" "$APP_MIGRATE_TASK"

step 7 "starting litestream and the app on 127.0.0.1:$APP_PORT"
systemctl enable --quiet --now litestream.service "app@$APP_PORT.service"
"$lib/wait-healthy.sh" "$APP_PORT"

step 8 "starting Caddy, the fallback backup and restore drill timers; reloading sshd"
systemctl restart caddy.service
systemctl enable --quiet --now fallback-backup.timer restore-drill.timer
sshd -t && systemctl reload ssh.service

echo "$release" >"$BOOTSTRAP_DONE_FILE"
echo "kit-bootstrap: done; serving $release"
