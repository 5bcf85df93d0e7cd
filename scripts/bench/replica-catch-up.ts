/**
 * Catch-up benchmark (not a test): how long after a bulk write the replica in S3 holds a write made right
 * after it. Goal: ≤ 10 s on a 2-core machine.
 *
 *   npm run bench:catch-up [-- --runs 3 --db-mib 250 --bulk-mib 100 --variants kit,monitor-1s]
 *
 * Each run: a fresh lab S3 in this process (the example environment's bucket, user and policies), a
 * `--db-mib` database replicating with Litestream 0.3.13 under the kit's own litestream.yml, then
 *   1. `VACUUM` of the whole database (it rewrites every page into the WAL), and
 *   2. one transaction of `--bulk-mib` MiB (a CSV import, a migration rewriting a big table),
 * each followed at once by a sentinel row. The figure is the time from the sentinel's commit to the upload
 * of the replica's newest object once a restore from the lab S3 holds the sentinel: an upper bound of when
 * it became restorable (restores run only after the replica stops changing, so they do not compete with
 * Litestream for the CPU). Printed: every run, then medians per variant.
 */
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { spawn, type ChildProcess } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main, parseArgs, scriptArgs, say } from "../lib/cli.ts";
import { OpsError } from "../lib/errors.ts";
import { LITESTREAM, median, MiB, run, seconds, seedDatabase, sql, startLabReplica, type LabReplica } from "./lab-replica.ts";

/** Settings alternatives measured against the kit's litestream.yml (edits of the rendered file). */
const VARIANTS: Readonly<Record<string, { readonly what: string; readonly edit: (yaml: string) => string }>> = {
  kit: { what: "cloud-init/templates/config/litestream.yml as shipped", edit: (y) => y },
  "monitor-1s": { what: "Litestream's default monitor-interval (1s)", edit: (y) => y.replace(/^ {4}monitor-interval: .*$/m, "    monitor-interval: 1s") },
  "max-checkpoint-100k": {
    what: "max-checkpoint-page-count 100000 (Litestream forces a RESTART checkpoint only past 400 MiB of WAL)",
    edit: (y) => y.replace(/^( {4}monitor-interval: .*)$/m, "$1\n    max-checkpoint-page-count: 100000"),
  },
  "min-checkpoint-10k": {
    what: "min-checkpoint-page-count 10000 (passive checkpoints only past 40 MiB of WAL)",
    edit: (y) => y.replace(/^( {4}monitor-interval: .*)$/m, "$1\n    min-checkpoint-page-count: 10000"),
  },
};

