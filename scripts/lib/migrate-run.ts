/**
 * The SQLite → PostgreSQL move and its rollback (scripts/migrate-to-postgres.ts), as plans of server steps
 * (migrate-steps.ts). Everything before the switch is guarded: any failure there puts the server back on
 * SQLite (database.env aside, Litestream on, the app on the SQLite file, maintenance off), and the message
 * says what failed and that nothing moved. The SQLite file itself is never changed.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { serverFiles } from "../../cloud-init/server-files.ts";
import { durationSeconds } from "../../app/config/checker.ts";
import { Later, Plan, say } from "./cli.ts";
import { lockStep } from "./deploy-lock.ts";
import { inspectStep } from "./deploy-run.ts";
import { OpsError } from "./errors.ts";
import { checkPasses, formatChecks, integerKey, parseChecks, parseSqliteColumns, pgKind, type PgKind, pgName, schemaFixSql, type SqliteTable, type TableCheck } from "./migrate-canon.ts";
import * as m from "./migrate-steps.ts";
import type { TargetDatabase } from "./migrate-steps.ts";
import { backupsToPostgres, backupsToSqlite } from "./pg-backups.ts";
import { formatBytes } from "./progress.ts";
import { Secret } from "./secret.ts";
import { type ServerPaths, SERVER } from "./server-steps.ts";
import type { Step } from "./shell.ts";
import { keyValues, type Runner, slotPorts } from "./state.ts";
import { readOutputs, type Target } from "./target.ts";

/** What the preflight found (parsed from its stdout). */
export interface Preflight {
  readonly databaseEnv: boolean;
  readonly marker: boolean;
  readonly dbExists: boolean;
  readonly dbBytes: number;
  readonly freeBytes: number;
  readonly quickCheck: string;
  /** PRAGMA user_version: the app's schema version, recorded in kit_schema_version on PostgreSQL. */
  readonly userVersion: number;
  readonly litestream: string;
  readonly pgloader: string;
  readonly psql: string;
  /** The client/server line of pg-lib.sh's check, or its refusal. */
  readonly target: string;
  readonly tables: readonly SqliteTable[];
  readonly rows: Readonly<Record<string, number>>;
  readonly pgTables: readonly string[];
}

export function parsePreflight(stdout: string): Preflight {
  const kv = keyValues(stdout);
  const rows: Record<string, number> = {};
  for (const line of stdout.split("\n")) {
    const [tag, table, count] = line.split("\t");
    if (tag === "table" && table) rows[table] = Number(count);
  }
  const pgTables = stdout.split("\n").filter((l) => l.startsWith("pg_table=")).map((l) => l.slice("pg_table=".length));
  return {
    databaseEnv: kv.get("database_env") === "yes",
    marker: kv.get("marker") === "yes",
    dbExists: kv.get("db_exists") === "yes",
    dbBytes: Number(kv.get("db_bytes") ?? 0),
    freeBytes: Number(kv.get("free_bytes") ?? 0),
    quickCheck: kv.get("quick_check") ?? "",
    userVersion: Number(kv.get("user_version") ?? 0),
    litestream: kv.get("litestream") ?? "",
    pgloader: kv.get("pgloader") ?? "",
    psql: kv.get("psql") ?? "",
    target: kv.get("target") ?? "",
    tables: parseSqliteColumns(stdout),
    rows,
    pgTables,
  };
}

/**
 * Where an app records its migrations on PostgreSQL (one row per applied version; SQLite keeps PRAGMA
 * user_version): the move writes the SQLite file's user_version there, so the next deploy's migrate task
 * carries on from it.
 */
export const SCHEMA_VERSION_TABLE = "kit_schema_version";

export const schemaVersionSql = (version: number): string =>
  `CREATE TABLE IF NOT EXISTS ${SCHEMA_VERSION_TABLE} (version int NOT NULL);\n${version > 0 ? `INSERT INTO ${SCHEMA_VERSION_TABLE} (version) VALUES (${Math.trunc(version)});` : ""}`;

/** Room the move needs on the volume: the snapshot and pgloader's copy of it, plus 64 MiB. */
export const neededBytes = (dbBytes: number): number => 2 * dbBytes + 64 * 1024 ** 2;

/**
 * The refusals before anything changes, each with its fix. `toolsMissing` is not one: the move installs them
 * (a dry run says it would) and checks the target after that.
 */
