/**
 * scripts/migrate-to-postgres.ts without a server: the preflight's refusals, the database URL checks, what
 * the steps show and hide, the rollback's list of writes, and the flags refused before anything connects
 * (the canonical text: migrate-canon.test.ts).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../../app/repo.ts";
import type { SqliteTable } from "../../scripts/lib/migrate-canon.ts";
import { checkDatabaseUrl, neededBytes, parseChanges, parsePreflight, refusals, summarizeChanges } from "../../scripts/lib/migrate-run.ts";
import * as m from "../../scripts/lib/migrate-steps.ts";
import { Secret } from "../../scripts/lib/secret.ts";

const TABLE: SqliteTable = {
  name: "t",
  columns: [
    { name: "id", type: "INTEGER", notNull: false, defaultValue: "", pk: 1 },
    { name: "v", type: "", notNull: true, defaultValue: "", pk: 0 },
  ],
};

const PRE = `database_env=no
marker=no
db_exists=yes
db_bytes=104857600
free_bytes=10737418240
quick_check=ok
litestream=active
pgloader=pgloader version "3.6.7~devel"
psql=psql (PostgreSQL) 15.18
table\trows\t5
column\trows\tid\tINTEGER\t0\t\t1
target=kit-pg: PostgreSQL 15 (150018) at 10.0.0.5:25060/app; psql 15.18
`;

describe("preflight refusals (before anything changes), each with its fix", () => {
  test("a good server and an empty target: none", () => {
    const p = parsePreflight(PRE);
    expect(p).toMatchObject({ dbBytes: 104857600, quickCheck: "ok", rows: { rows: 5 }, pgTables: [] });
    expect(refusals(p, "acme-prod")).toEqual([]);
  });
  test.each([
    [PRE.replace("database_env=no", "database_env=yes"), /acme-prod already runs on PostgreSQL/, /--rollback/],
    [PRE.replace("quick_check=ok", "quick_check=*** in database main ***"), /fails PRAGMA quick_check/, /restore a good copy first/],
    [PRE.replace("free_bytes=10737418240", "free_bytes=104857600"), /the volume has 100\.0 MiB free; the snapshot and pgloader's copy need 264\.0 MiB/, /grow the volume first/],
    [PRE.replace(/target=.*/, "target=kit-pg: PostgreSQL at 10.0.0.5:25060 not reachable: timeout expired"), /not usable from the server: PostgreSQL at 10\.0\.0\.5:25060 not reachable/, /database firewall/],
    [PRE.replace(/target=.*/, "target=kit-pg: psql 15 cannot work with this PostgreSQL 17 server: install postgresql-client-17"), /psql 15 cannot work with this PostgreSQL 17/, /database URL/],
    [`${PRE}pg_table=rows\npg_table=other\n`, /already holds the app's table rows: the move loads into an empty database only/, /ALTER TABLE … SET SCHEMA/],
  ])("%#", (stdout, message, fix) => {
    const [first] = refusals(parsePreflight(stdout), "acme-prod");
    expect(first.message).toMatch(message);
    expect(first.fix).toMatch(fix);
  });
  test("tools missing are no refusal: the move installs them (apt-get) and checks the target then", () => {
    expect(refusals(parsePreflight(PRE.replace(/^pgloader=.*$/m, "pgloader=").replace(/^target=.*$/m, "")), "acme-prod")).toEqual([]);
    expect(neededBytes(100 * 1024 ** 2)).toBe(264 * 1024 ** 2);
  });
});

test("database URLs: postgresql:// with user, host and database, TLS verify-full; the value never in the message", () => {
  expect(() => checkDatabaseUrl("postgresql://app:pw@10.0.0.5:25060/app?sslmode=verify-full", "database_url")).not.toThrow();
  for (const [url, message] of [
    ["postgresql://app:s3cret@10.0.0.5:25060/app?sslmode=require", /does not say sslmode=verify-full \(got require\)/],
    ["postgresql://app:s3cret@10.0.0.5:25060/app", /got none/],
    ["mysql://app:s3cret@h/app?sslmode=verify-full", /is not postgresql:\/\/USER:PASSWORD@HOST:PORT\/DB/],
    ["s3cret", /is not a URL/],
  ] as const) {
    expect(() => checkDatabaseUrl(url, "database_url")).toThrow(message);
    try {
      checkDatabaseUrl(url, "database_url");
    } catch (error) {
      expect((error as Error).message).not.toContain("s3cret");
    }
  }
});