interface Measured {
  readonly variant: string;
  readonly scenario: string;
  readonly writeMs: number;
  readonly catchUpMs: number;
  readonly confirmedMs: number;
  readonly restoreMs: number;
  readonly uploadedMiB: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `check` holds, polling every 100 ms; `what` names it in the error. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms: number, log: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not within ${ms / 1000} s; Litestream said:\n${log().slice(-3000)}`);
    await sleep(100);
  }
}

async function measure(replica: LabReplica, db: string, dir: string, config: string, sentinel: string, log: () => string) {
  const written = Date.now();
  let attempts = 0;
  for (;;) {
    // The replica has changed since the write and then been still for a second: time to look.
    await until("an upload after the write", () => replica.newestUpload() >= written, 120_000, log);
    await until("the replica to settle", () => Date.now() - replica.newestUpload() > 1000, 120_000, log);
    const out = join(dir, `restored-${attempts++}.sqlite3`);
    // The replica as the restore finds it: later uploads (a checkpoint's new WAL header) do not count.
    const newest = replica.newestUpload();
    const restoreStart = Date.now();
    const r = await run(LITESTREAM, ["restore", "-config", config, "-o", out, db], replica.litestreamEnv);
    const restoreMs = Date.now() - restoreStart;
    const found = r.code === 0 && (await sql(out, `SELECT count(*) FROM rows WHERE body = '${sentinel}'`)) === "1";
    for (const suffix of ["", "-wal", "-shm", ".tmp-wal", ".tmp-shm"]) rmSync(out + suffix, { force: true });
    if (found) return { catchUpMs: newest - written, confirmedMs: restoreStart - written, restoreMs };
    if (Date.now() - written > 180_000) throw new Error(`the sentinel ${sentinel} never became restorable (${attempts} restores); Litestream said:\n${log().slice(-3000)}`);
  }
}

async function oneRun(variant: string, template: string, bulkMiB: number, work: string, n: number): Promise<Measured[]> {
  const replica = await startLabReplica();
  const dir = join(work, `${variant}-${n}`);
  const db = join(dir, "app.sqlite3");
  let litestream: ChildProcess | undefined;
  let output = "";
  try {
    const config = await replica.writeConfig(dir, db, VARIANTS[variant].edit);
    copyFileSync(template, db);
    litestream = spawn(LITESTREAM, ["replicate", "-config", config], { env: replica.litestreamEnv, stdio: ["ignore", "pipe", "pipe"] });
    litestream.stdout!.on("data", (d: Buffer) => (output += d));
    litestream.stderr!.on("data", (d: Buffer) => (output += d));
    const log = () => output;
    await until("the first snapshot", () => [...replica.lab.store.bucket(replica.env.names.bucket).keys.keys()].some((k) => k.includes("/snapshots/")), 180_000, log);
    await until("the first snapshot to settle", () => Date.now() - replica.newestUpload() > 1000, 60_000, log);

    const results: Measured[] = [];
    const scenarios: [string, string][] = [
      ["VACUUM", "VACUUM;"],
      [`${bulkMiB} MiB transaction`, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${bulkMiB}) INSERT INTO rows(body) SELECT randomblob(1048576) FROM n;`],
    ];
    for (const [scenario, bulk] of scenarios) {
      const before = replica.replicaBytes();
      const sentinel = `sentinel after ${scenario} ${Date.now()}`;
      const started = Date.now();
      // The bulk write, then the sentinel in its own transaction right after it: what an app does next.
      await sql(db, `${bulk} INSERT INTO rows(body) VALUES ('${sentinel}');`);
      const writeMs = Date.now() - started;
      const m = await measure(replica, db, dir, config, sentinel, log);
      results.push({ variant, scenario, writeMs, ...m, uploadedMiB: (replica.replicaBytes() - before) / MiB });
      say(`  ${variant} run ${n}: ${scenario.padEnd(20)} write ${seconds(writeMs)}, restorable after ${seconds(m.catchUpMs)} ` +
        `(confirmed by a restore started at +${seconds(m.confirmedMs)}, taking ${seconds(m.restoreMs)}); ${((replica.replicaBytes() - before) / MiB).toFixed(0)} MiB uploaded`);
    }
    return results;
  } finally {
    if (litestream && litestream.exitCode === null) {
      const exited = new Promise((r) => litestream!.once("exit", r));
      litestream.kill("SIGTERM");
      await exited;
    }
    await replica.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { string: ["runs", "db-mib", "bulk-mib", "variants"] });
  if (args.help) {
    return void process.stdout.write(`Usage: npm run bench:catch-up [-- --runs 3 --db-mib 250 --bulk-mib 100 --variants ${Object.keys(VARIANTS).join(",")}]\n\nVariants:\n${Object.entries(VARIANTS).map(([k, v]) => `  ${k.padEnd(22)}${v.what}`).join("\n")}\n`);
  }
  const number = (name: string, fallback: number) => {
    const raw = args.flags[name];
    const value = raw === undefined ? fallback : Number(raw);
    if (!Number.isInteger(value) || value < 1) throw new OpsError(`--${name} ${String(raw)} is not a whole number ≥ 1`, `e.g. --${name} ${fallback}`);
    return value;
  };
  const runs = number("runs", 3);
  const dbMiB = number("db-mib", 250);
  const bulkMiB = number("bulk-mib", 100);
  const variants = String(args.flags.variants ?? "kit").split(",");
  for (const v of variants) if (!VARIANTS[v]) throw new OpsError(`--variants: no variant ${v}`, `choose from ${Object.keys(VARIANTS).join(", ")}`);

  const work = mkdtempSync(join(tmpdir(), "bench-catch-up-"));
  try {
    const template = join(work, "template.sqlite3");
    say(`seeding a ${dbMiB} MiB database …`);
    await seedDatabase(template, dbMiB);
    say(`${dbMiB} MiB database, Litestream 0.3.13, lab S3 (TLS, SigV4, IAM) in this process; ${runs} runs per variant`);
    const all: Measured[] = [];
    // Variants interleaved run by run, so a slower minute of a shared machine does not favour one of them.
    for (let n = 1; n <= runs; n++) for (const v of variants) all.push(...(await oneRun(v, template, bulkMiB, work, n)));
    say("\nmedians (restorable after = sentinel commit → the replica's last upload; goal ≤ 10 s):");
    for (const v of variants) {
      for (const scenario of [...new Set(all.map((m) => m.scenario))]) {
        const ms = all.filter((m) => m.variant === v && m.scenario === scenario);
        const c = ms.map((m) => m.catchUpMs);
        say(`  ${v.padEnd(20)} ${scenario.padEnd(20)} restorable after ${seconds(median(c))} (${seconds(Math.min(...c))}–${seconds(Math.max(...c))}), ` +
          `write ${seconds(median(ms.map((m) => m.writeMs)))}, restore ${seconds(median(ms.map((m) => m.restoreMs)))}, ${median(ms.map((m) => m.uploadedMiB)).toFixed(0)} MiB uploaded`);
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