export function refusals(p: Preflight, stack: string): OpsError[] {
  const out: OpsError[] = [];
  if (p.databaseEnv || p.marker) {
    out.push(new OpsError(`${stack} already runs on PostgreSQL (${p.databaseEnv ? LAYOUT.databaseEnvFile : LAYOUT.postgresSwitchMarker} exists)`, `to go back to SQLite: npx zx scripts/migrate-to-postgres.ts ${stack} --rollback`));
    return out;
  }
  if (!p.dbExists) out.push(new OpsError(`${stack} has no SQLite database to move`, "check the server (scripts/status.ts) — is the volume mounted and the app bootstrapped?"));
  if (p.dbExists && p.quickCheck !== "ok") {
    out.push(new OpsError(`the SQLite database fails PRAGMA quick_check (${p.quickCheck}): refusing to move a damaged database`, `restore a good copy first (runbook "A migration went wrong"/"restore.ts"), then move that`));
  }
  if (p.dbExists && p.freeBytes < neededBytes(p.dbBytes)) {
    out.push(new OpsError(`the volume has ${formatBytes(p.freeBytes)} free; the snapshot and pgloader's copy need ${formatBytes(neededBytes(p.dbBytes))}`, `grow the volume first (runbook "The volume is filling up"), or free space in ${LAYOUT.asideDir}`));
  }
  const tools = Boolean(p.pgloader && p.psql);
  if (tools && !/^kit-pg: PostgreSQL \d+/.test(p.target)) {
    out.push(new OpsError(`the target PostgreSQL is not usable from the server: ${p.target.replace(/^kit-pg: /, "") || "no answer"}`, "check the database URL and CA (outputs database_url, database_ca_certificate), the database firewall (it must admit this server), and the cluster's state"));
  }
  const clash = [...p.tables.map((t) => pgName(t.name)), SCHEMA_VERSION_TABLE].filter((t) => p.pgTables.includes(t));
  if (clash.length) {
    out.push(new OpsError(`the target database already holds the app's table${clash.length > 1 ? "s" : ""} ${clash.join(", ")}: the move loads into an empty database only`, "point it at an empty database, or move those tables aside there (ALTER TABLE … SET SCHEMA) after you checked what they hold"));
  }
  if (p.tables.length === 0 && p.dbExists) out.push(new OpsError("the SQLite database holds no app table: nothing to move", "check the app's migrations ran (deno task migrate)"));
  return out;
}

/** The target database: flags win over the outputs. */
export function targetDatabase(target: Target, flags: { readonly urlFile?: string; readonly caFile?: string; readonly drillUrlFile?: string; readonly adminUrlFile?: string }): TargetDatabase {
  const outputs = readOutputs(target.outputsFile, target.env.stackName) as Record<string, unknown>;
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file, "utf8").trim();
    } catch (error) {
      throw new OpsError(`cannot read ${what} ${file}: ${(error as Error).message}`, "pass a readable file (see --help)");
    }
  };
  const url = flags.urlFile ? read(flags.urlFile, "--database-url-file") : typeof outputs.database_url === "string" ? outputs.database_url : undefined;
  const ca = flags.caFile ? read(flags.caFile, "--database-ca") : typeof outputs.database_ca_certificate === "string" ? outputs.database_ca_certificate : undefined;
  const drill = flags.drillUrlFile ? read(flags.drillUrlFile, "--drill-url-file") : typeof outputs.database_drill_url === "string" ? outputs.database_drill_url : undefined;
  const admin = flags.adminUrlFile ? read(flags.adminUrlFile, "--database-admin-url-file") : typeof outputs.database_admin_url === "string" ? outputs.database_admin_url : undefined;
  const stack = target.env.stackName;
  if (!url || !ca) {
    throw new OpsError(
      `no ${!url ? "database_url" : "database_ca_certificate"} for ${stack} in ${target.outputsFile}`,
      `set database: { engine: "postgres" } in the client file, npx cdktf deploy ${stack}, then write the outputs with the sensitive ones:\n` +
        `     npx cdktf output ${stack} --outputs-file ${target.outputsFile} --outputs-file-include-sensitive-outputs\n     (or pass --database-url-file FILE --database-ca FILE)`,
    );
  }
  checkDatabaseUrl(url, "database_url");
  if (drill) checkDatabaseUrl(drill, "database_drill_url");
  if (admin) checkDatabaseUrl(admin, "database_admin_url");
  if (!/-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----/.test(ca)) {
    throw new OpsError("the database CA is not a PEM certificate (-----BEGIN CERTIFICATE-----)", "use the stack output database_ca_certificate, or pass --database-ca with the cluster's CA file");
  }
  return { url: new Secret(url), caCertificate: ca, drillUrl: drill ? new Secret(drill) : undefined, adminUrl: admin ? new Secret(admin) : undefined };
}

