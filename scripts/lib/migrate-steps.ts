/**
 * What scripts/migrate-to-postgres.ts runs on the server, built as data (see server-steps.ts). pgloader and
 * psql run ON the server: the database firewall admits only the droplet. The database URL is a Secret: it
 * travels in the script text on stdin, reaches libpq and pgloader through their environment (pg-lib.sh's
 * pg_use), never a command line, and shows as '***' in every log and dry run.
 */
import { APP_TABLES_QUERY, LAYOUT, appUnit } from "../../cloud-init/layout.ts";
import { envFileLines } from "../../cloud-init/server-files.ts";
import { pgRowsQuery, type PgKind, type SqliteTable, sqliteRowsQuery } from "./migrate-canon.ts";
import { Secret } from "./secret.ts";
import { type ServerPaths, SERVER } from "./server-steps.ts";
import { bash, join, raw, type Script, step, type Step } from "./shell.ts";

/** Where the target database is and how to trust it. */
export interface TargetDatabase {
  readonly url: Secret;
  /** PEM of the cluster's CA. */
  readonly caCertificate: string;
  /** The drill's scratch database (DRILL_DATABASE_URL in database.env), when known. */
  readonly drillUrl?: Secret;
  /**
   * The cluster's admin on the app database (the stack output database_admin_url), when known: on PostgreSQL 15+
   * a user DigitalOcean's API created has no CREATE on schema public of a database the API created, so the move
   * grants it once, as the admin, in the app and drill databases.
   */
  readonly adminUrl?: Secret;
}

const source = (paths: ServerPaths) => bash`. ${paths.kitEnvFile}`;
const asApp = raw(`runuser -u "$APP_USER" --`);
const UNITS = LAYOUT.units;

/**
 * libpq pointed at the target (pg-lib.sh's pg_use: PGHOST, PGUSER, PGPASSWORD … from the URL), trusting the
 * given CA through a temp file that is removed when the step ends.
 */
function connect(db: TargetDatabase, paths: ServerPaths, url: Secret = db.url): Script {
  return bash`[ -r ${paths.libDir}/pg-lib.sh ] || { echo "kit: ${paths.libDir}/pg-lib.sh is missing (a server bootstrapped by an older kit): run scripts/deploy.ts --config-only first" >&2; exit 1; }
. ${paths.libDir}/pg-lib.sh
kit_ca=$(mktemp /run/kit-postgres-ca.XXXXXX)
trap 'rm -f "$kit_ca"' EXIT
printf '%s\\n' ${db.caCertificate.trim()} >"$kit_ca"
export PGSSLROOTCERT=$kit_ca
KIT_DATABASE_URL=${url}
pg_use KIT_DATABASE_URL`;
}

/** psql as the step's scripts call it: no psqlrc, unaligned tuples only, stop at the first error. */
const PSQL = raw("psql -X -q -A -t -v ON_ERROR_STOP=1");

/**
 * Everything the migration needs to know, read-only (in a dry run too), as lines:
 * `key=value` facts, `table<TAB>name<TAB>rows` and `column<TAB>table<TAB>…` (PRAGMA table_info) of the live
 * database (read-only connections), `pg_table=name` for each table already in the target, and
 * `target=…` (the client/server version line) once psql reached it over TLS.
 */
