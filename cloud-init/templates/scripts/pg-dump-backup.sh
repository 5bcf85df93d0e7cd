#!/bin/bash
# On PostgreSQL ({{databaseEnvFile}} present): the daily dump, the fallback backup's successor beside the
# cluster's point-in-time recovery. pg_dump -Fc of the app database in one REPEATABLE READ snapshot that also
# counts every table's rows, so the drill can compare a restore with the data as dumped. Kept on the volume
# FALLBACK_KEEP_DAYS days and uploaded to s3://$S3_BUCKET/$PG_DUMP_PREFIX/<UTC stamp>.dump with its manifest
# <UTC stamp>.json (sha256, size, server version, row counts).
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}
lib=$(dirname "$0")
fail() { echo "kit-pg-dump: FAILED: $*" >&2; exit 1; }
[ -e "$DATABASE_ENV_FILE" ] || { echo "kit-pg-dump: no $DATABASE_ENV_FILE: this server is on SQLite (fallback-backup.sh backs it up); nothing to do"; exit 0; }
[ -n "${DATABASE_URL:-}" ] || fail "DATABASE_URL is not set: run by {{pgDumpUnit}} (it reads $DATABASE_ENV_FILE), or check that file"
[ -r "${PGSSLROOTCERT:-}" ] || fail "PGSSLROOTCERT (${PGSSLROOTCERT:-unset}) is not a readable CA file: re-run scripts/deploy.ts (it pushes {{postgresCaFile}})"
# shellcheck source=/dev/null
. "$lib/pg-lib.sh"
pg_use DATABASE_URL || fail "see the line above: nothing was dumped"
"$lib/require-volume.sh"
pg_check_clients pg_dump || fail "the version check above refused: nothing was dumped"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
name=pg-$stamp.dump partial=$BACKUP_DIR/.partial-$stamp
mkdir -p "$partial" && psql_pid=''
trap 'rm -rf "$partial"; [ -z "$psql_pid" ] || kill "$psql_pid" 2>/dev/null || true' EXIT
t0=$(date +%s%3N)

# One transaction holds the snapshot: pg_dump dumps exactly it (--snapshot), the counts are taken in it.
coproc PSQL { exec psql -XAtq -v ON_ERROR_STOP=1 2>&1; }
# shellcheck disable=SC2153 # PSQL_PID: set by coproc
psql_pid=$PSQL_PID
ask() { printf '%s\n\\echo __kit_end\n' "$1" >&"${PSQL[1]}"; while read -r -t 600 line <&"${PSQL[0]}"; do [ "$line" = __kit_end ] && return 0; printf '%s\n' "$line"; done; return 1; }
snapshot=$(ask "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();") || fail "no snapshot: $snapshot"
[[ $snapshot =~ ^[0-9A-F-]+$ ]] || fail "could not open the dump's snapshot: $(head -n 2 <<<"$snapshot" | tr '\n' ' ')"
version=$(ask "SELECT current_setting('server_version_num');")
pg_dump -Fc --snapshot="$snapshot" --no-owner --no-privileges -f "$partial/$name" 2>"$partial/err" ||
  fail "pg_dump: $(pg_redact <"$partial/err" | head -n 3 | tr '\n' ' ') (the database is untouched; see journalctl -u {{pgDumpUnit}})"
# Every ordinary table of the non-system schemas, as schema.table (public's without the schema), names limited
# to [A-Za-z0-9_] like the SQLite side's: one "name<TAB>rows" line each.
ask "SELECT format('SELECT %L || E''\\t'' || count(*) FROM %I.%I', CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END, n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
    AND n.nspname || c.relname ~ '^[A-Za-z0-9_]+$' ORDER BY 1 \\gexec" >"$partial/counts" || fail "row counts: $(head -n 2 "$partial/counts")"
! grep -qv $'^[A-Za-z0-9_.]*\t[0-9]*$' "$partial/counts" || fail "row counts: $(grep -v $'\t[0-9]*$' "$partial/counts" | head -n 2 | tr '\n' ' ')"
ask "COMMIT;" >/dev/null
printf '\\q\n' >&"${PSQL[1]}"
wait "$psql_pid" 2>/dev/null || true
psql_pid=
dump_ms=$(($(date +%s%3N) - t0))

sha256=$(sha256sum "$partial/$name" | cut -d' ' -f1) bytes=$(stat -c %s "$partial/$name")
tables=$(awk -F '\t' '{ printf "%s{\"name\":\"%s\",\"rows\":%s}", (NR > 1 ? "," : ""), $1, $2 }' "$partial/counts")
printf '{"stack":"%s","at":"%s","key":"%s/%s.dump","bytes":%s,"sha256":"%s","server_version_num":%s,"dump_ms":%s,"tables":[%s]}\n' \
  "$KIT_STACK" "$stamp" "$PG_DUMP_PREFIX" "$stamp" "$bytes" "$sha256" "$version" "$dump_ms" "$tables" >"$partial/manifest.json"
mv "$partial/manifest.json" "$BACKUP_DIR/pg-$stamp.json"
mv "$partial/$name" "$BACKUP_DIR/$name"
echo "kit-pg-dump: wrote $BACKUP_DIR/$name ($bytes bytes, sha256 $sha256, $(wc -l <"$partial/counts") tables, ${dump_ms} ms)"

# The dump first, its manifest last: a manifest in the bucket means its dump is complete there.
"$lib/s3-put.sh" "$BACKUP_DIR/$name" "$PG_DUMP_PREFIX/$stamp.dump" ||
  fail "upload of $name to s3://$S3_BUCKET/$PG_DUMP_PREFIX/ (the copy on the volume is kept; fix the bucket access — docs/runbook.md, An alert fired: fallback — and run: systemctl start {{pgDumpUnit}})"
"$lib/s3-put.sh" "$BACKUP_DIR/pg-$stamp.json" "$PG_DUMP_PREFIX/$stamp.json" || fail "upload of the manifest pg-$stamp.json"

# Prune only old dumps on the volume (the bucket's lifecycle keeps its own), newest always kept.
find "$BACKUP_DIR" -maxdepth 1 \( -name 'pg-*.dump' -o -name 'pg-*.json' \) -mtime +"$FALLBACK_KEEP_DAYS" ! -name "$name" ! -name "pg-$stamp.json" -print -delete