/** A postgresql:// URL with user, password, host and database, TLS verified (the value never appears in a message). */
export function checkDatabaseUrl(url: string, what: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new OpsError(`${what} is not a URL`, "use the stack output as it is: postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full");
  }
  if (!/^postgres(ql)?:$/.test(parsed.protocol) || !parsed.username || !parsed.hostname || parsed.pathname.length < 2) {
    throw new OpsError(`${what} is not postgresql://USER:PASSWORD@HOST:PORT/DB`, "use the stack output as it is: postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full");
  }
  if (parsed.searchParams.get("sslmode") !== "verify-full") {
    throw new OpsError(`${what} does not say sslmode=verify-full (got ${parsed.searchParams.get("sslmode") ?? "none"})`, "the kit only talks to the database over TLS with the cluster's CA pinned: add ?sslmode=verify-full");
  }
}

export interface MigrateOptions {
  readonly target: Target;
  readonly runner: Runner;
  readonly db: TargetDatabase;
  readonly dryRun?: boolean;
  readonly healthSeconds?: number;
  readonly paths?: ServerPaths;
  /** Test hook: a step to run right before the comparison (the e2e injects a changed row there). */
  readonly beforeCompare?: Step;
}

export interface MigrateResult {
  readonly switched: boolean;
  readonly checks: readonly TableCheck[];
  readonly windowSeconds?: number;
  readonly stepSeconds: readonly { readonly title: string; readonly seconds: number }[];
}

/** Times each step's run, for the summary (and the figures the tests print). */
class Timer {
  readonly steps: { title: string; seconds: number }[] = [];
  wrap(title: string, run: () => Promise<void | "stop">): () => Promise<void | "stop"> {
    return async () => {
      const started = performance.now();
      try {
        return await run();
      } finally {
        const seconds = (performance.now() - started) / 1000;
        this.steps.push({ title, seconds });
        say(`    (${seconds.toFixed(1)} s)`);
      }
    };
  }
}

/** What both plans start from: the environment, its slots, the timer, the plan, the maintenance page as rendered. */
function begin(o: { readonly target: Target; readonly runner: Runner; readonly db: TargetDatabase; readonly dryRun?: boolean; readonly healthSeconds?: number; readonly paths?: ServerPaths }, what: string) {
  const { runner, target, db } = o;
  const env = target.env;
  const server = { volumeDevice: "", bucket: target.bucket, region: target.region, s3Credentials: { accessKeyId: "", secretAccessKey: "" }, appSecrets: {} };
  const maintenanceFile = serverFiles(env, server, target.overrides).find((f) => f.path === LAYOUT.maintenanceCaddyfile);
  if (!maintenanceFile) throw new Error("the maintenance Caddyfile is not declared in cloud-init/server-files.ts");
  const plan = new Plan(`plan for ${env.stackName} on ${runner.destination}: ${what}`, Boolean(o.dryRun));
  return { runner, target, db, env, paths: o.paths ?? SERVER, stack: env.stackName, ports: slotPorts(env.app.port), health: o.healthSeconds ?? 60, timer: new Timer(), plan, maintenanceFile };
}

const stamp = () => new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");