export function preflight(db: TargetDatabase, paths: ServerPaths = SERVER): Step {
  return step(
    "check the server, the SQLite database and the target PostgreSQL (read-only)",
    join(
      source(paths),
      bash`ro() { ${asApp} sqlite3 -readonly -cmd '.timeout 5000' "$DB_FILE" "$@"; }
tabs() { ${asApp} sqlite3 -readonly -cmd '.timeout 5000' -cmd '.mode tabs' "$DB_FILE" "$@"; }
echo "database_env=$([ -e ${LAYOUT.databaseEnvFile} ] && echo yes || echo no)"
echo "marker=$([ -e ${LAYOUT.postgresSwitchMarker} ] && echo yes || echo no)"
echo "db_exists=$([ -s "$DB_FILE" ] && echo yes || echo no)"
[ -s "$DB_FILE" ] || exit 0
echo "db_bytes=$(( $(stat -c %s "$DB_FILE") + $( [ -e "$DB_FILE-wal" ] && stat -c %s "$DB_FILE-wal" || echo 0) ))"
echo "free_bytes=$(df --output=avail -B1 "$VOLUME_MOUNT" | tail -n 1 | tr -d ' ')"
echo "quick_check=$(ro 'PRAGMA quick_check' 2>&1 | head -n 5 | tr '\\n' ' ' | sed 's/ $//')"
echo "user_version=$(ro 'PRAGMA user_version')"
echo "litestream=$(systemctl is-active ${UNITS.litestream} 2>/dev/null || true)"
echo "pgloader=$(pgloader --version </dev/null 2>/dev/null | head -n 1 || true)"
echo "psql=$(psql --version </dev/null 2>/dev/null || true)"
for t in $(ro ${APP_TABLES_QUERY}); do
  printf 'table\\t%s\\t%s\\n' "$t" "$(ro "SELECT count(*) FROM \\"$t\\"")"
  tabs "SELECT 'column', '$t', name, type, \\"notnull\\", ifnull(dflt_value, ''), pk FROM pragma_table_info('$t') ORDER BY cid"
done
command -v psql >/dev/null || exit 0`,
      connect(db, paths),
      bash`echo "target=$(pg_check_clients psql 2>&1 | tail -n 1 | pg_redact)"
${PSQL} -c "SELECT 'pg_table=' || table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1" 2>&1 | pg_redact || true`,
    ),
    true,
  );
}

/** The pgloader and psql packages, when the server lacks them (Debian's; the lab's image has them). */
export function installTools(): Step {
  return step(
    "install pgloader and postgresql-client (apt-get)",
    bash`export DEBIAN_FRONTEND=noninteractive
apt-get update -q </dev/null >&2
apt-get install -y -q -o DPkg::Lock::Timeout=300 pgloader postgresql-client </dev/null >&2
echo "kit: $(pgloader --version </dev/null | head -n 1); $(psql --version)" >&2`,
  );
}

/** The client/server check after an install: psql reaches the target over TLS and is new enough. */
export function checkTarget(db: TargetDatabase, paths: ServerPaths = SERVER): Step {
  return step("check the target PostgreSQL over TLS (psql version against the server's)", join(connect(db, paths), bash`pg_check_clients psql | pg_redact >&2`), true);
}

/**
 * Maintenance on: Caddy loads the maintenance configuration (503, a message and Retry-After on every path)
 * through its admin API. The normal Caddyfile stays as it is on disk, so `systemctl reload caddy` (maintenance
 * off, or a Caddy restart) is always the way back. The file is written first when the server's copy differs
 * (a server bootstrapped before it existed).
 */
export function maintenanceOn(content: string): Step {
  const body = Buffer.from(content).toString("base64");
  return step(
    "maintenance on: Caddy answers 503 with Retry-After on every path",
    bash`f=${LAYOUT.maintenanceCaddyfile}
tmp=$(mktemp "$f.kit.XXXXXX")
printf '%s' ${raw(`'${body}'`)} | base64 -d >"$tmp"
if cmp -s "$tmp" "$f"; then rm -f "$tmp"; else chmod 0644 "$tmp" && mv -f "$tmp" "$f"; fi
caddy reload --config "$f" --adapter caddyfile --force </dev/null >&2
echo "maintenance_on=$(date -u +%s.%N)"`,
  );
}

/** Maintenance off: Caddy back on its own Caddyfile. */
export function maintenanceOff(): Step {
  return step(`maintenance off: Caddy back on ${LAYOUT.caddyfile}`, bash`systemctl reload ${UNITS.caddy}
echo "maintenance_off=$(date -u +%s.%N)"`);
}

/**
 * Stops both app slots (systemd's SIGTERM: the app drains its requests) and pauses the watcher, whose heartbeat
 * would write to the SQLite file while it is being moved (watcherResume starts its timer again).
 */
