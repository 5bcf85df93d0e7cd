/**
 * Disaster recovery. Every restore lands in a scratch file first and is checked (PRAGMA integrity_check,
 * row counts beside the live database's) before anything replaces the live database; the live database
 * and its -wal/-shm are moved aside, never deleted, and the exact undo command is printed.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { $ } from "zx";
import { APP_TABLES_QUERY, LAYOUT } from "../../cloud-init/layout.ts";
import { templateValues } from "../../cloud-init/server-files.ts";
import { renderTemplate } from "../../cloud-init/template.ts";
import { confirm, Later, Plan, say, stepLine } from "./cli.ts";
import { errors, OpsError } from "./errors.ts";
import { lockStep } from "./deploy-lock.ts";
import { inspectStep } from "./deploy-run.ts";
import { describeSource, type RestoreSource, type ServerPaths, SERVER } from "./server-steps.ts";
import * as steps from "./server-steps.ts";
import { formatBytes, withProgress } from "./progress.ts";
import { keyValues, type Runner, slotPorts } from "./state.ts";
import type { Target } from "./target.ts";
import { REPO_ROOT } from "./target.ts";

// The --timestamp format check lives with the flag checks (cli.ts); test/scripts/builders.test.ts imports it from here.
export { checkTimestamp } from "./cli.ts";

export interface Checked {
  readonly scratch: string;
  readonly integrity: string;
  /** table → [restored rows, live rows] (undefined when the table is absent on that side). */
  readonly tables: ReadonlyMap<string, { restored?: number; live?: number }>;
}

/** Parses restoreToScratch's stdout. */
export function parseChecked(stdout: string): Checked {
  const kv = keyValues(stdout);
  const tables = new Map<string, { restored?: number; live?: number }>();
  for (const line of stdout.split("\n")) {
    const [tag, side, table, rows] = line.split("\t");
    if (tag !== "count" || !table) continue;
    const entry = tables.get(table) ?? {};
    tables.set(table, { ...entry, [side]: Number(rows) });
  }
  return { scratch: kv.get("scratch") ?? "", integrity: kv.get("integrity") ?? "", tables };
}

/** The restored copy's row counts beside the live database's, as a small table. */
export function formatCounts(checked: Checked): string {
  const rows = [...checked.tables].map(([name, c]) => {
    const delta = c.restored !== undefined && c.live !== undefined ? c.restored - c.live : undefined;
    return [name, String(c.restored ?? "—"), String(c.live ?? "—"), delta === undefined ? "" : delta === 0 ? "=" : delta > 0 ? `+${delta}` : String(delta)];
  });
  const all = [["table", "restored", "live", "diff"], ...rows];
  const widths = all[0].map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => "  " + r.map((c, i) => c.padEnd(widths[i])).join("  ")).join("\n");
}

/** Summarises `litestream generations/snapshots/wal` output: the time range a point-in-time restore can reach. */
export function summarizeListing(text: string): string {
  /** Rows of a section; Litestream's tables have a header line, the fallback list has none. */
  const section = (name: string, header = true) => {
    const match = new RegExp(`== ${name}\\n([\\s\\S]*?)(?=\\n== |$)`).exec(text);
    return (match?.[1] ?? "").trim().split("\n").slice(header ? 1 : 0).filter(Boolean).map((l) => l.trim().split(/\s+/));
  };
  const snapshots = section("snapshots").map((cols) => cols[4]).filter(Boolean).sort();
  const ends = section("generations").map((cols) => cols[4]).filter(Boolean).sort();
  const fallback = section("fallback", false);
  if (snapshots.length === 0) return "the replica holds no snapshot: nothing can be restored from S3";
  return `point-in-time restores reach from ${snapshots[0]} to ${ends[ends.length - 1] ?? snapshots[snapshots.length - 1]} (UTC); ${fallback.length} fallback copies on the volume`;
}

export async function listRemote(runner: Runner, paths: ServerPaths = SERVER): Promise<string> {
  stepLine("list the backups");
  const result = await runner.run(steps.listBackups(paths), { allowFailure: true });
  if (result.exitCode === 3) throw unreachable(result.stderr, "the server");
  if (result.exitCode !== 0) throw new OpsError(`listing the backups failed: ${result.stderr.trim()}`, "see the lines above");
  return result.stdout;
}