/** The move. */
export async function migrate(o: MigrateOptions): Promise<MigrateResult> {
  const { runner, db, env, paths, stack, ports, health, timer, plan, maintenanceFile } = begin(o, "move the database from SQLite to PostgreSQL");
  const state = await inspectStep(plan, runner, env.app.port, paths);
  const pre = await plan.read("check the server, the SQLite database and the target PostgreSQL (read-only)", async () => parsePreflight((await runner.run(m.preflight(db, paths))).stdout));
  const tools = Boolean(pre.pgloader && pre.psql);
  say(describePreflight(pre, tools));
  const refused = refusals(pre, stack);
  if (refused.length > 0) {
    for (const r of refused.slice(1)) say(`error: ${r.message}\nfix:   ${r.fix}`);
    throw refused[0];
  }
  const appTables = pre.tables;
  const keyed = appTables.flatMap((t) => {
    const key = integerKey(t) ?? t.columns.find((c) => c.pk === 1)?.name;
    return key ? [{ name: pgName(t.name), key: pgName(key) }] : [];
  });
  const unkeyed = appTables.filter((t) => !t.columns.some((c) => c.pk > 0)).map((t) => t.name);
  if (unkeyed.length) say(`note: ${unkeyed.join(", ")} ha${unkeyed.length > 1 ? "ve" : "s"} no primary key: compared in row order, and --rollback cannot list its changes row by row`);
  const fix = schemaFixSql(appTables);
  for (const note of fix.notes) say(`note: ${note}`);

  const syncSeconds = durationSeconds(env.backups.litestream.syncInterval) ?? 1;
  const snapshotPath = new Later("the snapshot");
  const loadCopy = new Later("pgloader's copy");
  let checks: TableCheck[] = [];
  let maintenanceOnAt: number | undefined;
  let maintenanceOffAt: number | undefined;
  let switched = false;
  const atSwitch: Record<string, { max: string; rows: number }> = {};
  const switchTime = { value: "" };

  const add = (title: string, run: () => Promise<void | "stop">, cleanup?: { title: string; run: () => Promise<void> }) => plan.add({ title, run: timer.wrap(title, run), cleanup });
  const remote = (s: () => Step, then?: (stdout: string) => void | Promise<void>) => add(s().title, async () => {
    const result = await runner.run(s());
    await then?.(result.stdout);
  });

  plan.add(lockStep(runner, "migrate to PostgreSQL", paths));
  if (!tools) {
    remote(() => m.installTools());
    remote(() => m.checkTarget(db, paths));
  }
  if (db.adminUrl) {
    const appUrl = new URL(db.url.reveal());
    const databases = [appUrl.pathname.slice(1), ...(db.drillUrl ? [new URL(db.drillUrl.reveal()).pathname.slice(1)] : [])].map(decodeURIComponent);
    remote(() => m.grantSchema(db, decodeURIComponent(appUrl.username), databases, paths));
  }
  plan.guard(
    "back on SQLite: database.env moved aside, Litestream on, the app on the SQLite file, maintenance off; the tables loaded so far moved aside in PostgreSQL (schema kit_failed_<stamp>); nothing moved",
    async (error) => {
      const what = error instanceof Error ? error.message : String(error);
      say(`\n✗ the move failed before the switch: ${what}\n  putting ${stack} back on SQLite …`);
      const back = await backToSqlite(runner, db, appTables, state.activePort, ports, health, `kit_failed_${stamp().toLowerCase()}`, paths);
      if (maintenanceOnAt !== undefined) maintenanceOffAt = back.maintenanceOffAt ?? maintenanceOffAt;
      return new OpsError(
        `the move to PostgreSQL failed before the switch: ${what}. ${back.ok ? `${stack} runs on SQLite as before; nothing moved (the SQLite file was never changed)` : `putting ${stack} back on SQLite did not finish: ${back.problems.join("; ")}`}`,
        back.ok
          ? `fix the cause above, then run the move again (npx zx scripts/migrate-to-postgres.ts ${stack} --dry-run first)`
          : `finish it by hand: ssh ${runner.destination} sudo mv ${LAYOUT.databaseEnvFile} ${LAYOUT.databaseEnvFile}.aside; sudo systemctl enable --now ${LAYOUT.units.litestream}; sudo systemctl restart app@${state.activePort}; sudo systemctl reload caddy`,
      );
    },
    () => {
      remote(() => m.maintenanceOn(maintenanceFile.content), (out) => void (maintenanceOnAt = Number(keyValues(out).get("maintenance_on"))));
      remote(() => m.stopApp(ports));
      remote(() => m.finishReplication(2 * syncSeconds + 1));
      remote(() => m.snapshot(paths), (out) => {
        const kv = keyValues(out);
        snapshotPath.set(kv.get("snapshot") ?? "");
        loadCopy.set(kv.get("load_copy") ?? "");
      });
      remote(() => m.load(db, loadCopy.text, paths));
      remote(() => m.pgSql(`finish the schema: NOT NULL, SQLite expression defaults, identities moved past max(id); ${SCHEMA_VERSION_TABLE} = ${pre.userVersion}`, db, `${fix.sql}\n${schemaVersionSql(pre.userVersion)}`, paths));
      if (o.beforeCompare) remote(() => o.beforeCompare!);
      add("compare every row: counts and sha256 of the canonical rows, both sides", async () => {
        const types = await runner.run(m.pgSql("read the loaded tables' column types", db, m.COLUMN_TYPES_SQL, paths));
        const kinds: Record<string, Record<string, PgKind>> = {};
        for (const line of types.stdout.split("\n")) {
          const [tag, table, column, type] = line.split("\t");
          if (tag === "kind" && table && column) (kinds[table] ??= {})[column] = pgKind(type ?? "");
        }
        const result = await runner.run(m.compare(db, loadCopy.text, appTables, kinds, paths));
        checks = parseChecks(result.stdout);
        say(`\n${formatChecks(checks)}\n`);
        const bad = checks.filter((c) => !checkPasses(c));
        if (bad.length > 0 || checks.length !== appTables.length) {
          throw new OpsError(`the loaded data differs from the snapshot in ${bad.map((c) => c.table).join(", ") || "the number of tables"}`, "see the table above");
        }
      });
      remote(() => m.pgSql("install change tracking (_kit_changes) and read each table's max id and rows at the switch", db, `${m.trackChangesSql(keyed)}\n${m.atSwitchSql(keyed)}`, paths), (out) => {
        switchTime.value = new Date().toISOString();
        for (const line of out.split("\n")) {
          const [tag, table, max, rows] = line.split("\t");
          if (tag === "at_switch" && table) atSwitch[table] = { max: max ?? "", rows: Number(rows) };
        }
      });
      remote(() => m.writeDatabaseEnv(db));
      remote(() => m.startApp(state.activePort, health, paths));
    },
  );
  // The switch happened: from here on a failure is not rolled back by itself (the app writes to PostgreSQL).
  remote(() => m.maintenanceOff(), (out) => {
    switched = true;
    maintenanceOffAt = Number(keyValues(out).get("maintenance_off"));
  });
  remote(() => backupsToPostgres());
  remote(() => m.watcherResume());
  remote(() => m.writeStateFile(LAYOUT.postgresSwitchMarker, `${JSON.stringify({ switchedAt: switchTime.value, stack, snapshot: snapshotPath.text, sqliteFile: LAYOUT.dbFile, tables: atSwitch, checks }, null, 2)}\n`, "0644"));
  remote(() => m.removeLoadCopy(loadCopy.text, paths));
  await plan.execute();

  const windowSeconds = maintenanceOnAt !== undefined && maintenanceOffAt !== undefined ? maintenanceOffAt - maintenanceOnAt : undefined;
  if (!o.dryRun && switched) {
    say(`\n✓ ${stack} runs on PostgreSQL since ${switchTime.value}.`);
    say(`  maintenance window: ${windowSeconds?.toFixed(1)} s (Caddy's 503 from maintenance on to off)`);
    for (const s of timer.steps) say(`    ${s.seconds.toFixed(1).padStart(6)} s  ${s.title}`);
    say(`  the SQLite file ${LAYOUT.dbFile} is left as it was at the switch; the snapshot is ${snapshotPath.text}`);
    say(`  Litestream and the SQLite fallback are stopped and disabled; kit-pg-dump.timer dumps daily into the bucket`);
    say(`  to go back (the writes since are listed and kept): npx zx scripts/migrate-to-postgres.ts ${stack} --rollback`);
  }
  return { switched, checks, windowSeconds, stepSeconds: timer.steps };
}

