#!/bin/bash
# Restore drill on PostgreSQL (restore-drill.sh runs it where {{databaseEnvFile}} exists): fetches the newest
# dump and its manifest from s3://$S3_BUCKET/$PG_DUMP_PREFIX/ (what outlives the server), checks its sha256,
# restores it with pg_restore --clean --if-exists into the scratch database (DRILL_DATABASE_URL, never the app's),
# compares every table's rows with the counts taken in the dump's own snapshot; JSON report; ping.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}
lib=$(dirname "$0")
# shellcheck source=/dev/null
. "$lib/pg-lib.sh"
ms() { date +%s%3N; }
stamp=$(date -u +%Y%m%dT%H%M%SZ) ok=false rpo=null rto=null missing=0 differ=0 tables='' check='' key='' sha='' bytes=null
w=$(mktemp -d "$SCRATCH_DIR/pg-drill.XXXXXX") && trap 'rm -rf "$w"' EXIT
report() {
  local file=$DRILL_DIR/drill-$stamp.json
  printf '{"stack":"%s","at":"%s","ok":%s,"engine":"postgres","replica":"s3://%s/%s","sentinel":"","integrity":"%s","rpo_ms":%s,"rto_ms":%s,"missing_tables":%s,"dump":{"key":"%s","bytes":%s,"sha256":"%s"},"tables":[%s]}\n' \
    "$KIT_STACK" "$stamp" "$ok" "$S3_BUCKET" "$key" "${check//[\"\\]/ }" "$rpo" "$rto" "$missing" "$key" "$bytes" "$sha" "$tables" | tee "$file" >"$DRILL_DIR/latest.json"
  echo "kit-drill: ok=$ok integrity='$check' dump_age_ms=$rpo rto_ms=$rto missing_tables=$missing differing_tables=$differ; $file"
}
fail() { check="FAILED: $1" && report && echo "kit-drill: FAILED: $1" >&2 && exit 1; }
s3() { # s3 KEY-OR-QUERY OUT: signed GET with the backup key over TLS; prints the HTTP code
  local u=https://$S3_BUCKET.s3.$S3_REGION.amazonaws.com
  [ -z "$S3_ENDPOINT" ] || u=${S3_ENDPOINT%/}/$S3_BUCKET
  printf 'user = "%s:%s"\n' "${AWS_ACCESS_KEY_ID:-}" "${AWS_SECRET_ACCESS_KEY:-}" |
    curl -K - -sS -m 600 --retry 3 --aws-sigv4 "aws:amz:$S3_REGION:s3" -o "$2" -w '%{http_code}' \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$u/$1" 2>"$w/curl.err" || echo " ($(head -c 120 "$w/curl.err"))"
}

# The scratch database only: never the app's (a restore with --clean there would replace the live data).
pg_use DATABASE_URL >/dev/null || fail "DATABASE_URL: see the line above"
live="$PGHOST:$PGPORT/$PGDATABASE"
pg_use DRILL_DATABASE_URL || fail "DRILL_DATABASE_URL (the stack output database_drill_url) in $DATABASE_ENV_FILE: see the line above"
[ "$PGHOST:$PGPORT/$PGDATABASE" != "$live" ] || fail "DRILL_DATABASE_URL names the app's own database $live: the drill restores only into the scratch database (<db>_drill)"
pg_check_clients pg_restore >"$w/check" 2>&1 || fail "$(tail -n 1 "$w/check")"

# The newest manifest in the bucket (keys are UTC stamps: the last in list order is the newest).
after='' newest=''
while :; do
  code=$(s3 "?list-type=2&prefix=${PG_DUMP_PREFIX//\//%2F}%2F${after:+&start-after=${after//\//%2F}}" "$w/list")
  [ "$code" = 200 ] || fail "listing s3://$S3_BUCKET/$PG_DUMP_PREFIX/ answered $code$(grep -o '<Code>[A-Za-z]*' "$w/list" 2>/dev/null | head -n 1 | sed 's/<Code>/ /')"
  keys=$(grep -o '<Key>[^<]*</Key>' "$w/list" | sed 's#</\?Key>##g' || true)
  m=$(grep -E '/[0-9]{8}T[0-9]{6}Z\.json$' <<<"$keys" | tail -n 1 || true)
  [ -z "$m" ] || newest=$m
  if ! grep -q '<IsTruncated>true' "$w/list" || [ -z "$keys" ]; then break; fi
  after=$(tail -n 1 <<<"$keys")
done
[ -n "$newest" ] || fail "no dump in s3://$S3_BUCKET/$PG_DUMP_PREFIX/ (has {{pgDumpUnit}} run yet? systemctl start {{pgDumpUnit}})"
key=${newest%.json}.dump
code=$(s3 "$newest" "$w/manifest.json")
[ "$code" = 200 ] || fail "manifest $newest answered $code"
manifest=$(<"$w/manifest.json")
[[ $manifest =~ \"at\":\"([0-9TZ]+)\".*\"sha256\":\"([0-9a-f]{64})\" ]] || fail "manifest $newest is not a dump manifest"
dumped_at=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
rpo=$(($(date +%s) * 1000 - $(date -d "${dumped_at:0:4}-${dumped_at:4:2}-${dumped_at:6:2}T${dumped_at:9:2}:${dumped_at:11:2}:${dumped_at:13:2}Z" +%s) * 1000))
code=$(s3 "$key" "$w/dump")
[ "$code" = 200 ] || fail "dump $key answered $code"
sha=$(sha256sum "$w/dump" | cut -d' ' -f1) bytes=$(stat -c %s "$w/dump")
[ "$sha" = "$want" ] || fail "dump $key has sha256 $sha, its manifest says $want: the object was changed or cut short in the bucket (restore from the cluster's point-in-time recovery instead; docs/runbook.md, Backups on PostgreSQL)"

r0=$(ms)
pg_restore --clean --if-exists --no-owner --no-privileges --exit-on-error --single-transaction -d "$PGDATABASE" "$w/dump" 2>"$w/restore.err" ||
  fail "pg_restore of $key into $PGDATABASE: $(grep -v '^$' "$w/restore.err" | pg_redact | head -n 2 | tr '\n"' '  ')"
rto=$(($(ms) - r0))

# Rows per table in the restore against the manifest's (taken in the dump's snapshot: they must be equal).
while IFS=$'\t' read -r t n; do
  r=$(psql -XAtq -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM \"${t//./\".\"}\"" 2>/dev/null) || r=''
  if [ -z "$r" ]; then missing=$((missing + 1)); elif [ "$r" != "$n" ]; then differ=$((differ + 1)); fi
  tables+="${tables:+,}{\"name\":\"$t\",\"live\":$n,\"restored\":${r:-null}}"
done < <(grep -oE '\{"name":"[A-Za-z0-9_.]+","rows":[0-9]+\}' <<<"$manifest" | sed -E 's/\{"name":"([^"]+)","rows":([0-9]+)\}/\1\t\2/')
[ -n "$tables" ] || fail "manifest $newest lists no tables"
check="sha256 ok, pg_restore ok"
[ "$missing" = 0 ] && [ "$differ" = 0 ] && ok=true
report
[ "$ok" = true ] || { echo "kit-drill: FAILED: $missing tables missing, $differ with other row counts than the dump's snapshot" >&2; exit 1; }
[ -z "$DRILL_PING_URL" ] || curl -fsS -m 10 --retry 3 -o /dev/null "$DRILL_PING_URL" || echo "kit-drill: ping failed" >&2