export function stopApp(ports: readonly [number, number]): Step {
  return step(`stop the app (${ports.map(appUnit).join(", ")}): drained; pause the watcher`, bash`systemctl stop ${ports.map(appUnit)} ${UNITS.watchTimer} ${UNITS.watch}`);
}

/** The watcher's timer again (it reads database.env at each run, so it checks whichever database is live). */
export function watcherResume(): Step {
  return step(`start ${UNITS.watchTimer} again`, bash`systemctl start ${UNITS.watchTimer}`);
}

/**
 * With the app stopped nothing writes any more: Litestream gets `waitSeconds` (past its sync interval) to ship
 * the last frames, then stops, which flushes what is left (SIGTERM). From here on nothing has the file open.
 */
export function finishReplication(waitSeconds: number): Step {
  return step(
    `let Litestream replicate the final state (${waitSeconds} s), then stop it`,
    bash`if systemctl is-active --quiet ${UNITS.litestream}; then
  sleep ${waitSeconds}
  systemctl stop ${UNITS.litestream}
  echo "kit: ${UNITS.litestream} stopped after the final sync" >&2
else
  echo "kit: ${UNITS.litestream} was not running: the replica may lag behind the database (see the watcher)" >&2
fi`,
  );
}

/**
 * The final consistent snapshot: a read-only `.backup` of the live file into the aside dir (kept, never
 * deleted), read by a read-only connection while nothing else has the database open (so no writer of an
 * affected SQLite version touches the live WAL: README "WAL-reset bug"). Then the copy pgloader reads, in the
 * scratch dir: the kit's own tables (_kit_*, _litestream_*) dropped from it, journal mode DELETE. The live
 * file is left untouched. Prints `snapshot=`, `load_copy=`.
 */
export function snapshot(paths: ServerPaths = SERVER): Step {
  return step(
    "the final SQLite snapshot (read-only .backup into the aside dir) and pgloader's copy of it",
    join(
      source(paths),
      bash`stamp=$(date -u +%Y%m%dT%H%M%SZ)
snap="$ASIDE_DIR/before-postgres-$stamp.sqlite3"
${asApp} sqlite3 -readonly -cmd '.timeout 10000' "$DB_FILE" ".backup '$snap'"
dir="$SCRATCH_DIR/to-postgres-$stamp"
install -d -o "$APP_USER" -g "$APP_USER" -m 0750 "$dir"
cp "$snap" "$dir/load.sqlite3"
drop=$(sqlite3 "$dir/load.sqlite3" "SELECT 'DROP TABLE \\"' || name || '\\";' FROM sqlite_schema WHERE type = 'table' AND name NOT GLOB 'sqlite_*' AND (name GLOB '_kit_*' OR name GLOB '_litestream_*')")
sqlite3 "$dir/load.sqlite3" "$drop PRAGMA journal_mode = DELETE;" >/dev/null
chown -R "$APP_USER:$APP_USER" "$dir"
echo "kit: snapshot $snap ($(du -h "$snap" | cut -f1)); pgloader reads $dir/load.sqlite3" >&2
echo "snapshot=$snap"
echo "load_copy=$dir/load.sqlite3"`,
    ),
  );
}

/**
 * pgloader from the load copy into the target, with the declared load file (LAYOUT.pgloaderLoadFile): its
 * source and target come from the environment (mustache, pgloader's own), the password from PGPASSWORD.
 * pgloader speaks TLS (sslmode=require) and trusts the cluster's CA through SSL_CERT_FILE; psql has verified
 * the server's name against that CA (verify-full) in the same step. Exit 3 when pgloader reports errors.
 */