function describePreflight(p: Preflight, tools: boolean): string {
  const rows = p.tables.map((t) => `${t.name} ${p.rows[t.name] ?? "?"} rows`).join(", ");
  return [
    `  SQLite: ${formatBytes(p.dbBytes)} (with its WAL), quick_check ${p.quickCheck || "—"}, ${p.tables.length} app table${p.tables.length === 1 ? "" : "s"}: ${rows || "none"}`,
    `  volume: ${formatBytes(p.freeBytes)} free (the move needs ${formatBytes(neededBytes(p.dbBytes))})`,
    `  tools on the server: ${tools ? `${p.pgloader}; ${p.psql}` : "pgloader/psql missing: the move installs them with apt-get first (pgloader postgresql-client), then checks the target"}`,
    `  target: ${tools ? p.target.replace(/^kit-pg: /, "") : "checked after the install"}${p.pgTables.length ? `; tables already there: ${p.pgTables.join(", ")}` : "; no table in schema public"}`,
  ].join("\n");
}

/**
 * Back on SQLite (the guard's handler, and --rollback's core): the app stopped, database.env aside, the
 * PostgreSQL tables moved aside into `schema`, Litestream and the fallback on, the app on the SQLite file,
 * health-checked, maintenance off. Each part is tried even when an earlier one failed; returns what did not work.
 */
