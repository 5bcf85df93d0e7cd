/**
 * Backups on PostgreSQL (issue 16): the server scripts exactly as they land (pg-dump-backup.sh, restore-drill.sh
 * → pg-restore-drill.sh, watch.sh), run with bash against the lab's stand-in for the managed cluster
 * (lab/harness/postgres.ts: PostgreSQL 15, TLS verify-full, scram) and the lab S3 (strict, HTTPS, the
 * environment's least-privilege key). The environment the units give them (kit-pg-dump.service and
 * restore-drill.service read database.env) is the test's: DATABASE_URL, DRILL_DATABASE_URL, PGSSLROOTCERT.
 */
import { createHash } from "node:crypto";
import { readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { startPostgres, type LabPostgres } from "../lab/harness/postgres.ts";
import { Teardown } from "../lab/harness/teardown.ts";
import { labAccess, localEnvironments, type Ran } from "../lab/local/local-kit.ts";
import { startWatchKit, type WatchKit } from "../lab/local/watch-kit.ts";
import { startKitLabS3Process, type LabS3Process } from "../lab/s3/process.ts";
import { PG_DUMP_MAX_AGE_SECONDS } from "../cloud-init/server-files.ts";
import type { WatchVerdict } from "../cloud-init/watch-verdict.ts";
import { type DrillReport, summarize } from "../scripts/lib/drill-run.ts";

const [env] = localEnvironments(["pgdump"]);
/** Rows of about 360 bytes of random text (hex: it compresses about 2:1, as real text does): ~75 MiB with its indexes. */
const ROWS = 100_000;

let teardown: Teardown;
let pg: LabPostgres;
let lab: LabS3Process;
let w: WatchKit;
let server: Server;
let databaseEnv = "";

interface Manifest {
  readonly at: string;
  readonly key: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly tables: readonly { name: string; rows: number }[];
}

/** Runs a rendered server script as its unit does: s3.env's key pair plus database.env's variables. */
function script(name: string, extra: NodeJS.ProcessEnv = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(join(w.kit.path("libDir"), name), [], {
      env: { ...w.env, DATABASE_URL: pg.url(), DRILL_DATABASE_URL: pg.drillUrl, PGSSLROOTCERT: pg.caFile, ...extra },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

/** An object of the bucket, read with the environment's key (curl's SigV4, as the server scripts do). */
async function object(key: string): Promise<Buffer> {
  const out = join(w.aux, "object");
  const r = await w.kit.bash(
    `printf 'user = "%s:%s"\\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" | curl -K - -fsS --aws-sigv4 "aws:amz:${w.kit.path("region")}:s3" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -o "$1" "${w.kit.access.endpoint}/${w.kit.path("bucket")}/$2"`,
    [out, key],
  );
  if (r.status !== 0) throw new Error(`GET ${key}: ${r.stderr}`);
  return readFileSync(out);
}

/** Uploads `content` as `key` with the kit's own s3-put.sh (the same key pair). */
async function put(key: string, content: Buffer | string): Promise<void> {
  const file = join(w.aux, "upload");
  writeFileSync(file, content);
  const r = await w.kit.script("s3-put.sh", [file, key]);
  if (r.status !== 0) throw new Error(`s3-put ${key}: ${r.stderr}`);
}

const drillReport = () => JSON.parse(readFileSync(join(w.kit.path("drillDir"), "latest.json"), "utf8")) as DrillReport & { engine: string; dump: { key: string; sha256: string; bytes: number } };

async function watch(): Promise<WatchVerdict> {
  const r = await script("watch.sh");
  expect(r.stderr).toBe("");
  return JSON.parse(readFileSync(join(w.aux, "watch/verdict.json"), "utf8")) as WatchVerdict;
}

let first: Manifest;
/** Rows of `rows` in the dump's snapshot, and in the app's database after the writes during the dump. */
let dumped = 0;
let live = 0;

beforeAll(async () => {
  teardown = await Teardown.begin();
  pg = await startPostgres(teardown, { host: "127.0.0.1", allow: ["127.0.0.1"] });
  lab = await startKitLabS3Process([env]);
  server = createServer((_req, res) => res.end("ok"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  w = startWatchKit(labAccess(lab, env), env, { httpPort: port });
  // kit.env names the database.env whose presence switches to PostgreSQL: one in this kit's etc/.
  databaseEnv = join(w.kit.root, "etc", "database.env");
  writeFileSync(w.kit.kitEnvFile, readFileSync(w.kit.kitEnvFile, "utf8").replace(/^DATABASE_ENV_FILE=.*$/m, `DATABASE_ENV_FILE=${databaseEnv}`));
  writeFileSync(databaseEnv, "# the test passes these in the environment, as systemd does from this file\n", { mode: 0o600 });
  w.unit("kit-pg-dump.service", { ActiveState: "inactive", Result: "success" });
  w.unit("kit-pg-dump.timer", { ActiveState: "active", LastTriggerUSec: "" });
  w.unit("litestream.service", { ActiveState: "inactive" });

  // The app's tables as the migration leaves them (pgloader's rows table, the schema version), owned by the app user.
  const t0 = Date.now();
  await pg.psql(
    `SET ROLE app;
     CREATE TABLE rows (id bigint PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, value text NOT NULL UNIQUE, created_at text NOT NULL);
     CREATE TABLE kit_schema_version (version int);
     INSERT INTO kit_schema_version VALUES (1);
     INSERT INTO rows (value, created_at) SELECT i || '-' || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), now()::text FROM generate_series(1, ${ROWS}) i;
     CREATE SCHEMA billing;
     CREATE TABLE billing."Invoices" (id int PRIMARY KEY);
     INSERT INTO billing."Invoices" SELECT generate_series(1, 7);`,
    { database: "app" },
  );
  const size = await pg.psql("SELECT pg_database_size('app')");
  console.log(`seeded ${ROWS} rows, database ${(Number(size) / 2 ** 20).toFixed(1)} MiB in ${Date.now() - t0} ms`);
}, 120_000);

afterAll(async () => {
  await w?.cleanup();
  await lab?.stop();
  await new Promise((resolve) => server?.close(resolve));
  await teardown?.run();
});

describe("pg-dump-backup.sh", () => {
  test("dumps the app database under writes (pg_dump -Fc, one snapshot with its row counts) into <env>/pg-dump/<stamp>.dump with its manifest; the sha256 is the object's", async () => {
    // The app keeps writing while the dump runs: the counts must be the dump's, not those of a moment later.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await pg.psql(`SET ROLE app; INSERT INTO rows (value, created_at) VALUES ('during the dump ${written}', now()::text)`, { database: "app" });
        written++;
      }
    })();
    const t0 = Date.now();
    const r = await script("pg-dump-backup.sh");
    const ms = Date.now() - t0;
    writing = false;
    await writer;
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/kit-pg: PostgreSQL 15 \(15\d{4}\) at 127\.0\.0\.1:\d+\/app; pg_dump 15\.\d+/);
    const stamp = /pg-(\d{8}T\d{6}Z)\.dump/.exec(r.stdout)![1];
    const prefix = `${env.names.bucketPrefix}/pg-dump`;
    first = JSON.parse((await object(`${prefix}/${stamp}.json`)).toString()) as Manifest;
    expect(first).toMatchObject({ at: stamp, key: `${prefix}/${stamp}.dump` });
    dumped = first.tables.find((t) => t.name === "rows")!.rows;
    live = Number(await pg.psql("SELECT count(*) FROM rows", { database: "app" }));
    expect(first.tables).toEqual([
      { name: "billing.Invoices", rows: 7 },
      { name: "kit_schema_version", rows: 1 },
      { name: "rows", rows: dumped },
    ]);
    expect(dumped).toBeGreaterThanOrEqual(ROWS);
    expect(live).toBe(ROWS + written);
    expect(live).toBeGreaterThan(dumped); // writes landed during the dump, after its snapshot
    const dump = await object(first.key);
    expect(dump.subarray(0, 5).toString()).toBe("PGDMP"); // the custom format's magic
    expect(dump.length).toBe(first.bytes);
    expect(createHash("sha256").update(dump).digest("hex")).toBe(first.sha256);
    // The same copy stays on the volume.
    expect(readFileSync(join(w.kit.path("backupDir"), `pg-${stamp}.dump`)).equals(dump)).toBe(true);
    // No password or URL in what it says.
    expect(r.stdout).not.toContain(pg.password);
    console.log(`pg_dump of ${dumped} rows (${written} written during it, ${live - dumped} after its snapshot): ${(first.bytes / 2 ** 20).toFixed(1)} MiB dump, ${ms} ms in all (dump + counts + upload); ${r.stdout.trim().split("\n").join(" | ")}`);
  }, 120_000);

  test("without database.env it does nothing (a server on SQLite); with a client older than the server it refuses, naming what to install", async () => {
    // On a server the unit's ConditionPathExists skips it; the script has the same guard of its own.
    renameSync(databaseEnv, `${databaseEnv}.aside`);
    const none = await script("pg-dump-backup.sh");
    renameSync(`${databaseEnv}.aside`, databaseEnv);
    expect(none).toMatchObject({ status: 0, stderr: "" });
    expect(none.stdout).toContain("this server is on SQLite (fallback-backup.sh backs it up); nothing to do");
    const old = join(w.aux, "bin", "pg_dump");
    writeFileSync(old, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.9'\n", { mode: 0o755 });
    try {
      const r = await script("pg-dump-backup.sh", { PATH: `${join(w.aux, "bin")}:${w.env.PATH}` });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("kit-pg: pg_dump 13 cannot work with this PostgreSQL 15 server: install postgresql-client-15");
      expect(r.stderr).toContain("kit-pg-dump: FAILED: the version check above refused: nothing was dumped");
      console.log(`old client refused: ${r.stderr.trim().split("\n").join(" | ")}`);
    } finally {
      rmSync(old);
    }
  }, 60_000);
});

describe("the drill on PostgreSQL (restore-drill.sh → pg-restore-drill.sh)", () => {
  test("restores the newest dump from the bucket into the scratch database; every table's rows equal the dump's snapshot", async () => {
    // Writes during and after the dump are not in it: the comparison is with the counts taken in the dump's snapshot.
    await pg.psql("SET ROLE app; INSERT INTO rows (value, created_at) VALUES ('after the dump', now()::text)", { database: "app" });
    live++;
    const t0 = Date.now();
    const r = await script("restore-drill.sh");
    const ms = Date.now() - t0;
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const report = drillReport();
    expect(report).toMatchObject({ ok: true, engine: "postgres", stack: env.stackName, missing_tables: 0, integrity: "sha256 ok, pg_restore ok" });
    expect(report.dump).toEqual({ key: first.key, bytes: first.bytes, sha256: first.sha256 });
    expect(report.tables).toEqual([
      { name: "billing.Invoices", live: 7, restored: 7 },
      { name: "kit_schema_version", live: 1, restored: 1 },
      { name: "rows", live: dumped, restored: dumped },
    ]);
    expect(await pg.psql("SELECT count(*) FROM rows", { database: "app_drill" })).toBe(String(dumped));
    expect(await pg.psql("SELECT count(*) FROM rows", { database: "app" })).toBe(String(live));
    expect(report.rto_ms).toBeGreaterThan(0);
    expect(report.rpo_ms).toBeGreaterThanOrEqual(0);
    // scripts/drill.ts prints it so.
    expect(summarize(report)).toContain(`restore drill of ${env.stackName} at ${report.at} (PostgreSQL, the daily dump): PASSED`);
    expect(summarize(report)).toMatch(/\n {2}tables {6}3 checked against the dump's snapshot, 0 missing$/);
    console.log(`drill: restore of ${(first.bytes / 2 ** 20).toFixed(1)} MiB ${report.rto_ms} ms (pg_restore), dump age ${report.rpo_ms} ms, ${ms} ms in all; ${r.stdout.trim()}`);
    // A second drill restores over the first (--clean --if-exists): same result.
    const again = await script("restore-drill.sh");
    expect(again.status).toBe(0);
    expect(drillReport().tables).toEqual(report.tables);
  }, 180_000);

  test("refuses to restore into the app's own database", async () => {
    const r = await script("restore-drill.sh", { DRILL_DATABASE_URL: pg.url() });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("DRILL_DATABASE_URL names the app's own database 127.0.0.1:");
    expect(drillReport().ok).toBe(false);
    expect(await pg.psql("SELECT count(*) FROM rows", { database: "app" })).toBe(String(live));
  }, 60_000);

  test("a tampered dump in the bucket fails the drill loudly: its sha256 is not the manifest's; a dump that does not restore fails it too", async () => {
    const dump = await object(first.key);
    const tampered = Buffer.from(dump);
    tampered[Math.floor(tampered.length / 2)] ^= 0xff;
    await put(first.key, tampered);
    const r = await script("restore-drill.sh");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`kit-drill: FAILED: dump ${first.key} has sha256 ${createHash("sha256").update(tampered).digest("hex")}, its manifest says ${first.sha256}`);
    expect(drillReport()).toMatchObject({ ok: false, rto_ms: null });
    console.log(`tampered: ${r.stderr.trim()}`);

    // Broken with a matching manifest (cut short before upload): pg_restore itself refuses it.
    const cut = dump.subarray(0, Math.floor(dump.length / 2));
    const sha = createHash("sha256").update(cut).digest("hex");
    await put(first.key, cut);
    await put(first.key.replace(/\.dump$/, ".json"), JSON.stringify({ ...first, bytes: cut.length, sha256: sha }));
    const broken = await script("restore-drill.sh");
    expect(broken.status).toBe(1);
    expect(broken.stderr).toMatch(/kit-drill: FAILED: pg_restore of .* into app_drill: pg_restore: error: /);
    expect(drillReport()).toMatchObject({ ok: false });
    console.log(`cut short: ${broken.stderr.trim()}`);
    // The scratch database kept its last good restore (--single-transaction): nothing half-restored.
    expect(await pg.psql("SELECT count(*) FROM rows", { database: "app_drill" })).toBe(String(dumped));
    await put(first.key, dump);
    await put(first.key.replace(/\.dump$/, ".json"), JSON.stringify(first));
  }, 120_000);
});

describe("the watcher on PostgreSQL", () => {
  test("fresh dump in the bucket, database answering: replication/litestream/fallback ok, no Litestream facts", async () => {
    const v = await watch();
    expect(v.checks.replication).toMatchObject({ state: "ok", value: expect.stringMatching(/^PostgreSQL answers over TLS in \d+ ms$/) });
    expect(v.checks.litestream).toEqual({ state: "ok", value: "off: the database is on PostgreSQL" });
    expect(v.checks.fallback).toEqual({ state: "ok", value: "pg_dump 0 h old, in the bucket" });
    expect(v.facts.replicationLagSeconds).toBeNull();
    expect(v.facts.fallbackAgeSeconds).toBeLessThan(600);
    console.log(`watcher on PostgreSQL: ${v.checks.replication.value}; ${v.checks.fallback.value}; run ${v.durationMs} ms`);
  }, 60_000);

  test(`a dump older than ${PG_DUMP_MAX_AGE_SECONDS / 3600} h is critical; a failed dump run too; an unreachable database is critical`, async () => {
    const file = join(w.kit.path("backupDir"), `pg-${first.at}.dump`);
    const old = (Date.now() - (PG_DUMP_MAX_AGE_SECONDS + 3600) * 1000) / 1000;
    utimesSync(file, old, old);
    const stale = await watch();
    expect(stale.checks.fallback).toMatchObject({ state: "critical", value: "the newest pg_dump is 27 h old (more than 26 h)" });
    expect(stale.state).toBe("critical");
    const fresh = Date.now() / 1000;
    utimesSync(file, fresh, fresh);
    expect((await watch()).checks.fallback.state).toBe("ok");

    w.unit("kit-pg-dump.service", { ActiveState: "failed", Result: "exit-code" });
    expect((await watch()).checks.fallback).toMatchObject({ state: "critical", value: "the last pg_dump failed (exit-code): journalctl -u kit-pg-dump.service" });
    w.unit("kit-pg-dump.service", { ActiveState: "inactive", Result: "success" });

    const r = await script("watch.sh", { DATABASE_URL: pg.url().replace(pg.password, "wrong-password") });
    const v = JSON.parse(readFileSync(join(w.aux, "watch/verdict.json"), "utf8")) as WatchVerdict;
    expect(r.status).toBe(0);
    expect(v.checks.replication).toMatchObject({ state: "critical", value: expect.stringContaining("PostgreSQL not answering: ") });
    expect(v.checks.replication.value).toContain("password authentication failed");
    expect(JSON.stringify(v)).not.toContain("wrong-password");
    console.log(`database unreachable: ${v.checks.replication.value}`);
  }, 120_000);
});
