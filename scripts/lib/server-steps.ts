/**
 * What runs on the server, built as data. Every builder is pure: it returns a Step (title + bash starting
 * with `set -euo pipefail`) and never talks to a server. The scripts run Steps with the SSH runner; tests
 * compare the text and run the file-level parts against real sqlite3/litestream.
 *
 * Server-side facts (paths, ports, the app user) come from the server's own kit.env, which every step
 * sources: the server describes itself, rendered from cloud-init/layout.ts.
 */
import { APP_TABLES_QUERY, LAYOUT, appUnit } from "../../cloud-init/layout.ts";
import { DIRECTORIES, directoryCommands, effectCommand, effectOrder } from "../../cloud-init/effects.ts";
import { enabledNowUnits, type ServerFile } from "../../cloud-init/server-files.ts";
import { bash, join, quote, raw, type Script, step, type Step } from "./shell.ts";

/** Server paths the builders use beyond kit.env (tests point them into a temp dir). */
export interface ServerPaths {
  readonly kitEnvFile: string;
  readonly libDir: string;
  readonly caddyfile: string;
  readonly deployLock: string;
  /** The deploy switch's rules, the record of the active slot. @default LAYOUT.upstreamRules */
  readonly upstreamRules?: string;
}

export const SERVER: ServerPaths = {
  kitEnvFile: LAYOUT.kitEnvFile,
  libDir: LAYOUT.libDir,
  caddyfile: LAYOUT.caddyfile,
  deployLock: LAYOUT.deployLock,
  upstreamRules: LAYOUT.upstreamRules,
};
const upstreamRules = (paths: ServerPaths) => paths.upstreamRules ?? LAYOUT.upstreamRules;

const source = (paths: ServerPaths) => bash`. ${paths.kitEnvFile}`;
/**
 * sqlite3 as every step runs it: read-only, because Debian's sqlite3 (3.40.1) has SQLite's WAL-reset bug and
 * must neither write to nor checkpoint the live file (a read-only connection does neither, also not when it
 * closes; writes to the live file go through kit-sql.js, the installed Deno's fixed SQLite); and as the app
 * user, because a read-only connection still creates the -wal/-shm it does not find, and root-owned ones
 * would lock the app out.
 */
const readSqlite = raw(`runuser -u "$APP_USER" -- sqlite3 -readonly`);
/** `table count` lines for the tables of a database (names limited to [A-Za-z0-9_]). */
const countsFunction = bash`counts() { ${readSqlite} -cmd '.timeout 5000' "$1" ${APP_TABLES_QUERY} |
  while read -r t; do printf '%s\\t%s\\n' "$t" "$(${readSqlite} -cmd '.timeout 5000' "$1" "SELECT count(*) FROM $t")"; done; }`;

/** Reads what the scripts need to know about the server, as `key=value` lines (read-only). */
export function inspect(ports: readonly [number, number], paths: ServerPaths = SERVER): Step {
  return step(
    "inspect the server",
    join(
      source(paths),
      bash`active=$(grep -oE 'dnat to 127\.0\.0\.1:[0-9]+' ${upstreamRules(paths)} 2>/dev/null | grep -oE '[0-9]+$' || true)
# A server bootstrapped before the deploy switch: its Caddyfile names the active slot itself.
[ -n "$active" ] || active=$(grep -oE 'reverse_proxy 127\.0\.0\.1:[0-9]+' ${paths.caddyfile} | grep -oE '[0-9]+$' | grep -vx ${LAYOUT.ports.upstream} || true)
echo "active_port=\${active:-$APP_PORT}"
echo "app_port=$APP_PORT"
echo "bootstrap_done=$(cat "$BOOTSTRAP_DONE_FILE" 2>/dev/null || true)"
echo "db_exists=$([ -s "$DB_FILE" ] && echo yes || echo no)"
for port in ${[...ports]}; do
  echo "slot_$port=$(readlink "$SLOTS_DIR/$port" 2>/dev/null || true)"
  echo "unit_$port=$(systemctl is-active "app@$port.service" 2>/dev/null || true)"
done
find "$RELEASES_DIR" -mindepth 1 -maxdepth 1 -type d ! -name '.*' 2>/dev/null | sort | sed 's/^/release=/'
echo "lock=$(tr '\\n' ' ' 2>/dev/null <${paths.deployLock}/owner || true)"
# A server bootstrapped before volume.env existed has VOLUME_DEVICE in kit.env.
[ ! -r "\${VOLUME_ENV_FILE:-}" ] || . "$VOLUME_ENV_FILE"
echo "volume_device=\${VOLUME_DEVICE:-}"
echo "s3_endpoint=$S3_ENDPOINT"
echo "drill_unit=$([ -e /etc/systemd/system/${LAYOUT.units.drill} ] && echo yes || echo no)"`,
    ),
    true,
  );
}