export function load(db: TargetDatabase, loadCopy: string, paths: ServerPaths = SERVER): Step {
  return step(
    "load the snapshot into PostgreSQL (pgloader)",
    join(
      connect(db, paths),
      bash`pg_check_clients psql | pg_redact >&2
export SSL_CERT_FILE=$PGSSLROOTCERT
export KIT_PGLOADER_SOURCE=sqlite://${loadCopy}
export KIT_PGLOADER_TARGET="postgresql://$PGHOST:$PGPORT/$PGDATABASE?sslmode=require"
log=$(mktemp /run/kit-pgloader.XXXXXX)
rc=0
# stdin is this script (it comes on ssh's stdin): pgloader must not read it.
pgloader --on-error-stop ${paths.libDir}/${LAYOUT.pgloaderLoadFile.split("/").pop()!} </dev/null >"$log" 2>&1 || rc=$?
pg_redact <"$log" | grep -vE '^\\s*$' | tail -n 25 >&2
if grep -qE '(ERROR|FATAL|KABOOM)' "$log"; then rc=3; fi
rm -f "$log"
exit "$rc"`,
    ),
  );
}

/**
 * As the cluster's admin: the app user may create tables in schema public of the app database (and of the
 * drill's, which pg_restore fills), as the owner of a database may on PostgreSQL 15+.
 */
export function grantSchema(db: TargetDatabase, user: string, databases: readonly string[], paths: ServerPaths = SERVER): Step {
  if (!db.adminUrl) throw new Error("grantSchema needs the admin URL");
  const grants = databases.map((d) => bash`PGDATABASE=${d} ${PSQL} -c ${`GRANT ALL ON SCHEMA public TO "${user}"`}`);
  return step(`as the cluster's admin: GRANT ALL ON SCHEMA public TO ${user} in ${databases.join(", ")}`, join(connect(db, paths, db.adminUrl), ...grants));
}

/** SQL run on the target (as the app user) with psql; stdout is its rows. */
export function pgSql(title: string, db: TargetDatabase, sql: string, paths: ServerPaths = SERVER): Step {
  return step(title, join(connect(db, paths), bash`${PSQL} <<'KIT_SQL' 2>&1 | pg_redact
${raw(sql)}
KIT_SQL`));
}

/**
 * The comparison: for each table, the row count and the sha256 of its canonical rows (migrate-canon.ts) on
 * the load copy (sqlite3, read-only) and on PostgreSQL (psql), streamed through sha256sum. Prints
 * `check<TAB>table<TAB>sqlite|pg<TAB>rows<TAB>sha256` lines.
 */
export function compare(db: TargetDatabase, loadCopy: string, tables: readonly SqliteTable[], kinds: Readonly<Record<string, Readonly<Record<string, PgKind>>>>, paths: ServerPaths = SERVER): Step {
  const perTable = tables.map((t) => {
    const pgQuery = `SET extra_float_digits = 0; ${pgRowsQuery(t, kinds[t.name.toLowerCase()] ?? {})}`;
    const count = `SELECT count(*) FROM "${t.name}"`;
    return bash`sha=$(sqlite3 -readonly ${loadCopy} ${sqliteRowsQuery(t)} | sha256sum | cut -d' ' -f1)
printf 'check\\t%s\\tsqlite\\t%s\\t%s\\n' ${t.name} "$(sqlite3 -readonly ${loadCopy} ${count})" "$sha"
sha=$(${PSQL} -c ${pgQuery} | sha256sum | cut -d' ' -f1)
printf 'check\\t%s\\tpg\\t%s\\t%s\\n' ${t.name} "$(${PSQL} -c ${count.toLowerCase()})" "$sha"`;
  });
  return step(
    `compare every row: counts and sha256 of the canonical rows of ${tables.length} table${tables.length === 1 ? "" : "s"}, both sides`,
    join(connect(db, paths), ...perTable),
  );
}

/** The PostgreSQL column types of the loaded tables: `kind<TAB>table<TAB>column<TAB>data_type` lines. */
export const COLUMN_TYPES_SQL = `SELECT 'kind' || E'\\t' || table_name || E'\\t' || column_name || E'\\t' || data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position;`;

/**
 * Change tracking for --rollback, installed at the switch: every insert, update and delete on the app's
 * tables on PostgreSQL lands as a row in `_kit_changes` (the table, the operation, the primary key and the
 * row as JSON), so a rollback can say exactly which writes happened on PostgreSQL and hand them over.
 */
