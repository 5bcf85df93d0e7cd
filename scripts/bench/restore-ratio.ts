/**
 * Restore-ratio benchmark (not a test): `restore.ts <stack> --local FILE --latest` wall time next to a bare
 * `litestream restore` of the same replica. Goal: restore.ts ≤ 1.2× bare.
 *
 *   npm run bench:restore-ratio [-- --runs 3 --sizes 50,250,1024]
 *
 * For each size (MiB): a database of incompressible 4 KiB rows (lab-replica.ts) is replicated by
 * Litestream 0.3.13 under the kit's litestream.yml to the lab S3 in this process (TLS, SigV4, the stack's
 * IAM policies), plus a write after the snapshot so that a restore also applies WAL; Litestream is stopped;
 * then the two restores run in turn, order alternating run by run (so neither always finds the page cache
 * warm). restore.ts runs as an operator runs it (the script itself: its shebang's Node strips the types), with the key pair in
 * LITESTREAM_ACCESS_KEY_ID/SECRET and the lab's endpoint in --s3-endpoint. Printed: every run, then per size
 * the medians, the ratio, and restore.ts's own step times (from its progress lines).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../../app/repo.ts";
import { main, parseArgs, scriptArgs, say } from "../lib/cli.ts";
import { OpsError } from "../lib/errors.ts";
import { LITESTREAM, median, MiB, run, seconds, seedDatabase, sql, startLabReplica, type LabReplica } from "./lab-replica.ts";

const RESTORE_TS = join(REPO_ROOT, "scripts", "restore.ts");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Litestream replicates `db` until the replica holds its snapshot and a later write, then stops (flushing). */
async function replicate(replica: LabReplica, config: string, db: string): Promise<void> {
  const child: ChildProcess = spawn(LITESTREAM, ["replicate", "-config", config], { env: replica.litestreamEnv, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (d: Buffer) => (log += d));
  child.stderr!.on("data", (d: Buffer) => (log += d));
  const settled = async (what: string, since: number) => {
    const deadline = Date.now() + 600_000;
    while (!(replica.newestUpload() >= since && Date.now() - replica.newestUpload() > 1500)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${what} did not reach the lab S3; Litestream said:\n${log.slice(-3000)}`);
      await sleep(200);
    }
  };
  try {
    await settled("the snapshot", 0);
    const after = Date.now();
    // About 1 % of the database after the snapshot: the restore downloads and applies WAL too.
    await sql(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < (SELECT max(1, count(*) / 100) FROM rows)) INSERT INTO rows(body) SELECT randomblob(4000) FROM n;");
    await settled("the write after the snapshot", after);
  } finally {
    const exited = new Promise((r) => child.once("exit", r));
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited;
  }
}

/** Removes a restored copy and what Litestream and sqlite3 leave beside it (FILE.tmp-wal, FILE-shm, …). */
function removeCopy(dir: string, name: string): void {
  for (const entry of readdirSync(dir)) if (entry.startsWith(name)) rmSync(join(dir, entry), { force: true });
}

interface Timed {
  readonly bare: number;
  readonly kit: number;
  /** restore.ts's own step times in s, by step number, from its "✓ … in N s" lines. */
  readonly steps: readonly number[];
}

async function oneSize(mib: number, runs: number, work: string): Promise<Timed[]> {
  const dir = join(work, `${mib}`);
  const db = join(dir, "app.sqlite3");
  const replica = await startLabReplica();
  try {
    const config = await replica.writeConfig(dir, db);
    say(`${mib} MiB: seeding, replicating …`);
    await seedDatabase(db, mib);
    await replicate(replica, config, db);
    const expected = await sql(db, "SELECT count(*) FROM rows");
    say(`${mib} MiB: replica ${(replica.replicaBytes() / MiB).toFixed(0)} MiB in the lab S3, ${expected} rows`);
    const user = replica.lab.users.get(replica.env.stackName)!;
    const kitEnv = { ...replica.litestreamEnv, LITESTREAM_ACCESS_KEY_ID: user.accessKeyId, LITESTREAM_SECRET_ACCESS_KEY: user.secretAccessKey };

    const bare = async (out: string) => {
      const r = await run(LITESTREAM, ["restore", "-config", config, "-o", out, db], replica.litestreamEnv);
      if (r.code !== 0) throw new Error(`litestream restore exited ${r.code}: ${(r.stderr || r.stdout).slice(-2000)}`);
      return { ms: r.ms, steps: [] as number[] };
    };
    const kit = async (out: string) => {
      const args = [replica.env.stackName, "--local", out, "--latest", "--outputs", join(dir, "no-outputs.json"), "--s3-endpoint", replica.lab.endpoint];
      const r = await run(RESTORE_TS, args, kitEnv, REPO_ROOT);
      if (r.code !== 0) throw new Error(`restore.ts exited ${r.code}: ${r.stderr.slice(-2000)}`);
      if (!new RegExp(`rows\\s+${expected}\\b`).test(r.stderr)) throw new Error(`restore.ts did not restore ${expected} rows:\n${r.stderr.slice(-2000)}`);
      return { ms: r.ms, steps: [...r.stderr.matchAll(/^ {2}✓ .* in ([\d.]+) s$/gm)].map((m) => Number(m[1])) };
    };

    const timed: Timed[] = [];
    for (let n = 1; n <= runs; n++) {
      const order = n % 2 ? [bare, kit] : [kit, bare];
      const results = new Map<unknown, { ms: number; steps: number[] }>();
      for (const restore of order) {
        results.set(restore, await restore(join(dir, "restored.sqlite3")));
        removeCopy(dir, "restored.sqlite3");
      }
      const t = { bare: results.get(bare)!.ms, kit: results.get(kit)!.ms, steps: results.get(kit)!.steps };
      timed.push(t);
      say(`  ${mib} MiB run ${n}: bare ${seconds(t.bare)}, restore.ts ${seconds(t.kit)} (${(t.kit / t.bare).toFixed(2)}×; its steps ${t.steps.map((s) => `${s.toFixed(1)} s`).join(" / ")})`);
    }
    return timed;
  } finally {
    await replica.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { string: ["runs", "sizes"] });
  if (args.help) return void process.stdout.write("Usage: npm run bench:restore-ratio [-- --runs 3 --sizes 50,250,1024]\n");
  const runs = Number(args.flags.runs ?? 3);
  if (!Number.isInteger(runs) || runs < 1) throw new OpsError(`--runs ${String(args.flags.runs)} is not a whole number ≥ 1`, "e.g. --runs 3");
  const sizes = String(args.flags.sizes ?? "50,250,1024").split(",").map(Number);
  if (sizes.some((s) => !Number.isInteger(s) || s < 1)) throw new OpsError(`--sizes ${String(args.flags.sizes)}: not whole numbers of MiB`, "e.g. --sizes 50,250,1024");

  const work = mkdtempSync(join(tmpdir(), "bench-restore-ratio-"));
  try {
    say(`Litestream 0.3.13 restores from the lab S3 (TLS, SigV4, IAM) in this process; ${runs} runs per size`);
    const all = new Map<number, Timed[]>();
    for (const mib of sizes) all.set(mib, await oneSize(mib, runs, work));
    say("\nmedians (goal: restore.ts ≤ 1.2× bare):");
    for (const [mib, timed] of all) {
      const bare = median(timed.map((t) => t.bare));
      const kit = median(timed.map((t) => t.kit));
      const steps = [0, 1].map((i) => median(timed.map((t) => t.steps[i] ?? 0)));
      say(`  ${`${mib} MiB`.padEnd(9)} bare ${seconds(bare)}, restore.ts ${seconds(kit)}: ${(kit / bare).toFixed(2)}× ` +
        `(its restore step ${steps[0].toFixed(1)} s, its checks ${steps[1].toFixed(1)} s, the rest start-up)`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