/**
 * The commands a push runs after writing: each changed file's declared effects (server-files.ts), once
 * each, daemon-reload first; then the declared directories (on the volume only where it is mounted) and
 * the timers, so a server bootstrapped by an older kit gains what this one added.
 */
export function afterPush(files: readonly ServerFile[]): Script {
  const byCommand = new Map<string, { order: number; paths: string[] }>();
  for (const file of files) {
    for (const effect of file.onChange) {
      const command = effectCommand(effect);
      if (!command) continue;
      const entry = byCommand.get(command) ?? { order: effectOrder(effect), paths: [] };
      entry.paths.push(file.path);
      byCommand.set(command, entry);
    }
  }
  const effects = [...byCommand].sort(([, a], [, b]) => a.order - b.order).map(([command, { paths }]) => `if has ${paths.map(quote).join(" ")}; then ${command}; fi`);
  const onVolume = DIRECTORIES.filter((d) => d.onVolume);
  const text = [
      ...effects,
      `if [ -d "$DB_DIR" ]; then`,
      ...directoryCommands(onVolume).map((line) => `  ${line}`),
      `else`,
      `  echo "kit: $VOLUME_MOUNT does not hold $DB_DIR (is the data volume mounted?): its directories were not created" >&2`,
      `fi`,
      ...directoryCommands(DIRECTORIES.filter((d) => !d.onVolume)),
      `systemctl enable --quiet --now ${enabledNowUnits().join(" ")}`,
    ].join("\n");
  return { text, display: text };
}

/**
 * Writes files that differ from what the server has (atomically: temp file + rename), then runs what their
 * declarations say a change needs (afterPush). Each changed file is named on stderr with its changed lines
 * (`- old`, `+ new`, at most 20), except secret files: those are named only, and their display shows the
 * size, never the contents. Prints each changed path on stdout.
 */
export function pushFiles(files: readonly ServerFile[], paths: ServerPaths = SERVER): Step {
  // The display shows sizes, not contents (and never a secret's).
  const puts = files.map((file): Script => ({
    text: bash`put ${file.path} ${file.mode} ${file.secret ? "secret" : "plain"} ${Buffer.from(file.content).toString("base64")}`.text,
    display: `put ${file.path} ${file.mode} <${Buffer.byteLength(file.content)} bytes${file.secret ? ", secret" : ""}>`,
  }));
  return step(
    `push configuration (${files.length} files)`,
    join(
      bash`changed=()
put() {
  local tmp old
  install -d -m 0755 "$(dirname "$1")"
  tmp=$(mktemp "$1.kit.XXXXXX")
  printf '%s' "$4" | base64 -d >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; return; fi
  echo "kit: updated $1" >&2
  if [[ $3 == plain ]]; then
    old=/dev/null && [[ -e $1 ]] && old=$1
    { diff --unchanged-line-format= --old-line-format='kit:   - %L' --new-line-format='kit:   + %L' "$old" "$tmp" || true; } | head -n 20 >&2
  fi
  chmod "$2" "$tmp" && chown root:root "$tmp" && mv -f "$tmp" "$1"
  changed+=("$1")
}
# has PATH...: was one of these files changed?
has() { local p q; for q in "$@"; do for p in "\${changed[@]}"; do [[ $p == "$q" ]] && return 0; done; done; return 1; }`,
      ...puts,
      source(paths),
      afterPush(files),
      bash`printf '%s\\n' "\${changed[@]}"`,
    ),
  );
}

/** Clones the app at `ref` into a new release directory; its path is the last line of stdout. */
export function fetchRelease(ref: string, paths: ServerPaths = SERVER): Step {
  return step(`fetch the app at ${ref}`, bash`${paths.libDir}/fetch-release.sh ${ref}`);
}

