#!/bin/bash
# Runs before the app starts (db-restore.service). If the volume holds no database, restore it from S3:
# a replacement server comes back with the client's data by itself.
#
# Policy when S3 cannot be reached and the volume is empty: refuse (exit 1), so the app does NOT start
# silently on an empty database that Litestream would then replicate over the real backups' timeline.
# An operator who knows the server must start empty creates $ALLOW_EMPTY_DATABASE_FILE.
# Each attempt is bounded (RESTORE_ATTEMPT_SECONDS): an S3 that accepts connections and never answers must
# end in this message too, not in a unit timeout that says nothing.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}

replica="s3://$S3_BUCKET/$LITESTREAM_PREFIX"
if [ -e "$DB_FILE" ]; then
  echo "kit: database present at $DB_FILE; nothing to restore"
  exit 0
fi

for attempt in $(seq 1 "$RESTORE_ATTEMPTS"); do
  status=0
  output=$(timeout --kill-after=10 "$RESTORE_ATTEMPT_SECONDS" \
    litestream restore -config "$LITESTREAM_CONFIG" -if-db-not-exists -if-replica-exists "$DB_FILE" 2>&1) || status=$?
  if [ "$status" -eq 0 ]; then
    echo "$output"
    if [ ! -e "$DB_FILE" ]; then
      echo "kit: no backup exists yet at $replica: this is a new database; the app will create it"
      exit 0
    fi
    check=$(sqlite3 "$DB_FILE" 'PRAGMA integrity_check;')
    if [ "$check" != "ok" ]; then
      aside="$ASIDE_DIR/restore-failed-$(date -u +%Y%m%dT%H%M%SZ).sqlite3"
      mv "$DB_FILE" "$aside"
      echo "kit: the database restored from $replica fails PRAGMA integrity_check: $check" >&2
      echo "kit: moved it aside to $aside; the app stays stopped. Restore a point in time with scripts/restore.ts." >&2
      exit 1
    fi
    echo "kit: restored $DB_FILE from $replica (integrity ok)"
    exit 0
  fi
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    output="no answer within ${RESTORE_ATTEMPT_SECONDS}s (S3 unreachable or too slow)"
  fi
  echo "kit: restore attempt $attempt/$RESTORE_ATTEMPTS from $replica failed: $output" >&2
  [ "$attempt" -lt "$RESTORE_ATTEMPTS" ] && sleep "$RESTORE_RETRY_SECONDS"
done

if [ -e "$ALLOW_EMPTY_DATABASE_FILE" ]; then
  echo "kit: backups unreachable, but $ALLOW_EMPTY_DATABASE_FILE exists: starting with an empty database" >&2
  exit 0
fi
if [ -e "$BOOTSTRAP_DONE_FILE" ]; then
  retry="sudo systemctl restart db-restore.service && sudo systemctl start litestream.service app@$APP_PORT.service"
else
  # The first boot's bootstrap stopped here: rerunning it also does the steps after the restore.
  retry="sudo systemctl restart kit-bootstrap.service"
fi
echo "kit: cannot read the backups at $replica, and the volume holds no database." >&2
echo "kit: refusing to start the app on an empty database: this may be a replacement server whose data is in S3." >&2
echo "kit: fix the network or the credentials in $S3_CREDENTIALS_FILE, then run:" >&2
echo "kit:   $retry" >&2
echo "kit: only if this server must start empty (no backups exist anywhere):" >&2
echo "kit:   sudo touch $ALLOW_EMPTY_DATABASE_FILE && $retry" >&2
exit 1
