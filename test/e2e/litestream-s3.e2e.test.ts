/**
 * The harness's S3 (the lab S3 as a child process) with the harness's Litestream helpers: Litestream 0.3.13
 * (the build the servers run) replicates a WAL database with an environment's backup key over HTTPS and
 * restores it, sentinel row included; the decision log shows the stack's least-privilege statements
 * allowing it. Host only: no machine is booted.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { restoreReplica, startReplication, type ReplicaOptions } from "../../lab/harness/litestream.ts";
import { run } from "../../lab/harness/process.ts";
import { startS3 } from "../../lab/harness/s3.ts";
import { shippedEnvironment } from "../../lab/environments.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { Teardown } from "../../lab/harness/teardown.ts";
import { waitFor } from "../../lab/harness/wait.ts";

describe("Litestream 0.3.13 against the harness's lab S3", () => {
  let teardown: Teardown;
  beforeAll(async () => {
    teardown = await Teardown.begin();
  });
  afterAll(() => teardown?.run());

  const sql = (db: string, statement: string) => run(["sqlite3", db, statement]).then((result) => result.stdout.trim());

  test("replicates a WAL database and restores it, up to the last committed row", async () => {
    const env = shippedEnvironment("example-prod");
    const s3 = await startS3(teardown, { environments: [env] });
    const replica: ReplicaOptions = { s3, replicaPath: `${env.names.bucketPrefix}/${LAYOUT.bucket.litestream}` };
    const dir = join(teardown.workDir, "db");
    mkdirSync(dir);
    const db = join(dir, "app.sqlite3");
    await sql(db, "PRAGMA journal_mode = WAL; CREATE TABLE rows (id INTEGER PRIMARY KEY, value TEXT UNIQUE NOT NULL);");
    await sql(db, "INSERT INTO rows (value) SELECT 'row-' || value FROM generate_series(1, 500);");

    const replication = startReplication(teardown, db, replica);
    await waitFor(
      async () => {
        const keys = await s3.listKeys(replica.replicaPath);
        return keys.some((key) => key.includes("/snapshots/")) && keys.some((key) => key.includes("/wal/"));
      },
      { timeoutMs: 30_000, what: "Litestream's first snapshot and WAL segment in the bucket" },
    );

    // The sentinel-row check: a row written after the snapshot must come back from a restore.
    await sql(db, "INSERT INTO rows (value) VALUES ('sentinel');");
    let attempt = 0;
    const restored = await waitFor(
      async () => {
        const out = join(dir, `restored-${++attempt}.sqlite3`);
        await restoreReplica(teardown, out, replica);
        return (await sql(out, "SELECT count(*) FROM rows WHERE value = 'sentinel';")) === "1" ? out : undefined;
      },
      { timeoutMs: 30_000, what: "the sentinel row to be restorable from S3", intervalMs: 1000 },
    );
    await replication.stop();

    expect(await sql(restored, "PRAGMA integrity_check;")).toBe("ok");
    expect(await sql(restored, "SELECT count(*) FROM rows;")).toBe("501");
    expect(await sql(restored, "SELECT count(*) FROM rows;")).toBe(await sql(db, "SELECT count(*) FROM rows;"));

    // Every request was the backup user's, and the stack's user policy allowed it: nothing else was asked.
    const decisions = await s3.decisions();
    expect(decisions.length).toBeGreaterThan(0);
    expect(decisions.filter((d) => d.result !== "Allowed")).toEqual([]);
    const deciders = new Set(decisions.flatMap((d) => d.decidedBy.map((s) => `${s.policy}/${s.sid}`)));
    expect([...deciders].sort()).toEqual(expect.arrayContaining(["backups-of-this-environment-only/ReadWriteThisEnvironmentOnly"]));
  });
});