/** A consistent copy of the live database (`sqlite3 -readonly … .backup`) in the aside dir; prints its path. */
export function snapshot(label: string, paths: ServerPaths = SERVER): Step {
  return step(
    "snapshot the database before migrating",
    join(
      source(paths),
      bash`out="$ASIDE_DIR/${raw(label.replace(/[^A-Za-z0-9._-]/g, "-"))}-$(date -u +%Y%m%dT%H%M%SZ).sqlite3"
${readSqlite} -cmd '.timeout 10000' "$DB_FILE" ".backup '$out'"
echo "kit: snapshot of $DB_FILE at $out ($(du -h "$out" | cut -f1))" >&2
echo "$out"`,
    ),
  );
}

/**
 * The database's schema version pair (`PRAGMA schema_version`, `PRAGMA user_version`), read-only, as one
 * line: a migration that changes a table or bumps user_version changes it.
 */
export function schemaVersion(paths: ServerPaths = SERVER): Step {
  return step(
    "read the schema version",
    join(source(paths), bash`${readSqlite} -cmd '.timeout 5000' "$DB_FILE" 'PRAGMA schema_version; PRAGMA user_version;' | paste -sd ' '`),
    true,
  );
}

export function migrate(release: string, task: string, paths: ServerPaths = SERVER): Step {
  return step(`migrate (deno task ${task})`, bash`${paths.libDir}/run-task.sh ${release} ${task}`);
}

/** Points a slot at a release, (re)starts its unit and waits until it answers its health path. */
export function startSlot(port: number, release: string, healthSeconds: number, paths: ServerPaths = SERVER): Step {
  return step(
    `start ${appUnit(port)} and health-check it`,
    join(
      source(paths),
      bash`ln -sfn ${release} "$SLOTS_DIR/${port}"
systemctl enable --quiet ${appUnit(port)}
systemctl restart ${appUnit(port)}
${paths.libDir}/wait-healthy.sh ${port} ${healthSeconds}`,
    ),
  );
}

/**
 * The switch: installs the deploy switch's rules rendered for the new slot (LAYOUT.upstreamRules) and loads
 * them with one `nft -f`, a single transaction, so Caddy's stable upstream 127.0.0.1:<ports.upstream> leads
 * to the old slot until the instant it leads to the new one. Caddy is not reloaded: every client connection
 * stays open. Connections already made to the old slot keep it (conntrack) and finish there. Run only after the
 * new slot's health check passed. If nft refuses the rules, the kernel keeps the previous ones, and so does
 * the file (put back): what is on disk stays what runs.
 */
export function switchUpstream(rules: ServerFile, port: number, paths: ServerPaths = SERVER): Step {
  const body = Buffer.from(rules.content).toString("base64");
  const file = upstreamRules(paths);
  return step(
    `switch 127.0.0.1:${LAYOUT.ports.upstream} to 127.0.0.1:${port}`,
    bash`tmp=$(mktemp ${file}.kit.XXXXXX)
printf '%s' ${raw(`'${body}'`)} | base64 -d >"$tmp"
chmod 0644 "$tmp"
if [ -e ${file} ]; then cp -p ${file} ${file}.kit-previous; else : >${file}.kit-previous; fi
mv -f "$tmp" ${file}
if ! nft -f ${file}; then
  if [ -s ${file}.kit-previous ]; then mv -f ${file}.kit-previous ${file}; else rm -f ${file} ${file}.kit-previous; fi
  echo "kit: nft refused the new rules: 127.0.0.1:${LAYOUT.ports.upstream} still leads to the slot it led to (${file} put back)" >&2
  exit 1
fi
rm -f ${file}.kit-previous
echo "kit: 127.0.0.1:${LAYOUT.ports.upstream} now leads to 127.0.0.1:${port} (new connections; open ones finish where they are)" >&2`,
  );
}

/**
 * Stops a slot and keeps it from starting at boot. A slot that did not exit cleanly is named with its exit
 * status and then cleared from `systemctl --failed`, which on-call reads for what is broken *now*.
 */
export function stopSlot(port: number): Step {
  const unit = appUnit(port);
  return step(`stop ${unit}`, bash`systemctl disable --quiet ${unit} 2>/dev/null || true
systemctl stop ${unit}
result=$(systemctl show -p Result --value ${unit})
if [[ $result != success ]]; then
  echo "kit: ${unit} did not stop cleanly (result $result, exit status $(systemctl show -p ExecMainStatus --value ${unit})); see: journalctl -u ${unit}" >&2
  systemctl reset-failed ${unit}
fi`);
}