function unreachable(stderr: string, where: string): OpsError {
  const line = stderr.trim().split("\n").filter((l) => /ERROR|error/.test(l)).pop() ?? stderr.trim().split("\n").pop() ?? "";
  if (/NoSuchBucket/.test(stderr)) return new OpsError(`the bucket does not exist (seen from ${where}): ${line}`, "check the bucket name in the outputs / client file, and the region");
  if (/AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|Forbidden/.test(stderr)) {
    return new OpsError(`S3 refused the credentials (seen from ${where}): ${line}`, "check the key pair (access_key_id/secret_access_key outputs; on the server /etc/kit/s3.env)");
  }
  if (/no matching backups|no snapshots available|no generation/.test(stderr)) {
    return new OpsError(`the replica holds no backup to restore (seen from ${where}): ${line}`, "list what exists: restore.ts <stack> --list; or use --from-fallback");
  }
  return new OpsError(`cannot read the backups (seen from ${where}): ${line}`, "check the network to S3 and the credentials; if S3 is down, restore the newest fallback copy: --from-fallback");
}

export interface RestoreOptions {
  readonly target: Target;
  readonly runner: Runner;
  readonly from: RestoreSource;
  readonly yes?: boolean;
  readonly dryRun?: boolean;
  readonly healthSeconds?: number;
  readonly paths?: ServerPaths;
}

export interface RestoreResult {
  readonly replaced: boolean;
  readonly aside?: string;
  readonly checked: Checked;
}

/**
 * Restores on the server: scratch, checks, confirmation, swap, health check, undo instructions. The plan is
 * known before anything runs; a dry run inspects the server and prints it (no lock, no scratch restore).
 */
export async function restoreRemote(o: RestoreOptions): Promise<RestoreResult> {
  const { runner, target } = o;
  const paths = o.paths ?? SERVER;
  const env = target.env;
  const plan = new Plan(`plan for ${env.stackName} on ${runner.destination}: restore from ${describeSource(o.from)}`, Boolean(o.dryRun));
  const state = await inspectStep(plan, runner, env.app.port, paths);
  plan.add(lockStep(runner, `restore from ${describeSource(o.from)}`, paths));
  const scratch = new Later(`the restored copy from step ${plan.next}`);
  let checked: Checked = { scratch: scratch.text, integrity: "", tables: new Map() };
  let replaced = false;
  let aside: string | undefined;
  const scratchStep = steps.restoreToScratch(o.from, paths);
  plan.add({
    title: `${scratchStep.title}, check it (PRAGMA integrity_check, row counts beside live)`,
    run: async () => {
      const result = await runner.run(scratchStep, { allowFailure: true });
      if (result.exitCode === 4) throw unreachable(result.stderr, runner.destination);
      if (result.exitCode !== 0) throw new OpsError(`restoring into scratch failed (exit ${result.exitCode}): ${result.stderr.trim().split("\n").slice(-3).join(" ")}`, "nothing was changed; see the lines above");
      checked = parseChecked(result.stdout);
      say(`\nrestored copy: ${checked.scratch}\nintegrity:     ${checked.integrity}\n${formatCounts(checked)}\n`);
      if (checked.integrity !== "ok") {
        throw new OpsError(
          `the restored copy fails PRAGMA integrity_check (${checked.integrity}); refusing to put it in place. Nothing was changed.`,
          `the copy is kept for inspection at ${checked.scratch}. Try an earlier --timestamp, or --from-fallback.`,
        );
      }
      scratch.set(checked.scratch);
    },
    // Once the copy passed its checks it is not needed after the plan: put in place (moved), or declined.
    cleanup: { title: steps.removeScratch(scratch.text, paths).title, run: () => runner.run(steps.removeScratch(scratch.text, paths), { onProgress: () => undefined }).then(() => undefined, () => undefined) },
  });
  plan.add({
    title: o.yes ? "replace the live database (--yes: without asking)" : "ask before replacing the live database",
    run: async () => {
      if (await confirm(`Replace the live database of ${env.stackName} with ${describeSource(o.from)}? The current one is moved aside, not deleted.`, Boolean(o.yes))) return;
      say("nothing was changed.");
      return "stop";
    },
  });
  const swap = () => steps.replaceDatabase(scratch.text, "before-restore", "move", state.activePort, slotPorts(env.app.port), o.healthSeconds ?? 60, paths);
  plan.add({
    title: swap().title,
    run: async () => {
      try {
        aside = keyValues((await runner.run(swap())).stdout).get("aside");
        replaced = true;
      } catch (error) {
        throw new OpsError(
          `replacing the database failed: ${(error as Error).message}`,
          `the previous database is in ${LAYOUT.asideDir}/before-restore-<stamp>/ on the server (see the lines above); to put it back: npx zx scripts/restore.ts ${env.stackName} --from-file ${LAYOUT.asideDir}/before-restore-<stamp>/app.sqlite3`,
        );
      }
    },
  });
  await plan.execute();
  if (replaced) {
    say(`✓ ${env.stackName} now runs on ${describeSource(o.from)}.`);
    say(`  the previous database (with its -wal/-shm) is kept in ${aside}`);
    say(`  to undo: npx zx scripts/restore.ts ${env.stackName} --from-file ${aside}/${LAYOUT.dbFile.split("/").pop()} --yes`);
  }
  return { replaced, aside, checked };
}

