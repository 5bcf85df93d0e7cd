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
# On PostgreSQL the data is in the cluster: there is no SQLite database to restore.
if [ -e "$DATABASE_ENV_FILE" ]; then
  echo "kit: on PostgreSQL ($DATABASE_ENV_FILE present): no SQLite database to restore"
  exit 0
fi
# A second or later app server (servers > 1, behind the load balancer) runs on PostgreSQL only. Restoring the
# SQLite replica here, or starting the app on an empty database, would serve the wrong data (and Litestream
# would write a second timeline into the first server's replica): wait for scripts/deploy.ts to put
# $DATABASE_ENV_FILE here, with the app stopped (the load balancer's health check sends it nothing).
if [ "${SERVER_INDEX:-1}" -gt 1 ]; then
  echo "kit: server $SERVER_INDEX of $KIT_STACK runs on PostgreSQL only: waiting for $DATABASE_ENV_FILE (npx zx scripts/deploy.ts $KIT_STACK --config-only writes it); no SQLite restore"
  for _ in $(seq 1 "${SERVER_WAIT_SECONDS:-1700}"); do
    if [ -e "$DATABASE_ENV_FILE" ]; then
      echo "kit: $DATABASE_ENV_FILE is here: the app starts on PostgreSQL"
      exit 0
    fi
    sleep 1
  done
  echo "kit: $DATABASE_ENV_FILE did not come: the app stays stopped. Run npx zx scripts/deploy.ts $KIT_STACK --config-only, then: sudo systemctl restart {{bootstrapUnit}}" >&2
  exit 1
fi
if [ -e "$DB_FILE" ]; then
  echo "kit: database present at $DB_FILE; nothing to restore"
  exit 0
fi

# How the operator resumes once the cause is fixed.
if [ -e "$BOOTSTRAP_DONE_FILE" ]; then
  retry="sudo systemctl restart {{restoreUnit}} && sudo systemctl start {{litestreamUnit}} app@$APP_PORT.service"
else
  # The first boot's bootstrap stopped here: rerunning it also does the steps after the restore.
  retry="sudo systemctl restart {{bootstrapUnit}}"
fi

# Restore next to the database, check it, and only then move it into place: a restore that fails the check
# never sits at $DB_FILE, so neither a rerun nor the app can take it for the client's data.
incoming="$DB_FILE.restoring"
stamp() { date -u +%Y%m%dT%H%M%SZ; }
if [ -e "$incoming" ]; then
  mv "$incoming" "$ASIDE_DIR/restore-unchecked-$(stamp).sqlite3" # left by an attempt killed before its check
fi
for attempt in $(seq 1 "$RESTORE_ATTEMPTS"); do
  status=0
  output=$(timeout --kill-after=10 "$RESTORE_ATTEMPT_SECONDS" \
    litestream restore -config "$LITESTREAM_CONFIG" -if-replica-exists -o "$incoming" "$DB_FILE" 2>&1) || status=$?
  if [ "$status" -eq 0 ]; then
    echo "$output"
    if [ ! -e "$incoming" ]; then
      echo "kit: no backup exists yet at $replica: this is a new database; the app will create it"
      exit 0
    fi
    check=$(sqlite3 -readonly "$incoming" 'PRAGMA integrity_check;' 2>&1) || check="sqlite3 cannot read it: $check"
    if [ "$check" != "ok" ]; then
      aside="$ASIDE_DIR/restore-failed-$(stamp).sqlite3"
      mv "$incoming" "$aside"
      echo "kit: the database restored from $replica fails PRAGMA integrity_check: $check" >&2
      echo "kit: moved it aside to $aside; the volume holds no database and the app stays stopped." >&2
      with_keys="set -a; . $S3_CREDENTIALS_FILE; set +a;"
      echo "kit: list the backups:" >&2
      echo "kit:   sudo bash -c '$with_keys litestream generations -config $LITESTREAM_CONFIG $DB_FILE'" >&2
      echo "kit: restore a point in time before the damage, and check it:" >&2
      echo "kit:   sudo bash -c '$with_keys litestream restore -config $LITESTREAM_CONFIG -timestamp 2006-01-02T15:04:05Z $DB_FILE && chown $APP_USER: $DB_FILE'" >&2
      echo "kit:   sudo -u $APP_USER sqlite3 -readonly $DB_FILE 'PRAGMA integrity_check'" >&2
      echo "kit: then start the server on it:  $retry" >&2
      exit 1
    fi
    mv "$incoming" "$DB_FILE"
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
echo "kit: cannot read the backups at $replica, and the volume holds no database." >&2
echo "kit: refusing to start the app on an empty database: this may be a replacement server whose data is in S3." >&2
echo "kit: fix the network or the credentials in $S3_CREDENTIALS_FILE, then run:" >&2
echo "kit:   $retry" >&2
echo "kit: only if this server must start empty (no backups exist anywhere):" >&2
echo "kit:   sudo touch $ALLOW_EMPTY_DATABASE_FILE && $retry" >&2
exit 1
