#!/bin/bash
# Usage: run-task.sh RELEASE_DIR TASK
# Runs `deno task TASK` of a release as the app user, with the app's environment and sandbox, and waits.
# NO_COLOR: the output lands in logs and in the operator's error messages, where escape codes are noise.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}

release=${1:?usage: run-task.sh RELEASE_DIR TASK}
task=${2:?usage: run-task.sh RELEASE_DIR TASK}
"$(dirname "$0")/require-volume.sh"

secrets=()
[ -r "$APP_SECRETS_FILE" ] && secrets=(--property "EnvironmentFile=$APP_SECRETS_FILE")
# On PostgreSQL the task reads DATABASE_URL/PGSSLROOTCERT from there: EnvironmentFile= wins over --setenv.
[ -r {{databaseEnvFile}} ] && secrets+=(--property "EnvironmentFile={{databaseEnvFile}}")
exec systemd-run --quiet --wait --pipe --collect --service-type=exec \
  --uid="$APP_USER" --gid="$APP_USER" \
  --working-directory="$release" \
  --property "EnvironmentFile=$APP_ENV_FILE" "${secrets[@]}" \
  --setenv "DATABASE_URL=$DB_FILE" --setenv "DENO_DIR=$DENO_DIR" --setenv DENO_NO_UPDATE_CHECK=1 --setenv NO_COLOR=1 \
  --property CacheDirectory=app --property NoNewPrivileges=yes --property ProtectSystem=strict \
  --property "ReadWritePaths=$DB_DIR" --property ProtectHome=yes --property PrivateTmp=yes \
  {{binDir}}/deno task "$task"
