/**
 * A long `restore.ts --local` shows progress, not silence: run as an operator runs it (the repo's tsx)
 * against the lab S3 (TLS, SigV4, the stack's IAM policies) with a 48 MiB replica made by Litestream 0.3.13
 * under the kit's litestream.yml. The lab's downloads share a 16 MiB/s link, as a restore over the internet
 * does, so the restore step lasts about 3 s on any machine and must tick.
 * Everything runs asynchronously: the lab S3 answers from this process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../../app/repo.ts";
import { LITESTREAM, MiB, run, seedDatabase, sql, startLabReplica, type LabReplica } from "../../scripts/bench/lab-replica.ts";

const LINK = 16 * MiB;
const DB_MIB = 48;
let replica: LabReplica;
let dir: string;
let rows: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "restore-progress-"));
  replica = await startLabReplica("example-prod", { downloadBytesPerSecond: LINK });
  const db = join(dir, "app.sqlite3");
  await seedDatabase(db, DB_MIB);
  rows = await sql(db, "SELECT count(*) FROM rows");
  const config = await replica.writeConfig(dir, db);
  const litestream: ChildProcess = spawn(LITESTREAM, ["replicate", "-config", config], { env: replica.litestreamEnv, stdio: "ignore" });
  try {
    const deadline = Date.now() + 120_000;
    while (!(replica.replicaBytes() > DB_MIB * MiB * 0.9 && Date.now() - replica.newestUpload() > 1500)) {
      if (Date.now() > deadline) throw new Error("Litestream did not replicate the 48 MiB database to the lab S3 within 120 s");
      await sleep(200);
    }
  } finally {
    const exited = new Promise((r) => litestream.once("exit", r));
    litestream.kill("SIGTERM");
    await exited;
  }
}, 180_000);

afterAll(async () => {
  await replica?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("restore.ts --local --latest names its two steps, ticks bytes and elapsed time during the download, and totals each step", async () => {
  const out = join(dir, "restored.sqlite3");
  const user = replica.lab.users.get("example-prod")!;
  const args = ["scripts/restore.ts", "example-prod", "--local", out, "--latest", "--outputs", join(dir, "no-outputs.json"), "--s3-endpoint", replica.lab.endpoint];
  const r = await run(join(REPO_ROOT, "node_modules", ".bin", "tsx"), args, { ...replica.litestreamEnv, LITESTREAM_ACCESS_KEY_ID: user.accessKeyId, LITESTREAM_SECRET_ACCESS_KEY: user.secretAccessKey }, REPO_ROOT);
  expect(r.stderr).toMatch(/integrity:\s+ok/);
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(new RegExp(`rows\\s+${rows}\\b`));
  const lines = r.stderr.split("\n");

  // The steps by name, in order, each closed by its total.
  const steps = lines.filter((l) => l.startsWith("▸ "));
  expect(steps).toEqual([
    `▸ 1/2 restore s3://${replica.env.names.bucket}/prod/litestream (latest) into ${out}`,
    expect.stringMatching(/^▸ 2\/2 check the copy \(\d+\.\d MiB\): PRAGMA integrity_check and row counts per table, at once$/),
  ]);
  const totals = lines.filter((l) => l.startsWith("  ✓ "));
  const size = statSync(out).size;
  expect(totals[0]).toBe(`  ✓ ${(size / MiB).toFixed(1)} MiB in ${/in ([\d.]+) s$/.exec(totals[0])![1]} s`);
  expect(totals.slice(1)).toEqual([expect.stringMatching(/^ {2}✓ integrity ok, 1 table counted in \d+\.\d s$/)]);

  // During the download (≥ 48 MiB at 16 MiB/s: about 3 s): a tick a second with the bytes so far, what
  // Litestream is doing, and the elapsed time; the bytes never go back, the time always moves on.
  const restoreSeconds = Number(/in ([\d.]+) s$/.exec(totals[0])![1]);
  expect(restoreSeconds).toBeGreaterThanOrEqual(size / LINK - 0.5);
  const ticks = lines.slice(lines.indexOf(steps[0]) + 1, lines.indexOf(totals[0]));
  expect(ticks.length).toBeGreaterThanOrEqual(Math.floor(restoreSeconds) - 1);
  expect(ticks.length).toBeGreaterThanOrEqual(2);
  const parsed = ticks.map((t) => {
    const m = /^ {4}… (\d+\.\d) MiB written \(([a-z ]+)\), (\d+\.\d) s$/.exec(t);
    expect(m).not.toBeNull();
    return { mib: Number(m![1]), doing: m![2], seconds: Number(m![3]) };
  });
  for (let i = 1; i < parsed.length; i++) {
    expect(parsed[i].mib).toBeGreaterThanOrEqual(parsed[i - 1].mib);
    expect(parsed[i].seconds).toBeGreaterThan(parsed[i - 1].seconds);
  }
  expect(parsed.at(-1)!.mib).toBeGreaterThan(0);
  expect(parsed.some((p) => p.doing === "restoring snapshot")).toBe(true);
  expect(existsSync(out)).toBe(true);
}, 120_000);
