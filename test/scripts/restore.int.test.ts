/**
 * Restore logic against real sqlite3, Litestream 0.3.13 and the lab S3 (HTTPS, the environment's
 * least-privilege key). The "server" is this machine, its kit
 * paths moved into a temp dir (LocalKit). The first test goes through the real SSH runner on a loopback
 * sshd; the rest run the same Steps with LocalRunner (same contract, no 0.5 s session cost each).
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { withLock } from "../../scripts/lib/deploy-lock.ts";
import { OpsError } from "../../scripts/lib/errors.ts";
import { formatCounts, parseChecked, restoreLocal, restoreRemote, summarizeListing } from "../../scripts/lib/restore-run.ts";
import * as steps from "../../scripts/lib/server-steps.ts";
import { bash, join as joinScripts, step } from "../../scripts/lib/shell.ts";
import { SshRunner } from "../../scripts/lib/ssh.ts";
import type { Target } from "../../scripts/lib/target.ts";
import { labAccess, LocalKit, localEnvironments } from "../../lab/local/local-kit.ts";
import { LocalRunner } from "../../lab/local/local-runner.ts";
import { startSshd, type TestSshd } from "../../lab/local/sshd.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";
import { actionsOf, leastPrivilegeProblems } from "./support/iam.ts";
import { localTarget, trustLabCa } from "./support/local-target.ts";

/** The environment restored; `nobucket` is one whose bucket the lab S3 does not have. */
const [restoreEnv, noBucketEnv] = localEnvironments(["restore", "nobucket"]);
let lab: LabS3Process;
let sshd: TestSshd;
let kit: LocalKit;
let ssh: SshRunner;
let runner: LocalRunner;
let paths: steps.ServerPaths;
const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = { onProgress: () => undefined };