/** Deletes releases beyond the newest `keep`, never one a slot points at. */
export function pruneReleases(keep: number, paths: ServerPaths = SERVER): Step {
  return step(
    `keep the newest ${keep} releases`,
    join(
      source(paths),
      bash`in_use=$(readlink -f "$SLOTS_DIR"/* 2>/dev/null || true)
find "$RELEASES_DIR" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | sort -r | tail -n +${keep + 1} | while read -r r; do
  if grep -qxF "$r" <<<"$in_use"; then continue; fi
  rm -rf "$r" && echo "kit: removed old release $r" >&2
done`,
    ),
  );
}

/** Where a restore comes from. */
export type RestoreSource =
  | { readonly kind: "replica"; readonly timestamp?: string }
  | { readonly kind: "fallback" }
  | { readonly kind: "file"; readonly path: string };

export function describeSource(source: RestoreSource): string {
  if (source.kind === "replica") return source.timestamp ? `the S3 replica as of ${source.timestamp}` : "the latest S3 replica";
  if (source.kind === "fallback") return "the newest fallback backup on the volume";
  return `the file ${source.path}`;
}

/** Lists what the replica holds (generations, snapshots, WAL) and the fallback copies (read-only). */
export function listBackups(paths: ServerPaths = SERVER): Step {
  return step(
    "list the backups",
    join(
      source(paths),
      bash`set -a; . "$S3_CREDENTIALS_FILE"; set +a
# Litestream logs its errors on stdout, and these listings exit 0 even when S3 cannot be read.
for what in generations snapshots wal; do
  out=$(litestream "$what" -config "$LITESTREAM_CONFIG" "$DB_FILE" 2>&1) || true
  if grep -q 'level=ERROR' <<<"$out"; then echo "$out" >&2; exit 3; fi
  printf '== %s\n%s\n' "$what" "$out"
done
echo "== fallback"
find "$BACKUP_DIR" -maxdepth 1 -name 'app-*.sqlite3.gz' -printf '%f %s\\n' | sort`,
    ),
    true,
  );
}

/**
 * Restores into a new scratch directory (never over anything), then reports on stdout:
 * `scratch=`, `integrity=`, and `count<TAB>restored|live<TAB>table<TAB>rows` lines. Exit 4: the source
 * cannot be read (the message says why).
 */
export function restoreToScratch(from: RestoreSource, paths: ServerPaths = SERVER): Step {
  let fetch: Script;
  if (from.kind === "replica") {
    const at = from.timestamp ? bash`-timestamp ${from.timestamp}` : bash``;
    fetch = bash`set -a; . "$S3_CREDENTIALS_FILE"; set +a
echo "kit: restoring s3://$S3_BUCKET/$LITESTREAM_PREFIX ${raw(from.timestamp ? `as of ${from.timestamp}` : "(latest)")} into $out" >&2
if ! litestream restore -config "$LITESTREAM_CONFIG" -o "$out" ${at} "$DB_FILE" >"$dir/log" 2>&1; then
  cat "$dir/log" >&2; exit 4
fi`;
  } else if (from.kind === "fallback") {
    fetch = bash`newest=$(find "$BACKUP_DIR" -maxdepth 1 -name 'app-*.sqlite3.gz' | sort | tail -n 1)
[ -n "$newest" ] || { echo "kit: no fallback backup in $BACKUP_DIR" >&2; exit 4; }
echo "kit: restoring the fallback copy $newest into $out" >&2
gunzip -c "$newest" >"$out"`;
  } else {
    fetch = bash`src=${from.path}
[ -s "$src" ] || { echo "kit: $src does not exist or is empty" >&2; exit 4; }
echo "kit: copying $src (sqlite3 .backup) into $out" >&2
${readSqlite} -cmd '.timeout 10000' "$src" ".backup '$out'"`;
  }
  return step(
    `restore ${describeSource(from)} into scratch`,
    join(
      source(paths),
      countsFunction,
      bash`install -d -o "$APP_USER" -g "$APP_USER" -m 0750 "$SCRATCH_DIR"
dir=$(mktemp -d "$SCRATCH_DIR/restore-$(date -u +%Y%m%dT%H%M%SZ).XXXXXX")
chown "$APP_USER:$APP_USER" "$dir"
out=$dir/app.sqlite3
echo "scratch=$out"`,
      fetch,
      bash`chown -R "$APP_USER:$APP_USER" "$dir"
echo "kit: checking the restored copy (PRAGMA integrity_check)" >&2
echo "integrity=$(${readSqlite} "$out" 'PRAGMA integrity_check' 2>&1 | head -n 5 | tr '\\n' ' ' | sed 's/ $//')"
counts "$out" | sed 's/^/count\\trestored\\t/'
if [ -s "$DB_FILE" ]; then counts "$DB_FILE" | sed 's/^/count\\tlive\\t/'; fi`,
    ),
  );
}

