#!/bin/bash
# Sourced by the kit's PostgreSQL scripts (pg-dump-backup.sh, pg-restore-drill.sh, the migration's steps):
#   pg_use VAR           points libpq's environment (PGHOST, PGUSER, PGPASSWORD, …) at the URL in $VAR, so no
#                        URL or password is ever on a command line `ps` can see; tools then need no -d.
#   pg_check_clients T…  pg_dump/pg_restore refuse a server of a newer major: each tool's major must be at least
#                        the server's (SHOW server_version_num); exit 1 saying what to install.
#   pg_redact            filter: any postgres URL in the text becomes <url>.
# The URL: postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full (percent-encoding allowed).
# Its callers set their own shell options (the watcher runs without -e); run directly, it only checks itself.
[ "${BASH_SOURCE[0]}" != "$0" ] || set -euo pipefail
pg_redact() { sed -E 's#postgres(ql)?://[^ ]*#<url>#g'; }
pg_decode() { local s=${1//+/ }; printf '%b' "${s//%/\\x}"; }
pg_use() {
  local var=$1 url=${!1:-} re='^postgres(ql)?://([^:@/]+)(:([^@/]*))?@([^:/?]+):?([0-9]*)/([^?]+)(\?(.*))?$' kv
  [ -n "$url" ] || { echo "kit-pg: $var is not set (is {{databaseEnvFile}} in place? scripts/migrate-to-postgres.ts and scripts/deploy.ts write it)" >&2; return 1; }
  [[ $url =~ $re ]] || { echo "kit-pg: $var is not a postgresql://USER:PASSWORD@HOST:PORT/DB URL: fix it in {{databaseEnvFile}} (the stack output database_url)" >&2; return 1; }
  PGUSER=$(pg_decode "${BASH_REMATCH[2]}") PGPASSWORD=$(pg_decode "${BASH_REMATCH[4]}") PGHOST=${BASH_REMATCH[5]}
  PGPORT=${BASH_REMATCH[6]:-5432} PGDATABASE=$(pg_decode "${BASH_REMATCH[7]}") PGSSLMODE=verify-full
  local query=${BASH_REMATCH[9]}
  for kv in ${query//&/ }; do
    case ${kv%%=*} in
      sslmode) PGSSLMODE=${kv#*=} ;;
      sslrootcert) PGSSLROOTCERT=$(pg_decode "${kv#*=}") ;;
      connect_timeout) PGCONNECT_TIMEOUT=${kv#*=} ;;
      *) echo "kit-pg: $var: parameter ${kv%%=*} is not one the kit passes on (sslmode, sslrootcert, connect_timeout)" >&2; return 1 ;;
    esac
  done
  export PGUSER PGPASSWORD PGHOST PGPORT PGDATABASE PGSSLMODE PGSSLROOTCERT PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}
}
pg_check_clients() {
  local tool num v major server
  for tool in psql "$@"; do
    command -v "$tool" >/dev/null || { echo "kit-pg: $tool is not installed: apt-get install postgresql-client" >&2; return 1; }
  done
  num=$(psql -XAtq -c 'SHOW server_version_num' 2>&1) ||
    { echo "kit-pg: PostgreSQL at $PGHOST:$PGPORT not reachable: $(head -n 1 <<<"$num" | pg_redact)" >&2; return 1; }
  server=$((num / 10000))
  for tool in "$@"; do
    v=$("$tool" --version) && [[ $v =~ ([0-9]+)(\.[0-9]+)+ ]] && major=${BASH_REMATCH[1]}
    if [ "${major:-0}" -lt "$server" ]; then
      echo "kit-pg: $tool $major cannot work with this PostgreSQL $server server: install postgresql-client-$server (Debian 13 ships 17; on Debian 12 add apt.postgresql.org), then run this again" >&2
      return 1
    fi
  done
  echo "kit-pg: PostgreSQL $server ($num) at $PGHOST:$PGPORT/$PGDATABASE; $(for tool in "$@"; do printf '%s ' "$("$tool" --version | sed 's/ (PostgreSQL)//')"; done)"
}