async function backToSqlite(runner: Runner, db: TargetDatabase, tables: readonly SqliteTable[], activePort: number, ports: readonly [number, number], health: number, schema: string, paths: ServerPaths): Promise<{ ok: boolean; problems: string[]; maintenanceOffAt?: number }> {
  const problems: string[] = [];
  let maintenanceOffAt: number | undefined;
  const attempt = async (s: Step, then?: (stdout: string) => void) => {
    say(`  ▸ ${s.title}`);
    try {
      const result = await runner.run(s);
      then?.(result.stdout);
    } catch (error) {
      problems.push(`${s.title}: ${(error as Error).message}`);
    }
  };
  await attempt(m.stopApp(ports));
  await attempt(m.databaseEnvAside("failed-move"));
  await attempt(m.pgSql(`move the loaded tables aside in PostgreSQL (schema ${schema})`, db, `${m.moveAsideSql(schema, [...tables.map((t) => pgName(t.name)), "_kit_changes", SCHEMA_VERSION_TABLE])}`, paths));
  await attempt(backupsToSqlite());
  await attempt(m.startApp(activePort, health, paths));
  await attempt(m.maintenanceOff(), (out) => void (maintenanceOffAt = Number(keyValues(out).get("maintenance_off"))));
  await attempt(m.watcherResume());
  return { ok: problems.length === 0 || problems.every((p) => p.startsWith("move the loaded tables aside")), problems, maintenanceOffAt };
}

/** One write on PostgreSQL since the switch, net per row. */
export interface Change {
  readonly table: string;
  readonly kind: "added" | "changed" | "deleted" | "added-then-deleted";
  readonly pk: string;
  readonly at: string;
  readonly row: unknown;
}

export function parseChanges(stdout: string): Change[] {
  return stdout.split("\n").flatMap((line) => {
    const [tag, table, kind, pk, at, ...json] = line.split("\t");
    if (tag !== "change" || !table) return [];
    return [{ table, kind: kind as Change["kind"], pk: pk ?? "", at: at ?? "", row: JSON.parse(json.join("\t") || "null") }];
  });
}

/** Per table: how many rows were added, changed, deleted (and added then deleted again). */
export function summarizeChanges(changes: readonly Change[]): Record<string, Record<Change["kind"], number>> {
  const out: Record<string, Record<Change["kind"], number>> = {};
  for (const c of changes) {
    const t = (out[c.table] ??= { added: 0, changed: 0, deleted: 0, "added-then-deleted": 0 });
    t[c.kind]++;
  }
  return out;
}

export interface RollbackOptions {
  readonly target: Target;
  readonly runner: Runner;
  readonly db: TargetDatabase;
  readonly dryRun?: boolean;
  readonly healthSeconds?: number;
  /** Where the report of PostgreSQL's writes goes on this machine. */
  readonly reportFile: string;
  readonly paths?: ServerPaths;
}

export interface RollbackResult {
  readonly rolledBack: boolean;
  readonly changes: readonly Change[];
  readonly windowSeconds?: number;
}