/**
 * The file part of a swap, for a stopped app: moves the live database and its -wal/-shm into a new
 * directory under the aside dir (never deletes), puts `source` in place owned by the app user.
 * Prints `aside=<dir>`.
 */
export function swapFiles(sourceFile: string, label: string, mode: "move" | "copy"): Script {
  return bash`src=${sourceFile}
[ -s "$src" ] || { echo "kit: $src is missing or empty; nothing was changed" >&2; exit 1; }
aside="$ASIDE_DIR/${raw(label.replace(/[^A-Za-z0-9._-]/g, "-"))}-$(date -u +%Y%m%dT%H%M%SZ)"
install -d -o "$APP_USER" -g "$APP_USER" -m 0750 "$aside"
for f in "$DB_FILE" "$DB_FILE-wal" "$DB_FILE-shm"; do
  if [ -e "$f" ]; then mv "$f" "$aside/" && echo "kit: moved $f aside to $aside/" >&2; fi
done
${raw(mode === "move" ? "mv" : "cp")} "$src" "$DB_FILE"
chown "$APP_USER:$APP_USER" "$DB_FILE" && chmod 0640 "$DB_FILE"
echo "kit: $DB_FILE is now $src" >&2
echo "aside=$aside"`;
}

/**
 * Replaces the live database: stops both app slots and Litestream, swaps the files (swapFiles), starts
 * Litestream and the active slot, waits until healthy. Litestream starts a new generation by itself.
 */
export function replaceDatabase(sourceFile: string, label: string, mode: "move" | "copy", activePort: number, ports: readonly [number, number], healthSeconds: number, paths: ServerPaths = SERVER): Step {
  return step(
    `replace the live database with ${sourceFile}`,
    join(
      source(paths),
      bash`echo "kit: stopping the app and litestream" >&2
systemctl stop ${ports.map(appUnit)} ${LAYOUT.units.litestream}`,
      swapFiles(sourceFile, label, mode),
      bash`systemctl start ${LAYOUT.units.litestream} ${appUnit(activePort)}
${paths.libDir}/wait-healthy.sh ${activePort} ${healthSeconds}`,
    ),
  );
}

/** Deletes a scratch restore directory (only under the scratch dir). */
export function removeScratch(scratchFile: string, paths: ServerPaths = SERVER): Step {
  return step(
    "remove the scratch copy",
    join(source(paths), bash`dir=$(dirname ${scratchFile})
case "$dir" in "$SCRATCH_DIR"/restore-*) rm -rf "$dir" ;; *) echo "kit: not removing $dir: not a scratch restore" >&2; exit 1 ;; esac`),
  );
}

/** Runs the restore drill unit (the same one the timer runs) and prints its report and log. */
export function runDrill(): Step {
  return step(
    `run ${LAYOUT.units.drill}`,
    join(
      source(SERVER),
      bash`if [ ! -e /etc/systemd/system/${LAYOUT.units.drill} ]; then
  echo "kit: ${LAYOUT.units.drill} is not installed on this server (bootstrapped by an older kit): run scripts/deploy.ts once" >&2; exit 3
fi
rc=0
systemctl start ${LAYOUT.units.drill} || rc=$?
journalctl -u ${LAYOUT.units.drill} _SYSTEMD_INVOCATION_ID="$(systemctl show -p InvocationID --value ${LAYOUT.units.drill})" -o cat --no-pager >&2 || true
cat "$DRILL_DIR/latest.json"
exit "$rc"`,
    ),
  );
}