/** The litestream binary for local restores: --litestream, else the one this repo's npm install ships, else PATH. */
export function localLitestream(explicit?: string): string {
  if (explicit) return explicit;
  const shipped = join(REPO_ROOT, "node_modules", "@flydotio", "litestream-linux-x64", "litestream");
  return existsSync(shipped) ? shipped : "litestream";
}

/** Runs a litestream command on this machine against the environment's replica (a temp config, keys in the environment only). */
async function withLocalConfig<T>(target: Target, body: (config: string, placeholder: string, env: NodeJS.ProcessEnv) => Promise<T>): Promise<T> {
  if (!target.credentials) throw errors.noCredentials(target.env.stackName, target.outputsFile);
  const dir = mkdtempSync(join(tmpdir(), "kit-restore-"));
  const placeholder = join(dir, "replica-of-" + target.env.stackName + ".sqlite3");
  const values = templateValues(target.env, {
    volumeDevice: "",
    bucket: target.bucket,
    region: target.region,
    s3Endpoint: target.s3Endpoint,
    s3Credentials: { accessKeyId: "", secretAccessKey: "" },
    appSecrets: {},
  });
  const config = join(dir, "litestream.yml");
  writeFileSync(config, renderTemplate("config/litestream.yml", { ...values, dbFile: placeholder, litestreamPrefix: target.replicaPath }));
  const env = {
    ...process.env,
    LITESTREAM_ACCESS_KEY_ID: target.credentials.accessKeyId,
    LITESTREAM_SECRET_ACCESS_KEY: target.credentials.secretAccessKey.reveal(),
    AWS_ACCESS_KEY_ID: target.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: target.credentials.secretAccessKey.reveal(),
  };
  try {
    return await body(config, placeholder, env);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function listLocal(target: Target, litestream?: string): Promise<string> {
  return withLocalConfig(target, async (config, placeholder, env) => {
    let text = "";
    for (const what of ["generations", "snapshots", "wal"]) {
      const r = await $({ env, quiet: true, nothrow: true })`${localLitestream(litestream)} ${what} -config ${config} ${placeholder}`;
      // Litestream logs errors on stdout, and its listings exit 0 even when S3 cannot be read.
      if (r.exitCode !== 0 || /level=ERROR/.test(r.stdout + r.stderr)) throw unreachable(r.stdout + r.stderr, "this machine");
      text += `== ${what}\n${r.stdout}`;
    }
    return text;
  });
}

/** The message of a Litestream log line ("restoring wal files"), in either of the formats 0.3.13 logs. */
function litestreamMessage(line: string): string | undefined {
  const logfmt = /\bmsg=(?:"([^"]*)"|(\S+))/.exec(line);
  if (logfmt) return logfmt[1] ?? logfmt[2];
  return /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d [A-Z]+ (.*?)(?= [\w-]+=|$)/.exec(line)?.[1];
}

/** Bytes of the restore so far: Litestream writes the snapshot to FILE.tmp and WAL files beside it, then renames. */
function restoredBytes(out: string): number {
  const dir = dirname(out);
  const name = basename(out);
  let bytes = 0;
  for (const entry of readdirSync(dir)) {
    if ((entry === name || entry.startsWith(`${name}.tmp`)) && !entry.endsWith("-shm")) bytes += statSync(join(dir, entry), { throwIfNoEntry: false })?.size ?? 0;
  }
  return bytes;
}

/** `litestream restore`, its log lines read as they come (the step it is at), asynchronously so progress can tick. */
function litestreamRestore(binary: string, args: readonly string[], env: NodeJS.ProcessEnv, onStep: (message: string) => void): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let partial = "";
    const read = (chunk: Buffer) => {
      output += chunk;
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        const message = litestreamMessage(line);
        if (message) onStep(message);
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.once("error", (error) => reject(new OpsError(`cannot run ${binary}: ${error.message}`, "pass the litestream binary with --litestream PATH, or run npm install")));
    child.once("close", (code) => resolve({ code, output }));
  });
}

