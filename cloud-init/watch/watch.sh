#!/bin/bash
# The watcher ({{watchTimerUnit}}): checks this server end to end, writes {{watchVerdictFile}} (shape:
# cloud-init/watch-verdict.ts), pings the dead-man URL, posts changes to the webhook. Bash builtins where
# they do: it runs every minute on the smallest server.
set -uo pipefail # no -e: a failing check is a verdict, not an abort
# shellcheck source=/dev/null
. {{kitEnvFile}}
export TZ=UTC
t0=${EPOCHREALTIME/./} now=$EPOCHSECONDS dir={{watchDir}} wait={{watchReplicaWaitSeconds}}
printf -v iso '%(%FT%TZ)T' "$now"
# Left by the last run (only this script writes it): alert state, rate limit, hourly facts.
hb_ok=0 sent=ok tokens=12 refill=$now held=0 slow=0 updates=null reboot=null sec_since=0 ls_errs='' fb_ok='' bins=''
# shellcheck source=/dev/null
[ -r "$dir/state" ] && . "$dir/state"
declare -A st val
ck() { st[$1]=$2 val[$1]=$3; }
level() { if [ "$1" -ge 90 ]; then echo critical; elif [ "$1" -ge 80 ]; then echo warn; else echo ok; fi; }
s3() { # s3 PATH [curl args]: signed request with the backup key over TLS; prints the body, then the HTTP code
  local u=https://$S3_BUCKET.s3.$S3_REGION.amazonaws.com
  [ -z "$S3_ENDPOINT" ] || u=${S3_ENDPOINT%/}/$S3_BUCKET
  printf 'user = "%s:%s"\n' "${AWS_ACCESS_KEY_ID:-}" "${AWS_SECRET_ACCESS_KEY:-}" |
    curl -K - -sS -m 10 --aws-sigv4 "aws:amz:$S3_REGION:s3" -w '\n%{http_code}' "${@:2}" \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$u$1" 2>&1
}
why() { # why a request failed: S3's error code or curl's message, never the request itself
  if [[ $1 =~ \<Code\>([A-Za-z]+) ]]; then echo "S3 answered ${BASH_REMATCH[1]}"
  elif [[ $1 =~ curl:\ \([0-9]+\)\ ([^$'\n']{0,80}) ]]; then echo "${BASH_REMATCH[1]//[\"\\]/}"
  else echo "S3 answered HTTP ${1##*$'\n'}"; fi
}

