#!/bin/bash
# Restore drill: writes a sentinel row (table _kit_drill), waits until the replica moves past it (RPO),
# restores the replica into scratch (RTO), checks integrity, sentinel, row counts; JSON report; ping.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}
# On PostgreSQL the drill restores the newest daily dump into the scratch database instead.
[ ! -e "$DATABASE_ENV_FILE" ] || exec "$(dirname "$0")/pg-restore-drill.sh"
# Never create the database: on a server whose first boot stopped before the restore, an empty file here
# would later be taken for the client's data (restore-on-boot keeps a database that exists).
if [ ! -e "$DB_FILE" ]; then
  echo "kit-drill: FAILED: no database at $DB_FILE (has the first boot finished? see: systemctl status {{bootstrapUnit}}); nothing was written" >&2
  exit 1
fi
ms() { date +%s%3N; }
sql() { sqlite3 -cmd '.timeout 5000' "$@"; }
counts() { sql "$@" "{{appTablesQuery}}" |
  while read -r t; do echo "$t $(sql "$@" "SELECT count(*) FROM $t")"; done; }
wal() { litestream wal -config "$LITESTREAM_CONFIG" "$DB_FILE" 2>&1 | sha1sum; }
restore() { rm -f "$db"*; r0=$(ms); litestream restore -config "$LITESTREAM_CONFIG" -o "$db" "$DB_FILE" >"$w/log" 2>&1 && rto=$(($(ms) - r0)); }

stamp=$(date -u +%Y%m%dT%H%M%SZ) token=drill-$(date +%s%N) rpo=null rto=null ok=false missing=0 tables=
w=$(mktemp -d "$SCRATCH_DIR/drill.XXXXXX") && trap 'rm -rf "$w"' EXIT && db=$w/db
before=$(wal) t0=$(ms)
# The sentinel is the drill's only write to the live file: Deno's fixed SQLite, never sqlite3 (kit-sql.js says why).
{{libDir}}/kit-sql.js "$DB_FILE" <<<"CREATE TABLE IF NOT EXISTS _kit_drill(id INTEGER PRIMARY KEY, token TEXT, written_at TEXT);
INSERT INTO _kit_drill(token, written_at) VALUES('$token', strftime('%Y-%m-%dT%H:%M:%fZ'));
DELETE FROM _kit_drill WHERE id < (SELECT max(id) - 99 FROM _kit_drill);"
echo "kit-drill: wrote sentinel $token; waiting up to ${DRILL_WAIT_SECONDS}s for the replica"
while [ "$rpo" = null ] && [ $(($(ms) - t0)) -lt $((DRILL_WAIT_SECONDS * 1000)) ]; do
  sleep 0.5
  now=$(wal); [ "$now" != "$before" ] || continue
  before=$now t1=$(ms)
  restore && [ "$(sql -readonly "$db" "SELECT count(*) FROM _kit_drill WHERE token='$token'")" = 1 ] && rpo=$((t1 - t0))
done
[ "$rpo" != null ] || restore || true
check=$(sql -readonly "$db" 'PRAGMA integrity_check' 2>&1 | head -n 3 | tr '\n"\134' ' ') || check="no restore: $(tail -n 1 "$w/log" | tr '"\134' ' ')"
counts -readonly "$db" >"$w/counts" 2>/dev/null || true
while read -r t n; do
  r=$(awk -v t="$t" '$1 == t { print $2 }' "$w/counts")
  [ -n "$r" ] || missing=$((missing + 1))
  tables+="${tables:+,}{\"name\":\"$t\",\"live\":$n,\"restored\":${r:-null}}"
done < <(counts -readonly "$DB_FILE" | grep -v '^_kit_drill ') # read-only: its close cannot checkpoint
[ "${check% }" = ok ] && [ "$rpo" != null ] && [ "$missing" = 0 ] && ok=true
report=$DRILL_DIR/drill-$stamp.json
printf '{"stack":"%s","at":"%s","ok":%s,"replica":"s3://%s/%s","sentinel":"%s","integrity":"%s","rpo_ms":%s,"rto_ms":%s,"missing_tables":%s,"tables":[%s]}\n' \
  "$KIT_STACK" "$stamp" "$ok" "$S3_BUCKET" "$LITESTREAM_PREFIX" "$token" "${check% }" "$rpo" "$rto" "$missing" "$tables" | tee "$report" >"$DRILL_DIR/latest.json"
echo "kit-drill: ok=$ok integrity='${check% }' rpo_ms=$rpo rto_ms=$rto missing_tables=$missing; $report"
[ "$ok" = true ] || { echo "kit-drill: FAILED (rpo_ms=null: the sentinel never reached the replica)" >&2; exit 1; }
[ -z "$DRILL_PING_URL" ] || curl -fsS -m 10 --retry 3 -o /dev/null "$DRILL_PING_URL" || echo "kit-drill: ping failed" >&2