/** Rows per app table of a restored copy. */
async function countRows(file: string): Promise<Map<string, { restored?: number }>> {
  const names = (await $({ quiet: true })`sqlite3 -readonly ${file} ${APP_TABLES_QUERY}`).stdout.split("\n").filter(Boolean);
  const counted = new Map<string, { restored?: number }>();
  for (const name of names) counted.set(name, { restored: Number((await $({ quiet: true })`sqlite3 -readonly ${file} ${`SELECT count(*) FROM ${name}`}`).stdout.trim()) });
  return counted;
}

/**
 * `--local FILE`: restores the replica onto this machine (for inspection), checks it, never touches the
 * server. Two steps, each with its progress on stderr (a 1 GiB restore takes a while).
 */
export async function restoreLocal(target: Target, out: string, timestamp?: string, litestream?: string): Promise<Checked> {
  if (existsSync(out)) throw new OpsError(`${out} already exists`, "choose a new file name (restores never overwrite)");
  return withLocalConfig(target, async (config, placeholder, env) => {
    const at = timestamp ? ["-timestamp", timestamp] : [];
    let step = "starting";
    await withProgress(
      `1/2 restore s3://${target.bucket}/${target.replicaPath}${timestamp ? ` as of ${timestamp}` : " (latest)"} into ${out}`,
      async () => {
        const r = await litestreamRestore(localLitestream(litestream), ["restore", "-config", config, "-o", out, ...at, placeholder], env, (message) => (step = message));
        if (r.code !== 0) throw unreachable(r.output, "this machine");
      },
      () => formatBytes(statSync(out).size),
      { status: () => `${formatBytes(restoredBytes(out))} written (${step})` },
    );
    // The integrity check and the counts both read the whole copy: at once, on two cores.
    const [integrity, tables] = await withProgress(
      `2/2 check the copy (${formatBytes(statSync(out).size)}): PRAGMA integrity_check and row counts per table, at once`,
      () => Promise.all([
        $({ quiet: true, nothrow: true })`sqlite3 -readonly ${out} ${"PRAGMA integrity_check"}`.then((r) => r.stdout.trim().split("\n").slice(0, 5).join(" ")),
        // A copy that cannot be counted is said below, after what the integrity check found.
        countRows(out).catch((error: Error) => error),
      ]),
      ([result, counted]) => `integrity ${result}, ${counted instanceof Error ? "rows not counted" : `${counted.size} table${counted.size === 1 ? "" : "s"} counted`}`,
    );
    if (integrity !== "ok") throw new OpsError(`the restored copy fails PRAGMA integrity_check (${integrity})`, `it is kept at ${out} for inspection; try an earlier --timestamp`);
    if (tables instanceof Error) throw new OpsError(`counting the rows of the restored copy failed: ${tables.message.trim().split("\n").slice(-2).join(" ")}`, `it is kept at ${out} for inspection`);
    const checked: Checked = { scratch: out, integrity, tables };
    say(`\nrestored copy: ${out}\nintegrity:     ${integrity}\n${formatCounts(checked)}\n`);
    return checked;
  });
}
