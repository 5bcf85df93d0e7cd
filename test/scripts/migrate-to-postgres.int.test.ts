/**
 * The data path of scripts/migrate-to-postgres.ts on the host, with the real tools: the server steps
 * (scripts/lib/migrate-steps.ts) run by the local bash against an SQLite file shaped like the fixture app's and
 * the lab's stand-in for the managed cluster (lab/harness/postgres.ts: TLS verify-full, scram, admitted
 * addresses only). Preflight → snapshot → pgloader 3.6 (Debian) → schema finish → every row compared → change
 * tracking → the rollback's list of writes; a changed row is caught; a non-empty target is refused. The
 * canonical text (migrate-canon.ts) is compared value by value between sqlite3 and psql.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { renderTemplate } from "../../cloud-init/template.ts";
import { LocalRunner } from "../../lab/local/local-runner.ts";
import { run } from "../../lab/harness/process.ts";
import { POSTGRES_BIN_DIR, startPostgres, type LabPostgres } from "../../lab/harness/postgres.ts";
import { SCRATCH_ROOT, Teardown } from "../../lab/harness/teardown.ts";
import { checkPasses, integerKey, parseChecks, pgKind, type PgKind, pgRowsQuery, schemaFixSql, type SqliteTable, sqliteRowsQuery } from "../../scripts/lib/migrate-canon.ts";
import { parseChanges, parsePreflight, refusals, summarizeChanges } from "../../scripts/lib/migrate-run.ts";
import * as m from "../../scripts/lib/migrate-steps.ts";
import type { TargetDatabase } from "../../scripts/lib/migrate-steps.ts";
import { Secret } from "../../scripts/lib/secret.ts";
import type { ServerPaths } from "../../scripts/lib/server-steps.ts";
import { keyValues } from "../../scripts/lib/state.ts";

jest.setTimeout(60_000);

let teardown: Teardown;
let pg: LabPostgres;
let dir: string;
let paths: ServerPaths;
let db: TargetDatabase;
const runner = new LocalRunner({ ...process.env, PATH: `${POSTGRES_BIN_DIR}:${process.env.PATH}` });
const ROWS = 20_000;

const sqlite = async (file: string, sql: string) => (await run(["sqlite3", file], { input: sql })).stdout;
const appPsql = async (sql: string) =>
  (await run([join(POSTGRES_BIN_DIR, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", pg.url(), "-f", "-"], { input: sql, env: { ...process.env, PGSSLROOTCERT: pg.caFile } })).stdout;

beforeAll(async () => {
  teardown = await Teardown.begin();
  pg = await startPostgres(teardown, { host: "127.0.0.1", allow: ["127.0.0.1"] });
  mkdirSync(SCRATCH_ROOT, { recursive: true });
  dir = mkdtempSync(join(SCRATCH_ROOT, "migrate-int-"));
  teardown.track({ kind: "tree", path: dir });
  for (const d of ["lib", "db", "aside", "scratch"]) mkdirSync(join(dir, d));
  // The server files the steps use, rendered as a server gets them.
  writeFileSync(join(dir, "lib", "pg-lib.sh"), renderTemplate("scripts/pg-lib.sh", { databaseEnvFile: LAYOUT.databaseEnvFile }), { mode: 0o755 });
  writeFileSync(join(dir, "lib", "migrate-to-postgres.load"), renderTemplate("config/pgloader.load", { pgloaderLoadFile: LAYOUT.pgloaderLoadFile }));
  writeFileSync(
    join(dir, "kit.env"),
    [`DB_FILE=${dir}/db/app.sqlite3`, `ASIDE_DIR=${dir}/aside`, `SCRATCH_DIR=${dir}/scratch`, `VOLUME_MOUNT=${dir}`, "APP_USER=root", ""].join("\n"),
  );
  paths = { kitEnvFile: join(dir, "kit.env"), libDir: join(dir, "lib"), caddyfile: join(dir, "Caddyfile"), deployLock: join(dir, "lock") };
  db = { url: new Secret(pg.url()), caCertificate: pg.caCertificate };
  // The fixture app's table (same DDL), a table of awkward values, and the kit's own tables that must not move.
  await sqlite(
    join(dir, "db", "app.sqlite3"),
    `PRAGMA journal_mode = WAL;
CREATE TABLE rows (id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS})
INSERT INTO rows (value) SELECT 'row ' || i || CASE i % 3 WHEN 0 THEN ' ✓ é 漢字' WHEN 1 THEN char(10) || 'line two' || char(9) || 'tab \\ back' ELSE '' END FROM n;
CREATE TABLE odd (k INTEGER PRIMARY KEY, n INTEGER, r REAL, t TEXT, b BLOB);
INSERT INTO odd VALUES (1, NULL, NULL, NULL, NULL), (2, -42, 0.1, 'it''s', x'00ff10'), (3, 9007199254740993, 1e100, '', x''),
  (4, 0, 1.0 / 3, 'cr' || char(13) || 'lf' || char(10), NULL), (5, 7, 1.5e-7, '\\N', NULL), (6, 8, -2.5, 'Ω', NULL), (7, 9, 123456789.123, 'x', NULL);
CREATE TABLE _kit_drill (id INTEGER PRIMARY KEY, at TEXT);
INSERT INTO _kit_drill (at) VALUES ('2026-12-04');
CREATE TABLE _kit_watch (id INTEGER PRIMARY KEY, at TEXT);`,
  );
});
afterAll(async () => {
  await teardown?.run();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("canonical text: the same values give the same line in sqlite3 and psql (integers, text with unicode/newlines/tabs/backslashes, NULL, reals, blobs)", async () => {
  const table: SqliteTable = {
    name: "canon",
    columns: [
      { name: "k", type: "INTEGER", notNull: false, defaultValue: "", pk: 1 },
      { name: "n", type: "INTEGER", notNull: false, defaultValue: "", pk: 0 },
      { name: "r", type: "REAL", notNull: false, defaultValue: "", pk: 0 },
      { name: "t", type: "TEXT", notNull: false, defaultValue: "", pk: 0 },
      { name: "b", type: "BLOB", notNull: false, defaultValue: "", pk: 0 },
    ],
  };
  const values = [
    [1, "NULL", "NULL", "NULL", "NULL"],
    [2, "-9223372036854775808", "0.1", "'a' || char(10) || 'b'", "x'00ff'"],
    [3, "9223372036854775807", "1e100", "'tab' || char(9) || 'back\\slash'", "x''"],
    [4, "0", "1.0/3", "'✓ é 漢字 🙂'", "NULL"],
    [5, "1", "1.5e-7", "'\\N'", "NULL"],
    [6, "2", "-0.0", "''", "NULL"],
    [7, "3", "123456789012345678", "'cr' || char(13)", "NULL"],
    [8, "4", "9e999", "'inf'", "NULL"],
  ];
  const file = join(dir, "canon.sqlite3");
  await sqlite(file, `CREATE TABLE canon (k INTEGER PRIMARY KEY, n INTEGER, r REAL, t TEXT, b BLOB); INSERT INTO canon VALUES ${values.map((v) => `(${v.join(", ")})`).join(", ")};`);
  const pgValues = values.map((v) => `(${v.map((x) => String(x).replace(/char\((\d+)\)/g, "chr($1)").replace(/^x'([0-9a-f]*)'$/, "'\\x$1'::bytea").replace(/^'(.*)'$/, (s) => s).replace(/^9e999$/, "'Infinity'::float8")).join(", ")})`);
  await appPsql(`CREATE TABLE canon (k bigint PRIMARY KEY, n bigint, r double precision, t text, b bytea); INSERT INTO canon VALUES ${pgValues.join(", ")};`);
  const kinds: Record<string, PgKind> = { k: "integer", n: "integer", r: "real", t: "text", b: "bytea" };
  const fromSqlite = await sqlite(file, sqliteRowsQuery(table));
  const fromPg = await appPsql(`SET extra_float_digits = 0; ${pgRowsQuery(table, kinds)}`);
  console.log(`canonical lines (sqlite3 = psql):\n${fromSqlite}`);
  expect(fromPg).toBe(fromSqlite);
  expect(fromSqlite.split("\n")[1]).toBe("2\t-9223372036854775808\t0.1\ta\\nb\t00ff");
  expect(fromSqlite.split("\n")[0]).toBe("1\t\\N\t\\N\t\\N\t\\N");
  // A changed value changes the text.
  await appPsql("UPDATE canon SET t = 'a' || chr(10) || 'B' WHERE k = 2; DROP TABLE canon;");
});

test("preflight → snapshot → pgloader → schema → every row compared → tracking → the rollback's list of writes", async () => {
  const times: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T>) => {
    const t0 = performance.now();
    const r = await f();
    times[name] = (performance.now() - t0) / 1000;
    return r;
  };
  const pre = parsePreflight((await timed("preflight", () => runner.run(m.preflight(db, paths)))).stdout);
  expect(pre.quickCheck).toBe("ok");
  expect(pre.tables.map((t) => t.name)).toEqual(["odd", "rows"]);
  expect(pre.rows).toEqual({ odd: 7, rows: ROWS });
  expect(pre.target).toMatch(/^kit-pg: PostgreSQL 15 \(\d+\) at 127\.0\.0\.1:\d+\/app; psql 15\./);
  expect(refusals(pre, "example-prod")).toEqual([]);

  const snap = keyValues((await timed("snapshot", () => runner.run(m.snapshot(paths)))).stdout);
  const loadCopy = snap.get("load_copy")!;
  expect(await sqlite(loadCopy, "SELECT group_concat(name) FROM sqlite_schema WHERE type = 'table' ORDER BY name;")).toBe("rows,odd\n");
  await timed("pgloader", () => runner.run(m.load(db, loadCopy, paths)));
  const fix = schemaFixSql(pre.tables);
  expect(fix.notes).toEqual([expect.stringContaining("rows.created_at: its SQLite default (strftime(")]);
  await timed("schema", () => runner.run(m.pgSql("schema", db, fix.sql, paths)));
  const kinds: Record<string, Record<string, PgKind>> = {};
  for (const line of (await runner.run(m.pgSql("types", db, m.COLUMN_TYPES_SQL, paths))).stdout.split("\n")) {
    const [tag, table, column, type] = line.split("\t");
    if (tag === "kind") (kinds[table] ??= {})[column] = pgKind(type);
  }
  expect(kinds.rows).toEqual({ id: "integer", value: "text", created_at: "text" });
  expect(kinds.odd.r).toBe("real");
  const checks = parseChecks((await timed("compare", () => runner.run(m.compare(db, loadCopy, pre.tables, kinds, paths)))).stdout);
  console.log(checks);
  expect(checks.map((c) => [c.table, c.sqliteRows, c.pgRows, checkPasses(c)])).toEqual([["odd", 7, 7, true], ["rows", ROWS, ROWS, true]]);
  expect(await appPsql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE '\\_kit%'")).toBe("0\n");
  // The table as the design has it: identity past max(id), NOT NULL and UNIQUE kept, no broken default.
  expect(await appPsql("SELECT column_name, is_nullable, is_identity, coalesce(column_default, '') FROM information_schema.columns WHERE table_name = 'rows' ORDER BY ordinal_position")).toBe("id|NO|YES|\nvalue|NO|NO|\ncreated_at|NO|NO|\n");
  await expect(appPsql("INSERT INTO rows (value, created_at) VALUES ('row 2', 'x')")).rejects.toThrow(/duplicate key/);

  // A changed row after the load is caught by the comparison (what a pgloader conversion slip would look like).
  await appPsql("UPDATE odd SET t = 'its' WHERE k = 2");
  const caught = parseChecks((await runner.run(m.compare(db, loadCopy, pre.tables, kinds, paths))).stdout);
  expect(caught.filter((c) => !checkPasses(c)).map((c) => [c.table, c.sqliteRows, c.pgRows])).toEqual([["odd", 7, 7]]);
  await appPsql("UPDATE odd SET t = 'it''s' WHERE k = 2");

  // Tracking from the switch: what the rollback lists.
  const keyed = pre.tables.map((t) => ({ name: t.name, key: integerKey(t)! }));
  const at = (await runner.run(m.pgSql("track", db, `${m.trackChangesSql(keyed)}\n${m.atSwitchSql(keyed)}`, paths))).stdout;
  expect(at).toContain(`at_switch\trows\t${ROWS}\t${ROWS}`);
  const added = await appPsql("INSERT INTO rows (value, created_at) VALUES ('after 1', 'now'), ('after 2', 'now') RETURNING id");
  // Past max(id): the refused duplicate above took ROWS + 1 (a sequence is not rolled back).
  expect(added).toBe(`${ROWS + 2}\n${ROWS + 3}\n`);
  await appPsql(`UPDATE rows SET value = 'changed' WHERE id = 5; DELETE FROM rows WHERE id = 6; DELETE FROM rows WHERE id = ${ROWS + 3}; UPDATE odd SET n = 1 WHERE k = 1;`);
  const changes = parseChanges((await runner.run(m.pgSql("changes", db, m.CHANGES_SQL, paths))).stdout);
  expect(changes.map((c) => [c.table, c.kind, c.pk])).toEqual([
    ["odd", "changed", "1"],
    ["rows", "added", String(ROWS + 2)],
    ["rows", "added-then-deleted", String(ROWS + 3)],
    ["rows", "changed", "5"],
    ["rows", "deleted", "6"],
  ]);
  expect(changes[1].row).toEqual({ id: ROWS + 2, value: "after 1", created_at: "now" });
  expect(summarizeChanges(changes).rows).toEqual({ added: 1, changed: 1, deleted: 1, "added-then-deleted": 1 });

  // A second move into the same database is refused, naming the tables; moved aside, the target is empty again.
  const again = parsePreflight((await runner.run(m.preflight(db, paths))).stdout);
  expect(refusals(again, "example-prod").map((e) => e.message)).toEqual(["the target database already holds the app's tables odd, rows: the move loads into an empty database only"]);
  await runner.run(m.pgSql("aside", db, m.moveAsideSql("kit_rolled_back_test", ["odd", "rows", "_kit_changes"]), paths));
  expect(refusals(parsePreflight((await runner.run(m.preflight(db, paths))).stdout), "example-prod")).toEqual([]);
  expect(await appPsql("SELECT count(*) FROM kit_rolled_back_test.rows")).toBe(`${ROWS}\n`);
  console.log(`${ROWS} + 7 rows, SQLite ${(Number(pre.dbBytes) / 1024 ** 2).toFixed(1)} MiB: ${Object.entries(times).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(", ")}`);
});