test("the steps never show the URL (a Secret), and pgloader gets no password on its command line", () => {
  const db = { url: new Secret("postgresql://app:s3cret@10.0.0.5:25060/app?sslmode=verify-full"), caCertificate: "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----" };
  for (const s of [m.preflight(db), m.load(db, "/mnt/data/scratch/x/load.sqlite3"), m.compare(db, "/c", [TABLE], { t: { id: "integer", v: "text" } }), m.writeDatabaseEnv({ ...db, drillUrl: new Secret("postgresql://app:s3cret@h/app_drill?sslmode=verify-full") })]) {
    expect(s.script.display).not.toContain("s3cret");
  }
  const load = m.load(db, "/mnt/data/scratch/x/load.sqlite3").script.text;
  expect(load).toMatch(/pgloader --on-error-stop \/usr\/local\/lib\/kit\/migrate-to-postgres\.load <\/dev\/null/);
  expect(load).toContain(`KIT_PGLOADER_TARGET="postgresql://$PGHOST:$PGPORT/$PGDATABASE?sslmode=require"`);
  // What deploy.ts writes too (envFileLines): the URL quoted for systemd and bash.
  expect(m.writeDatabaseEnv(db).script.text).toContain(`chmod 0600 "$tmp"\nprintf '%s' 'DATABASE_URL='\\''postgresql://app:s3cret@10.0.0.5:25060/app?sslmode=verify-full'\\''\nPGSSLROOTCERT=/etc/kit/postgres-ca.crt\n'`);
});

test("the rollback's list: net per row from _kit_changes, summed per table", () => {
  const changes = parseChanges('change\trows\tadded\t7\t2026-12-04T03:00:00.000Z\t{"id": 7, "value": "a\\tb"}\nchange\trows\tdeleted\t2\t2026-12-04T03:00:01.000Z\t{"id": 2}\nchange\todd\tchanged\t1\t2026-12-04T03:00:02.000Z\t{"k": 1}\n');
  expect(changes[0]).toEqual({ table: "rows", kind: "added", pk: "7", at: "2026-12-04T03:00:00.000Z", row: { id: 7, value: "a\tb" } });
  expect(summarizeChanges(changes)).toEqual({ rows: { added: 1, changed: 0, deleted: 1, "added-then-deleted": 0 }, odd: { added: 0, changed: 1, deleted: 0, "added-then-deleted": 0 } });
});

describe("flags, refused before anything connects", () => {
  const run = (args: string[]) =>
    new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [join(REPO_ROOT, "scripts", "migrate-to-postgres.ts"), ...args], { cwd: REPO_ROOT }, (error, _stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stderr })),
    );
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "migrate-flags-"));
    writeFileSync(join(dir, "url"), "postgresql://app:pw@10.0.0.5:25060/app?sslmode=require\n");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test.each([
    [["example-prod", "--report", "x.jsonl"], "error: --report is used only with --rollback; here it would be ignored\nfix:   drop --report, or add --rollback"],
    [["example-prod", "--health-seconds", "0"], 'error: --health-seconds "0" is not a whole number from 1 to 3600'],
    [["example-prod", "--rollback", "--dry-run", "--report", "x"], "error: --report and --dry-run together: a dry run writes no report"],
    [["example-prod", "--database-ca", ""], "error: --database-ca needs a file"],
    [["example-prod", "example-staging"], "error: one stack at a time (got example-prod, example-staging)"],
    [["example-prod", "--host", "192.0.2.1"], 'error: example-prod is on engine "sqlite" in its client file\nfix:   set database: { engine: "postgres" } for prod in the client file'],
  ])("%j", async (args, message) => {
    const result = await run(args as string[]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(message);
    expect(result.stderr).not.toMatch(/\n +at /);
  });
});