export function trackChangesSql(tables: readonly { readonly name: string; readonly key: string }[]): string {
  return [
    `CREATE TABLE IF NOT EXISTS _kit_changes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), tbl text NOT NULL, op text NOT NULL, pk text NOT NULL, row_data jsonb);`,
    `CREATE OR REPLACE FUNCTION _kit_track_change() RETURNS trigger LANGUAGE plpgsql AS $kit$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO _kit_changes (tbl, op, pk, row_data) VALUES (TG_TABLE_NAME, TG_OP, to_jsonb(OLD) ->> TG_ARGV[0], to_jsonb(OLD));
    RETURN OLD;
  END IF;
  INSERT INTO _kit_changes (tbl, op, pk, row_data) VALUES (TG_TABLE_NAME, TG_OP, to_jsonb(NEW) ->> TG_ARGV[0], to_jsonb(NEW));
  RETURN NEW;
END $kit$;`,
    ...tables.map((t) => `CREATE OR REPLACE TRIGGER _kit_track AFTER INSERT OR UPDATE OR DELETE ON "${t.name}" FOR EACH ROW EXECUTE FUNCTION _kit_track_change('${t.key}');`),
  ].join("\n");
}

/** Per table: max(key) and count(*) at the switch, as `at_switch<TAB>table<TAB>max<TAB>count` lines. */
export function atSwitchSql(tables: readonly { readonly name: string; readonly key: string }[]): string {
  return tables.map((t) => `SELECT 'at_switch' || E'\\t' || '${t.name}' || E'\\t' || coalesce(max("${t.key}")::text, '') || E'\\t' || count(*) FROM "${t.name}";`).join("\n");
}

/**
 * What happened on PostgreSQL since the switch, net per row: `change<TAB>table<TAB>added|changed|deleted|
 * added-then-deleted<TAB>pk<TAB>row JSON` (the row as it is now, or as it was when deleted).
 */
export const CHANGES_SQL = `WITH per_row AS (
  SELECT tbl, pk, (array_agg(op ORDER BY id))[1] AS first_op, (array_agg(op ORDER BY id DESC))[1] AS last_op,
         (array_agg(row_data ORDER BY id DESC))[1] AS last_row, max(at) AS at
  FROM _kit_changes GROUP BY tbl, pk)
SELECT 'change' || E'\\t' || tbl || E'\\t' ||
       CASE WHEN first_op = 'INSERT' AND last_op = 'DELETE' THEN 'added-then-deleted'
            WHEN first_op = 'INSERT' THEN 'added' WHEN last_op = 'DELETE' THEN 'deleted' ELSE 'changed' END
       || E'\\t' || pk || E'\\t' || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || E'\\t' || last_row::text
FROM per_row ORDER BY tbl, pk;`;

/** Moves tables on the target into a new schema (never dropped: the data stays for inspection). */
export function moveAsideSql(schema: string, tables: readonly string[]): string {
  return [
    `CREATE SCHEMA IF NOT EXISTS "${schema}";`,
    ...tables.map((t) => `ALTER TABLE IF EXISTS public."${t}" SET SCHEMA "${schema}";`),
  ].join("\n");
}

/**
 * The switch's files: database.env (0600: DATABASE_URL, PGSSLROOTCERT, DRILL_DATABASE_URL) and the CA
 * (0644), written atomically. From here on app@.service starts on PostgreSQL (EnvironmentFile= after kit.env).
 */