/** --rollback: back to the SQLite file as it was at the switch, listing (and keeping) what PostgreSQL got since. */
export async function rollback(o: RollbackOptions): Promise<RollbackResult> {
  const { runner, db, env, paths, stack, ports, health, timer, plan, maintenanceFile } = begin(o, "back from PostgreSQL to SQLite");
  const state = await inspectStep(plan, runner, env.app.port, paths);
  const marker = await plan.read(`read ${LAYOUT.postgresSwitchMarker}`, async () => {
    const kv = keyValues((await runner.run(m.readMarker())).stdout);
    const text = kv.get("marker");
    return { databaseEnv: kv.get("database_env") === "yes", marker: text ? (JSON.parse(Buffer.from(text, "base64").toString("utf8")) as { switchedAt: string; tables: Record<string, { max: string; rows: number }>; snapshot: string }) : undefined };
  });
  if (!marker.marker) {
    throw new OpsError(`${stack} has not been moved to PostgreSQL by this kit (no ${LAYOUT.postgresSwitchMarker})`, marker.databaseEnv ? `${LAYOUT.databaseEnvFile} exists without the marker: check the server by hand` : "nothing to roll back");
  }
  say(`  switched to PostgreSQL at ${marker.marker.switchedAt}; tables then: ${Object.entries(marker.marker.tables).map(([t, v]) => `${t} ${v.rows} rows (max id ${v.max || "—"})`).join(", ")}`);
  const tables = Object.keys(marker.marker.tables);
  let changes: Change[] = [];
  let maintenanceOnAt: number | undefined;
  let maintenanceOffAt: number | undefined;
  let done = false;
  const aside = `kit_rolled_back_${stamp().toLowerCase()}`;
  const add = (title: string, run: () => Promise<void | "stop">) => plan.add({ title, run: timer.wrap(title, run) });
  const remote = (s: () => Step, then?: (stdout: string) => void) => add(s().title, async () => {
    const result = await runner.run(s());
    then?.(result.stdout);
  });

  plan.add(lockStep(runner, "roll back to SQLite", paths));
  remote(() => m.maintenanceOn(maintenanceFile.content), (out) => void (maintenanceOnAt = Number(keyValues(out).get("maintenance_on"))));
  remote(() => m.stopApp(ports));
  remote(() => m.pgSql("list the writes on PostgreSQL since the switch (_kit_changes)", db, m.CHANGES_SQL, paths), (out) => {
    changes = parseChanges(out);
    writeFileSync(o.reportFile, changes.map((c) => JSON.stringify(c)).join("\n") + (changes.length ? "\n" : ""));
    const summary = summarizeChanges(changes);
    say(`\n  writes on PostgreSQL since ${marker.marker!.switchedAt} (kept in ${o.reportFile}, and on the server in ${LAYOUT.stateDir}):`);
    for (const t of tables) {
      const s = summary[t] ?? { added: 0, changed: 0, deleted: 0, "added-then-deleted": 0 };
      say(`    ${t}: ${s.added} added, ${s.changed} changed, ${s.deleted} deleted${s["added-then-deleted"] ? `, ${s["added-then-deleted"]} added and deleted again` : ""}`);
    }
    say("");
  });
  add(`keep the report on the server too (${LAYOUT.stateDir}/postgres-writes-<stamp>.jsonl)`, async () => {
    await runner.run(m.writeStateFile(`${LAYOUT.stateDir}/postgres-writes-${stamp()}.jsonl`, readFileSync(o.reportFile, "utf8"), "0600"));
  });
  remote(() => m.databaseEnvAside("rolled-back"));
  remote(() => m.pgSql(`move the app's tables aside in PostgreSQL (schema ${aside}), so a new move starts empty`, db, m.moveAsideSql(aside, [...tables, "_kit_changes", SCHEMA_VERSION_TABLE]), paths));
  remote(() => backupsToSqlite());
  remote(() => m.startApp(state.activePort, health, paths));
  remote(() => m.maintenanceOff(), (out) => {
    done = true;
    maintenanceOffAt = Number(keyValues(out).get("maintenance_off"));
  });
  remote(() => m.markerAside());
  remote(() => m.watcherResume());
  await plan.execute();
  const windowSeconds = maintenanceOnAt !== undefined && maintenanceOffAt !== undefined ? maintenanceOffAt - maintenanceOnAt : undefined;
  if (!o.dryRun && done) {
    say(`\n✓ ${stack} runs on SQLite again (${LAYOUT.dbFile}, as it was at ${marker.marker.switchedAt}).`);
    say(`  maintenance window: ${windowSeconds?.toFixed(1)} s`);
    for (const s of timer.steps) say(`    ${s.seconds.toFixed(1).padStart(6)} s  ${s.title}`);
    say(`  ${changes.length} row${changes.length === 1 ? "" : "s"} written on PostgreSQL since the switch are NOT in SQLite: they are listed in ${o.reportFile} (JSON lines: table, kind, pk, at, row)`);
    say(`  PostgreSQL's tables are kept in schema ${aside}; database.env in ${LAYOUT.databaseEnvFile}.rolled-back-<stamp>`);
    say(`  to move again: npx zx scripts/migrate-to-postgres.ts ${stack} --dry-run, then without --dry-run`);
  }
  return { rolledBack: done, changes, windowSeconds };
}