beforeAll(async () => {
  [lab, sshd] = await Promise.all([startKitLabS3Process([restoreEnv]), startSshd()]);
  kit = new LocalKit(labAccess(lab, restoreEnv), restoreEnv);
  paths = { kitEnvFile: kit.kitEnvFile, libDir: kit.path("libDir"), caddyfile: join(kit.root, "Caddyfile"), deployLock: join(kit.root, "run", "deploy.lock") };
  writeFileSync(paths.caddyfile, ":80 {\n\treverse_proxy 127.0.0.1:8000\n}\n");
  writeFileSync(kit.path("bootstrapDoneFile"), "/srv/app/releases/first\n");
  runner = new LocalRunner(kit.env);
  ssh = new SshRunner({ host: "127.0.0.1", port: sshd.port, user: sshd.user, identity: sshd.identity }, { knownHostsFile: join(kit.root, "known_hosts"), controlDir: join(kit.root, "ctl") });
  kit.sql(kit.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO rows(body) VALUES ('a'),('b'),('c'),('d'),('e');");
  await kit.startReplication();
});
afterAll(async () => {
  await ssh?.close();
  await kit?.cleanup();
  await Promise.all([lab?.stop(), sshd?.stop()]);
});

describe("restore into scratch (server side, over SSH)", () => {
  test("--latest (over SSH): the replica restores into a new scratch file; integrity ok; row counts beside live", async () => {
    await sleep(1500); // past the 1 s sync interval
    const checked = parseChecked((await ssh.run(steps.restoreToScratch({ kind: "replica" }, paths), quiet)).stdout);
    expect(checked.scratch.startsWith(`${kit.path("scratchDir")}/restore-`)).toBe(true);
    expect(checked.integrity).toBe("ok");
    expect(checked.tables.get("rows")).toEqual({ restored: 5, live: 5 });
    expect(formatCounts(checked)).toMatch(/rows\s+5\s+5\s+=/);
    expect(kit.sql(checked.scratch, "SELECT group_concat(body, '') FROM rows")).toBe("abcde");
  });

  test("--timestamp: a point in time between two writes restores the state of that moment", async () => {
    await sleep(1100);
    const between = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await sleep(1100);
    kit.sql(kit.dbFile, "DELETE FROM rows WHERE body IN ('a', 'b')"); // "someone deleted data at 14:05"
    await sleep(1500);
    const latest = parseChecked((await runner.run(steps.restoreToScratch({ kind: "replica" }, paths), quiet)).stdout);
    expect(latest.tables.get("rows")).toEqual({ restored: 3, live: 3 });
    const before = parseChecked((await runner.run(steps.restoreToScratch({ kind: "replica", timestamp: between }, paths), quiet)).stdout);
    expect(before.integrity).toBe("ok");
    expect(before.tables.get("rows")).toEqual({ restored: 5, live: 3 });
  });

  test("listing: generations, snapshots and WAL, summarised as the reachable time range", async () => {
    const out = (await runner.run(steps.listBackups(paths), quiet)).stdout;
    expect(out).toMatch(/== generations\nname\s+generation/);
    expect(summarizeListing(out)).toMatch(/^point-in-time restores reach from \d{4}-\d\d-\d\dT\S+Z to \S+Z \(UTC\); 0 fallback copies on the volume$/);
  });

  test("an unreachable bucket is a clear error (exit 4), not a half-made restore", async () => {
    const broken = new LocalKit(labAccess(lab, restoreEnv), noBucketEnv);
    const brokenPaths = { ...paths, kitEnvFile: broken.kitEnvFile };
    const result = await runner.run(steps.restoreToScratch({ kind: "replica" }, brokenPaths), { ...quiet, allowFailure: true });
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toContain("NoSuchBucket");
    await broken.cleanup();
  });
});

describe("replacing the live database", () => {
  test("the live database and its -wal/-shm are moved aside (never deleted); the restored copy is in place", async () => {
    const scratchDir = join(kit.path("scratchDir"), "restore-test");
    mkdirSync(scratchDir, { recursive: true });
    const restored = join(scratchDir, "app.sqlite3");
    kit.sql(restored, "CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO rows(body) VALUES ('restored');");
    await kit.stopReplication(); // the server's swap stops Litestream and the app first
    const liveBefore = kit.sql(kit.dbFile, "SELECT group_concat(body, '') FROM rows");
    const walExisted = existsSync(`${kit.dbFile}-wal`);
    const swap = step("swap", joinScripts(bash`. ${paths.kitEnvFile}`, steps.swapFiles(restored, "before-restore", "move")));
    const aside = (await runner.run(swap, quiet)).stdout.match(/^aside=(.*)$/m)![1];
    expect(kit.sql(kit.dbFile, "SELECT body FROM rows")).toBe("restored");
    expect(readdirSync(aside).sort()).toEqual(walExisted ? ["app.sqlite3", "app.sqlite3-shm", "app.sqlite3-wal"].filter((f) => existsSync(join(aside, f))) : ["app.sqlite3"]);
    expect(kit.sql(join(aside, "app.sqlite3"), "SELECT group_concat(body, '') FROM rows")).toBe(liveBefore);
    expect(existsSync(restored)).toBe(false); // moved, not copied

    // Undo = restore --from-file <aside>/app.sqlite3: a consistent copy of the aside database (with its WAL).
    const undo = parseChecked((await runner.run(steps.restoreToScratch({ kind: "file", path: join(aside, "app.sqlite3") }, paths), quiet)).stdout);
    expect(undo.integrity).toBe("ok");
    expect(kit.sql(undo.scratch, "SELECT group_concat(body, '') FROM rows")).toBe(liveBefore);
  });

  test("refuses a corrupt restore: nothing is replaced, the copy is kept for inspection, the lock is released", async () => {
    // A fallback copy whose pages are damaged (gzip'd like fallback-backup.sh writes them).
    const damaged = join(kit.root, "damaged.sqlite3");
    kit.sql(damaged, "CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO rows(body) SELECT printf('row %d %s', i, hex(randomblob(40))) FROM n;");
    const bytes = readFileSync(damaged);
    bytes.fill(0x5a, 4096 * 3 + 100, 4096 * 3 + 3000);
    writeFileSync(damaged, bytes);
    execFileSync("sh", ["-c", `gzip -c ${damaged} > ${join(kit.path("backupDir"), "app-20260101T000000Z.sqlite3.gz")}`]);
    const live = sha(kit.dbFile);
    const target = { env: restoreEnv } as Target;
    const error = await restoreRemote({ target, runner, from: { kind: "fallback" }, yes: true, paths }).catch((e) => e);
    expect(error).toBeInstanceOf(OpsError);
    expect(error.message).toContain("fails PRAGMA integrity_check");
    expect(error.message).toContain("Nothing was changed");
    expect(sha(kit.dbFile)).toBe(live);
    const kept = /kept for inspection at (\S+)\./.exec(error.fix)![1];
    expect(existsSync(kept)).toBe(true);
    expect(existsSync(paths.deployLock)).toBe(false);
  });
});

describe("the deploy lock", () => {
  test("a held lock stops a second operation with who holds it and how to remove a stale one; released after a failure", async () => {
    const inner = await withLock(runner, "first", paths, async () => {
      expect(readFileSync(join(paths.deployLock, "owner"), "utf8")).toMatch(/^first by \S+@\S+ pid \d+ since /);
      return withLock(runner, "second", paths, async () => "never").catch((e) => e);
    });
    expect(inner).toBeInstanceOf(OpsError);
    expect(inner.message).toContain("holds the deploy lock");
    expect(inner.message).toContain("first by");
    expect(inner.fix).toContain(`sudo rm -r ${paths.deployLock}`);
    await expect(withLock(runner, "failing", paths, async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(existsSync(paths.deployLock)).toBe(false);
  });
});

describe("--local: restore onto this machine", () => {
  const targetFor = (endpoint: string) => localTarget(kit, { endpoint });
  let untrust: () => void;
  beforeAll(() => (untrust = trustLabCa(lab.caFile)));
  afterAll(() => untrust?.());

  test("restores the replica into a new local file and checks it; never overwrites; with exactly the environment's key", async () => {
    const out = join(kit.root, "local-copy.sqlite3");
    const before = (await lab.decisions()).length;
    const checked = await restoreLocal(targetFor(lab.endpoint), out);
    expect(checked.integrity).toBe("ok");
    expect(checked.tables.get("rows")?.restored).toBe(3);
    await expect(restoreLocal(targetFor(lab.endpoint), out)).rejects.toThrow("already exists");
    // restore.ts --local's requests: allowed by the environment's own statements, inside its prefix.
    const mine = (await lab.decisions()).slice(before);
    expect(leastPrivilegeProblems(mine, restoreEnv)).toEqual([]);
    expect(actionsOf(mine, restoreEnv)).toEqual(new Set(["s3:ListBucket", "s3:GetObject"]));
  });

  test("S3 unreachable: says so and names the way out", async () => {
    const error = await restoreLocal(targetFor("https://127.0.0.1:1"), join(kit.root, "never.sqlite3")).catch((e) => e);
    expect(error).toBeInstanceOf(OpsError);
    expect(error.message).toMatch(/cannot read the backups \(seen from this machine\): .*connection refused/);
    expect(error.fix).toContain("--from-fallback");
  });
});