export function writeDatabaseEnv(db: TargetDatabase): Step {
  // The same lines deploy.ts writes (envFileLines): a later deploy finds the file unchanged.
  const content = new Secret(
    envFileLines({ DATABASE_URL: db.url.reveal(), PGSSLROOTCERT: LAYOUT.postgresCaFile, ...(db.drillUrl ? { DRILL_DATABASE_URL: db.drillUrl.reveal() } : {}) }),
  );
  return step(
    `write ${LAYOUT.databaseEnvFile} (0600) and ${LAYOUT.postgresCaFile}`,
    bash`install -d -m 0755 ${LAYOUT.postgresCaFile.replace(/\/[^/]+$/, "")}
tmp=$(mktemp ${LAYOUT.postgresCaFile}.kit.XXXXXX)
printf '%s\\n' ${db.caCertificate.trim()} >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" ${LAYOUT.postgresCaFile}
tmp=$(mktemp ${LAYOUT.databaseEnvFile}.kit.XXXXXX)
chmod 0600 "$tmp"
printf '%s' ${content} >"$tmp" && mv -f "$tmp" ${LAYOUT.databaseEnvFile}
echo "kit: wrote ${LAYOUT.databaseEnvFile} and ${LAYOUT.postgresCaFile}" >&2`,
  );
}

/** Moves database.env aside (never deleted): the app starts on SQLite again. Prints `aside=` (or nothing). */
export function databaseEnvAside(label: string): Step {
  return step(
    `move ${LAYOUT.databaseEnvFile} aside: the app runs on SQLite`,
    bash`f=${LAYOUT.databaseEnvFile}
if [ -e "$f" ]; then
  aside="$f.${raw(label)}-$(date -u +%Y%m%dT%H%M%SZ)"
  mv "$f" "$aside" && echo "kit: moved $f to $aside" >&2
  echo "aside=$aside"
fi`,
  );
}

/** Starts one slot and waits for its health path (the app picks its engine from DATABASE_URL). */
export function startApp(port: number, healthSeconds: number, paths: ServerPaths = SERVER): Step {
  return step(
    `start ${appUnit(port)} and health-check it`,
    bash`systemctl enable --quiet ${appUnit(port)}
systemctl restart ${appUnit(port)}
${paths.libDir}/wait-healthy.sh ${port} ${healthSeconds}`,
  );
}

/** Writes a small file as root (the marker, the rollback report), keeping any earlier one aside. */
export function writeStateFile(path: string, content: string, mode: "0600" | "0644"): Step {
  const body = Buffer.from(content).toString("base64");
  return step(
    `write ${path}`,
    bash`install -d -m 0755 "$(dirname ${path})"
if [ -e ${path} ]; then mv ${path} ${path}.before-$(date -u +%Y%m%dT%H%M%SZ); fi
tmp=$(mktemp ${path}.kit.XXXXXX)
printf '%s' ${raw(`'${body}'`)} | base64 -d >"$tmp" && chmod ${mode} "$tmp" && mv -f "$tmp" ${path}`,
  );
}

/** Reads the switch marker (read-only); nothing when there is none. */
export function readMarker(): Step {
  return step(
    `read ${LAYOUT.postgresSwitchMarker}`,
    bash`echo "database_env=$([ -e ${LAYOUT.databaseEnvFile} ] && echo yes || echo no)"
if [ -e ${LAYOUT.postgresSwitchMarker} ]; then echo "marker=$(base64 -w0 ${LAYOUT.postgresSwitchMarker})"; fi`,
    true,
  );
}

/** After a rollback the marker is moved aside, so a new move can run (and a second rollback cannot). */
export function markerAside(): Step {
  return step(
    `move ${LAYOUT.postgresSwitchMarker} aside`,
    bash`[ ! -e ${LAYOUT.postgresSwitchMarker} ] || mv ${LAYOUT.postgresSwitchMarker} ${LAYOUT.postgresSwitchMarker.replace(/\.json$/, "")}.rolled-back-$(date -u +%Y%m%dT%H%M%SZ).json`,
  );
}

/** Removes pgloader's copy (only a to-postgres scratch dir); the snapshot in the aside dir stays. */
export function removeLoadCopy(loadCopy: string, paths: ServerPaths = SERVER): Step {
  return step(
    "remove pgloader's copy (the snapshot stays in the aside dir)",
    join(source(paths), bash`dir=$(dirname ${loadCopy})
case "$dir" in "$SCRATCH_DIR"/to-postgres-*) rm -rf "$dir" ;; *) echo "kit: not removing $dir: not a migration copy" >&2 ;; esac`),
  );
}
