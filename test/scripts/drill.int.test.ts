/**
 * restore-drill.sh (the server-side drill that restore-drill.timer and scripts/drill.ts run) against real
 * sqlite3, Litestream 0.3.13 and the lab S3 on loopback (HTTPS, the environment's least-privilege key).
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { execFileSync, spawnSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { labAccess, LocalKit, localEnvironments } from "../../lab/local/local-kit.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";
import { actionsOf, leastPrivilegeProblems } from "./support/iam.ts";

const [drillEnv, emptyEnv] = localEnvironments(["drill", "drillempty"]);
let lab: LabS3Process;
let ping: Server;
let pings = 0;
let pingUrl = "";
beforeAll(async () => {
  lab = await startKitLabS3Process([drillEnv, emptyEnv]);
  ping = createServer((_, res) => {
    pings++;
    res.end("ok");
  });
  await new Promise<void>((resolve) => ping.listen(0, "127.0.0.1", resolve));
  const address = ping.address();
  pingUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}/ping`;
});
afterAll(async () => {
  await lab?.stop();
  await new Promise((resolve) => ping?.close(resolve));
});

describe("restore-drill.sh", () => {
  let kit: LocalKit;
  beforeAll(async () => {
    kit = new LocalKit(labAccess(lab, drillEnv), drillEnv, { drillWaitSeconds: 3, drillPingUrl: pingUrl });
    kit.sql(kit.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO rows(body) VALUES ('a'),('b'),('c');");
    await kit.startReplication();
  });
  afterAll(() => kit?.cleanup());

  const report = () => JSON.parse(readFileSync(join(kit.path("drillDir"), "latest.json"), "utf8"));

  test("passes on a replicating database: sentinel found, integrity ok, row counts equal; RPO/RTO measured; ping sent", async () => {
    const run = await kit.script("restore-drill.sh");
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const r = report();
    expect(r).toMatchObject({ ok: true, integrity: "ok", missing_tables: 0, tables: [{ name: "rows", live: 3, restored: 3 }] });
    expect(r.rpo_ms).toBeGreaterThan(0);
    expect(r.rpo_ms).toBeLessThan(3000);
    expect(r.rto_ms).toBeGreaterThan(0);
    expect(kit.sql(kit.dbFile, `SELECT count(*) FROM _kit_drill WHERE token = '${r.sentinel}'`)).toBe("1");
    expect(run.stdout).toContain(`kit-drill: ok=true integrity='ok' rpo_ms=${r.rpo_ms}`);
    expect(pings).toBe(1);
    expect(readdirSync(kit.path("scratchDir"))).toEqual([]); // the scratch restore is cleaned up
    expect(readdirSync(kit.path("drillDir")).filter((f) => f.startsWith("drill-"))).toHaveLength(1); // evidence kept
    // With exactly the environment's least-privilege key: every request of Litestream (replicate, and the
    // drill's wal listing and restore) allowed by the statement of the stack's policy meant for it.
    const decisions = await lab.decisions();
    expect(leastPrivilegeProblems(decisions, drillEnv)).toEqual([]);
    expect(actionsOf(decisions, drillEnv)).toEqual(new Set(["s3:ListBucket", "s3:PutObject", "s3:GetObject"]));
  });

  test("writes the live database only with the fixed SQLite (kit-sql.js, ≥ 3.51.3); its sqlite3 calls on the live file are read-only", async () => {
    // A sqlite3 on PATH ahead of the real one that logs each call's arguments, then runs the real one.
    const real = execFileSync("bash", ["-c", "command -v sqlite3"], { encoding: "utf8" }).trim();
    const shimDir = kit.path("scratchDir") + "/../shim";
    const log = join(shimDir, "calls");
    execFileSync("mkdir", ["-p", shimDir]);
    writeFileSync(join(shimDir, "sqlite3"), `#!/bin/bash\nprintf '%s\\n' "$*" >>${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
    const path = kit.env.PATH;
    kit.env.PATH = `${shimDir}:${path}`;
    try {
      const run = await kit.script("restore-drill.sh");
      expect(run.status).toBe(0);
    } finally {
      kit.env.PATH = path;
    }
    const onLive = readFileSync(log, "utf8").split("\n").filter((call) => call.includes(kit.dbFile));
    expect(onLive.length).toBeGreaterThan(0); // the live counts still go through sqlite3, read-only
    expect(onLive.filter((call) => !call.split(" ").includes("-readonly"))).toEqual([]);
    expect(kit.sql(kit.dbFile, `SELECT count(*) FROM _kit_drill WHERE token = '${report().sentinel}'`)).toBe("1"); // written, by kit-sql.js
    const version = spawnSync(join(kit.path("libDir"), "kit-sql.js"), ["--version"], { encoding: "utf8", env: kit.env });
    expect(version.stderr).toBe("");
    const [major, minor, patch] = version.stdout.trim().split(".").map(Number);
    expect(major * 1e6 + minor * 1e3 + patch).toBeGreaterThanOrEqual(3_051_003);
  });

  test("fails when replication is stopped: the sentinel never reaches the replica; no ping", async () => {
    await kit.stopReplication();
    const before = pings;
    const run = await kit.script("restore-drill.sh");
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("kit-drill: FAILED");
    const r = report();
    expect(r).toMatchObject({ ok: false, rpo_ms: null, integrity: "ok" }); // the old replica restores fine, but is stale
    expect(pings).toBe(before);
  });
});

test("refuses on a server without a database (first boot not finished): creates nothing, no report, no ping", async () => {
  const kit = new LocalKit(labAccess(lab, emptyEnv), emptyEnv, { drillPingUrl: pingUrl });
  try {
    const before = pings;
    const run = await kit.script("restore-drill.sh");
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`kit-drill: FAILED: no database at ${kit.dbFile}`);
    expect(existsSync(kit.dbFile)).toBe(false);
    expect(readdirSync(kit.path("drillDir"))).toEqual([]);
    expect(pings).toBe(before);
  } finally {
    await kit.cleanup();
  }
});