# On PostgreSQL ({{databaseEnvFile}} present: the unit reads it) there is no SQLite heartbeat and no Litestream:
# "replication" is the cluster answering `select 1` over TLS (its PITR is the provider's), "litestream" says it
# is off, "fallback" is the newest daily pg_dump (older than {{pgDumpMaxAgeSeconds}} s: critical).
pg='' && [ -e "${DATABASE_ENV_FILE:-/nonexistent}" ] && pg=yes
pg_database() {
  local out t=${EPOCHREALTIME/./}
  # shellcheck source=/dev/null
  out=$( (. "$(dirname "$0")/pg-lib.sh" && pg_use DATABASE_URL && psql -XAtq -c 'select 1') 2>&1)
  if [ "$out" = 1 ]; then ck replication ok "PostgreSQL answers over TLS in $(((${EPOCHREALTIME/./} - t) / 1000)) ms"
  else ck replication critical "PostgreSQL not answering: $(head -n 1 <<<"$out" | sed -E 's#postgres(ql)?://[^ ]*#<url>#g' | head -c 160)"; fi
}
pg_litestream() {
  if [ "$(systemctl is-active {{litestreamUnit}})" = active ]; then ck litestream warn "{{litestreamUnit}} still runs on a server on PostgreSQL (systemctl disable --now {{litestreamUnit}})"
  else ck litestream ok "off: the database is on PostgreSQL"; fi
}
pg_dumps() { # $1 its service's last result, $2 its timer's state
  local dumps=("$BACKUP_DIR"/pg-*.dump) name stamp out
  fb=${dumps[-1]} name=${dumps[-1]##*/} fb_age=null && stamp=${name#pg-} && stamp=${stamp%.dump}
  [ ! -e "$fb" ] || fb_age=$((now - $(stat -c %Y "$fb")))
  if [ "$1" != success ]; then ck fallback critical "the last pg_dump failed ($1): journalctl -u {{pgDumpUnit}}"
  elif [ "$2" != active ]; then ck fallback critical "{{pgDumpTimerUnit}} is not active"
  elif [ "$fb_age" = null ]; then
    # The first dump starts at the move: none a day after it is a missed dump.
    if [ $((now - $(stat -c %Y "$DATABASE_ENV_FILE"))) -gt {{pgDumpMaxAgeSeconds}} ]; then ck fallback critical "no pg_dump on the volume since the move to PostgreSQL"
    else ck fallback ok "no pg_dump yet"; fi
  elif [ "$fb_age" -gt {{pgDumpMaxAgeSeconds}} ]; then ck fallback critical "the newest pg_dump is $((fb_age / 3600)) h old (more than $(({{pgDumpMaxAgeSeconds}} / 3600)) h)"
  else
    [ "$fb_ok" = "$name" ] || { out=$(s3 "/$PG_DUMP_PREFIX/$stamp.json" -I) && [ "${out##*$'\n'}" = 200 ] && fb_ok=$name; }
    if [ "$fb_ok" = "$name" ]; then ck fallback ok "pg_dump $((fb_age / 3600)) h old, in the bucket"
    else ck fallback critical "pg_dump $stamp is not in the bucket ($(why "$out"))"; fi
  fi
}

# replication: commit a heartbeat, then find in the bucket a WAL segment of the current generation whose
# LastModified is not older than it (S3 keeps whole seconds: the lag is measured to ±1 s).
gen_dir="$DB_DIR/.${DB_FILE##*/}-litestream" lag=null gen='' err='' cause='' waited=0 pause=1
[ -r "$gen_dir/generation" ] && gen=$(<"$gen_dir/generation")
if [ -n "$pg" ]; then
  err="on PostgreSQL"
elif [ ! -e "$DB_FILE" ]; then
  err="no database at $DB_FILE"
elif [ -z "$gen" ]; then
  err="Litestream has no generation yet"
else
  # From the newest shadow WAL index before the write: the heartbeat lands in it or a later one.
  wals=("$gen_dir/generations/$gen/wal/"*.wal) && idx=${wals[-1]##*/} && idx=${idx%.wal}
  prefix="$LITESTREAM_PREFIX/generations/$gen/wal/" && after=$prefix${idx#\*}
  # The watcher's only write to the live file: Deno's fixed SQLite (kit-sql.js says why), never sqlite3.
  {{libDir}}/kit-sql.js "$DB_FILE" <<<"CREATE TABLE IF NOT EXISTS _kit_watch(id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);
    INSERT OR REPLACE INTO _kit_watch VALUES (1, $now);" >/dev/null 2>"$dir/sql.err" ||
    err="heartbeat not written: $(head -c 80 "$dir/sql.err")"
  printf -v hb '%(%FT%T)T' "$now"
  while [ -z "$err" ] && [ "$waited" -lt "$wait" ]; do
    sleep "$pause" && waited=$((waited + pause)) pause=$((pause < 4 ? pause + 1 : 4))
    [ $((waited + pause)) -le "$wait" ] || pause=$((wait - waited))
    # A restarted Litestream may begin a new generation: the heartbeat is then there.
    g=$(<"$gen_dir/generation")
    if [ "$g" != "$gen" ]; then gen=$g prefix="$LITESTREAM_PREFIX/generations/$g/wal/" && after=$prefix; fi
    out=$(s3 "?list-type=2&prefix=${prefix//\//%2F}&start-after=${after//\//%2F}")
    [ "${out##*$'\n'}" = 200 ] || { cause=$(why "$out") && continue; }
    cause=''
    while [[ $out =~ \<Key\>([^<]*)\</Key\>\<LastModified\>([0-9T:-]{19}) ]]; do
      [[ ${BASH_REMATCH[2]} < $hb ]] || { hb_ok=$now && break 2; }
      out=${out#*"${BASH_REMATCH[0]}"} after=${BASH_REMATCH[1]}
    done
  done
fi
if [ -n "$pg" ]; then pg_database
elif [ "$hb_ok" = "$now" ]; then
  lag=$((${EPOCHREALTIME%.*} - now)) && ck replication ok "$lag s behind"
else
  [ "$hb_ok" = 0 ] || lag=$((EPOCHSECONDS - hb_ok))
  [ -n "$err" ] || err="heartbeat not in the bucket after $waited s${cause:+ ($cause)}"
  [ "$lag" = null ] && err="nothing replicated: $err" || err="$lag s behind: $err"
  ck replication critical "$err"
fi

# litestream: running, metrics answering, sync errors not rising.
errs=null
m=$(curl -sS -m 5 http://127.0.0.1:{{metricsPort}}/metrics 2>&1)
[[ $m =~ litestream_sync_error_count\{[^}]*\}\ ([0-9]+) ]] && errs=${BASH_REMATCH[1]}
if [ -n "$pg" ]; then pg_litestream
elif [ "$(systemctl is-active {{litestreamUnit}})" != active ]; then ck litestream critical "{{litestreamUnit}} is not running"
elif [ "$errs" = null ]; then ck litestream warn "metrics on :{{metricsPort}} not answering"
elif [ "${ls_errs:-$errs}" -lt "$errs" ]; then ck litestream warn "$((errs - ls_errs)) sync errors since the last check"
else ck litestream ok "running, $errs sync errors"; fi
ls_errs=${errs/null/}

# app: its health path through Caddy, as a visitor reaches it (with a domain: over https, its certificate too).
# 15 s: longer than Caddy's lb_try_duration (10 s), so that an app that is down reads as Caddy's 502.
domain={{domainName}}
if [ -n "$domain" ]; then
  code=$(curl -sS -o /dev/null -m 15 -w '%{http_code}\n%{certs}' --resolve "$domain:{{httpsPort}}:127.0.0.1" "https://$domain:{{httpsPort}}$APP_HEALTH_PATH" 2>&1)
else code=$(curl -sS -o /dev/null -m 15 -w '%{http_code}' "http://127.0.0.1:{{httpPort}}$APP_HEALTH_PATH" 2>&1); fi
case ${code%%$'\n'*} in
  2??) ck app ok "HTTP ${code%%$'\n'*}" ;;
  *) ck app critical "health check: ${code%%$'\n'*}" ;;
esac

failed=$(systemctl --failed --plain --no-legend | while read -r u _; do printf '%s ' "$u"; done)
if [ -n "$failed" ]; then ck units critical "failed: ${failed% }"; else ck units ok "none failed"; fi

vol=null root=null ino=0
while read -r target p i; do
  p=${p%\%} i=${i%\%} i=${i/-/0}
  [ "$target" != "$VOLUME_MOUNT" ] || vol=$p
  [ "$target" != / ] || root=$p
  [ "$i" -le "$ino" ] || ino=$i
done < <(df --output=target,pcent,ipcent / "$VOLUME_MOUNT" 2>/dev/null | tail -n +2)
if [ "$vol" = null ]; then ck volume-disk critical "the volume is not mounted at $VOLUME_MOUNT"
else ck volume-disk "$(level "$vol")" "$vol % used"; fi
ck root-disk "$(level "${root/null/0}")" "$root % used"
ck inodes "$(level "$ino")" "$ino % of inodes used"

# fallback and drill: their last run, their timers, their evidence.
declare -A sd
while IFS='=' read -r k v; do [ -z "$k" ] || sd[$k]+="${v:-0} "; done < <(systemctl show --timestamp=unix \
  -p Result -p ActiveState -p LastTriggerUSec {{fallbackBackupUnit}} {{fallbackBackupTimerUnit}} {{drillUnit}} {{drillTimerUnit}} {{pgDumpUnit}} {{pgDumpTimerUnit}})
read -r fb_res _ dr_res _ pd_res _ <<<"${sd[Result]:-}"
read -r _ fb_timer _ dr_timer _ pd_timer <<<"${sd[ActiveState]:-}"
read -r fb_last _ <<<"${sd[LastTriggerUSec]:-}" && fb_last=${fb_last//[^0-9]/}
copies=("$BACKUP_DIR"/app-*.sqlite3.gz) && fb=${copies[-1]} name=${copies[-1]##*/} fb_age=null
[ ! -e "$fb" ] || fb_age=$((now - $(stat -c %Y "$fb")))
if [ -n "$pg" ]; then pg_dumps "$pd_res" "$pd_timer"
elif [ "$fb_res" != success ]; then ck fallback critical "last run failed ($fb_res)"
elif [ "$fb_timer" != active ]; then ck fallback critical "{{fallbackBackupTimerUnit}} is not active"
elif [ "$fb_age" = null ]; then ck fallback ok "no copy yet"
elif [ "${fb_last:-0}" -gt $((now - fb_age + 3600)) ]; then ck fallback critical "its last run made no copy"
else
  # Once per new copy: is it in the bucket? (the upload is what outlives the server)
  [ "$fb_ok" = "$name" ] || { out=$(s3 "/$FALLBACK_PREFIX/$name" -I) && [ "${out##*$'\n'}" = 200 ] && fb_ok=$name; }
  if [ "$fb_ok" = "$name" ]; then ck fallback ok "$((fb_age / 3600)) h old, in the bucket"
  else ck fallback critical "$name is not in the bucket ($(why "$out"))"; fi
fi

drill=null d_at='' d_ok=''
r='' && [ -r "$DRILL_DIR/latest.json" ] && r=$(<"$DRILL_DIR/latest.json")
if [[ $r =~ \"at\":\"([0-9TZ]+)\",\"ok\":(true|false).*\"rpo_ms\":([0-9nul]+),\"rto_ms\":([0-9nul]+) ]]; then
  d_at=${BASH_REMATCH[1]} d_ok=${BASH_REMATCH[2]} rpo=${BASH_REMATCH[3]} rto=${BASH_REMATCH[4]}
  sec() { [ "$1" = null ] && echo null || printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
  drill="{\"at\":\"$d_at\",\"ok\":$d_ok,\"rpoSeconds\":$(sec "$rpo"),\"rtoSeconds\":$(sec "$rto")}"
fi
if [ "$dr_res" != success ] || [ "$d_ok" = false ]; then ck drill critical "the last drill failed${d_at:+ ($d_at)}"
elif [ "$dr_timer" != active ]; then ck drill warn "{{drillTimerUnit}} is not active"
else ck drill ok "${d_at:-no drill yet}"; fi

cert=null
if [ -n "$domain" ]; then
  [[ $code =~ Expire\ date:\ ?([^$'\n']+) ]] && cert=$((($(date -d "${BASH_REMATCH[1]}" +%s) - now) / 86400))
  if [ "$cert" = null ]; then ck certificate critical "no certificate served for $domain"
  elif ((cert < 7)); then ck certificate critical "$cert days left"
  elif ((cert < 14)); then ck certificate warn "$cert days left"
  else ck certificate ok "$cert days left"; fi
else ck certificate ok "no domain"; fi

# Hourly: security updates pending, a reboot the newest kernel needs, versions; history pruned to 24 h.
if [ $((now - slow)) -ge 3600 ]; then
  slow=$now
  updates=$(dpkg-query -W -f '${Package} ${Version}\n' | awk 'FNR == NR { v[$1] = $2; next }
    /^Package: / { p = $2 } /^Version: / && p in v && v[p] != $2 { print v[p], $2 }' - \
    <(/usr/lib/apt/apt-helper cat-file /var/lib/apt/lists/*security*_Packages* 2>/dev/null) |
    while read -r a b; do ! dpkg --compare-versions "$a" lt "$b" || echo; done | wc -l)
  if [ "$updates" = 0 ]; then sec_since=0; elif [ "$sec_since" = 0 ]; then sec_since=$now; fi
  kernels=(/boot/vmlinuz-*) && k=$(printf '%s\n' "${kernels[@]#/boot/vmlinuz-}" | sort -V | tail -n 1)
  reboot=false && { [ -e {{rebootRequiredFile}} ] || { [ -e "/boot/vmlinuz-$k" ] && [ "$k" != "$(uname -r)" ]; }; } && reboot=true
  # Versions only when a binary changed: `litestream version` alone is a 25 MiB process.
  b=$(stat -L -c '%i %s %Y' {{binDir}}/deno {{binDir}}/litestream 2>/dev/null)
  if [ "$b" != "$bins" ] || [ ! -s "$dir/versions" ]; then
    printf '%s|%s\n' "$({{binDir}}/deno -V 2>/dev/null)" "$({{binDir}}/litestream version 2>/dev/null)" >"$dir/versions" && bins=$b
  fi
  printf -v c '%(%FT%TZ)T' $((now - 86400))
  awk -v c="$c" 'substr($0, 15, 20) >= c' {{watchHistoryFile}} >"$dir/history.new" 2>/dev/null && mv "$dir/history.new" {{watchHistoryFile}}
fi
if [ "$reboot" = true ]; then ck updates warn "reboot required"
elif [ "$sec_since" != 0 ] && [ $((now - sec_since)) -gt 172800 ]; then ck updates warn "$updates security updates pending for 2 days"
else ck updates ok "$updates security updates pending"; fi
IFS='|' read -r deno_v ls_v <"$dir/versions"
# The active slot: the deploy switch's dnat line (a server older than the switch: the Caddyfile's upstream).
release='' && sw=$(cat {{upstreamRules}} {{caddyfile}} 2>/dev/null || true) &&
  [[ $sw =~ (dnat\ to|reverse_proxy)\ 127\.0\.0\.1:([0-9]+) ]] && release=$(readlink "$SLOTS_DIR/${BASH_REMATCH[2]}")

# The verdict: the worst of the checks.
state=ok failing=() checks='' text=''
j() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "${s//[$'\n\t\r']/ }"; }
q() { if [ -n "$1" ]; then j "$1"; else echo null; fi; }
for c in {{watchChecks}}; do
  checks+="${checks:+,}\"$c\":{\"state\":\"${st[$c]}\",\"value\":$(j "${val[$c]}")"
  [ "${st[$c]}" = ok ] && checks+="}" && continue
  checks+=",\"detail\":\"docs/runbook.md, An alert fired: $c\"}" failing+=("$c") text+="; $c ${st[$c]}: ${val[$c]}"
  [ "$state" = critical ] || state=${st[$c]}
done
printf '{"schema":1,"stack":%s,"client":%s,"environment":%s,"checkedAt":"%s","durationMs":%d,"state":"%s","checks":{%s},"facts":{"release":%s,"deno":%s,"litestream":%s,"replicationLagSeconds":%s,"litestreamErrors":%s,"fallbackAgeSeconds":%s,"drill":%s,"volumeUsedPercent":%s,"rootUsedPercent":%s,"inodesUsedPercent":%s,"certDaysLeft":%s,"updatesPending":%s,"rebootRequired":%s}}\n' \
  "$(j "$KIT_STACK")" "$(j "$KIT_CLIENT")" "$(j "$KIT_ENVIRONMENT")" "$iso" $(((${EPOCHREALTIME/./} - t0) / 1000)) "$state" "$checks" \
  "$(q "${release##*/}")" "$(q "${deno_v#deno }")" "$(q "${ls_v#v}")" "$lag" "$errs" "$fb_age" "$drill" "$vol" "$root" "$ino" "$cert" "$updates" "$reboot" >"$dir/verdict.new" &&
  mv "$dir/verdict.new" {{watchVerdictFile}}
f=$(printf ',"%s"' "${failing[@]}") && [ "$f" != ',""' ] || f=''
printf '{"checkedAt":"%s","state":"%s","replicationLagSeconds":%s,"volumeUsedPercent":%s,"failing":[%s]}\n' "$iso" "$state" "$lag" "$vol" "${f#,}" >>{{watchHistoryFile}}

# Alerts name client, environment, check and value; never a key or a URL (both reach curl on stdin).
post() { # post URL [curl args]
  local u=${1//\\/\\\\}
  printf 'url = "%s"\n' "${u//\"/\\\"}" | curl -K - -fs -m 10 --retry 2 -o /dev/null "${@:2}" ||
    { echo "kit-watch: alert not delivered (curl exit $?)" >&2 && return 1; }
}
who="$KIT_CLIENT $KIT_ENVIRONMENT ($KIT_STACK)"
if [ -z "${ALERT_DEAD_MAN_URL:-}" ]; then :
elif [ "$state" = critical ]; then post "${ALERT_DEAD_MAN_URL%/}/fail" --data-raw "$who critical$text"
else post "$ALERT_DEAD_MAN_URL" --data-raw "$who $state$text"; fi
# The webhook: on each change of what fails; at most 12 an hour (a token back every 5 min), none lost.
sig=$(for c in "${failing[@]}"; do printf '%s=%s ' "$c" "${st[$c]}"; done) && sig=${sig:-ok}
tokens=$((tokens + (now - refill) / 300)) refill=$((refill + (now - refill) / 300 * 300))
[ "$tokens" -le 12 ] || tokens=12
if [ -z "${ALERT_WEBHOOK_URL:-}" ]; then sent=$sig
elif [ "$sig" = "$sent" ]; then :
elif [ "$tokens" = 0 ]; then held=$((held + 1))
else
  gone=$([ "$sent" = ok ] || for c in $sent; do [[ " $sig" = *" ${c%=*}="* ]] || printf '%s, ' "${c%=*}"; done)
  if [ "$state" = ok ]; then msg="RECOVERED $who: all checks ok"; else msg="${state^^} $who$text${gone:+; recovered: ${gone%, }}"; fi
  [ "$held" = 0 ] || msg+=" ($held changes held back by the rate limit)"
  post "$ALERT_WEBHOOK_URL" -H 'Content-Type: application/json' --data-raw "{\"text\":$(j "$msg at $iso")}" &&
    sent=$sig tokens=$((tokens - 1)) held=0
fi
for v in hb_ok sent tokens refill held slow updates reboot sec_since ls_errs fb_ok bins; do printf '%s=%q\n' "$v" "${!v}"; done >"$dir/state"
echo "kit-watch: $state$text"
