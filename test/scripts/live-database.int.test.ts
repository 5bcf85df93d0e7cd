/**
 * Which SQLite touches the live database, step by step (issue 13 point 7: SQLite's WAL-reset bug, versions
 * 3.7.0–3.51.2; Debian 12's sqlite3 is 3.40.1). Every kit step that opens the live file runs here as a server
 * runs it — the rendered server scripts and the deploy/restore steps' bash, against real sqlite3, Litestream
 * 0.3.13 replicating to the lab S3 — with a logging `sqlite3` ahead of the real one on PATH and a logging
 * `deno` in place of the kit's: each step's calls on the live file are read-only sqlite3 (`-readonly`: it can
 * neither write nor checkpoint, also not when it closes) or kit-sql.js by Deno (SQLite ≥ 3.51.3).
 * The first-boot bootstrap's pre-migration snapshot cannot run here (it is the bootstrap's step 6, under
 * systemd): the last test reads every sqlite3 call in the server scripts and the steps as text.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { REPO_ROOT } from "../../lab/environments.ts";
import { DENO, labAccess, localEnvironments, type LocalKit } from "../../lab/local/local-kit.ts";
import { LocalRunner } from "../../lab/local/local-runner.ts";
import { startWatchKit, type WatchKit } from "../../lab/local/watch-kit.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";
import * as steps from "../../scripts/lib/server-steps.ts";

const [env] = localEnvironments(["livedb"]);
let lab: LabS3Process;
let server: Server;
let w: WatchKit;
let kit: LocalKit;
let runner: LocalRunner;
let paths: steps.ServerPaths;
let log: string;

/** One logged call: which program, as which user, with which arguments. */
interface Call {
  readonly program: "sqlite3" | "deno";
  readonly user: string;
  readonly args: string[];
}

beforeAll(async () => {
  lab = await startKitLabS3Process([env]);
  server = createServer((_, res) => res.end("OK")); // "Caddy" in front of a healthy app
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  w = startWatchKit(labAccess(lab, env), env, { httpPort: (server.address() as { port: number }).port });
  kit = w.kit;
  kit.sql(kit.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO rows(body) VALUES ('a'),('b'),('c');");
  await kit.startReplication();
  paths = { kitEnvFile: kit.kitEnvFile, libDir: kit.path("libDir"), caddyfile: join(kit.root, "Caddyfile"), deployLock: join(kit.root, "run", "deploy.lock") };
  runner = new LocalRunner(kit.env);
  // The loggers: one line per call (program, user, then each argument on its own line; a blank line ends it).
  const shims = join(kit.root, "shims");
  log = join(kit.root, "calls");
  const logger = (program: string, real: string) =>
    `#!/bin/bash\n{ printf '%s\\n' ${program} "$(id -un)" "$@"; echo; } >>${log}\nexec ${real} "$@"\n`;
  execFileSync("mkdir", ["-p", shims]);
  const realSqlite = execFileSync("bash", ["-c", "command -v sqlite3"], { encoding: "utf8" }).trim();
  writeFileSync(join(shims, "sqlite3"), logger("sqlite3", realSqlite), { mode: 0o755 });
  kit.env.PATH = `${shims}:${kit.env.PATH}`;
  // kit.env puts the kit's bin/ (deno) first: the logging deno replaces its link there.
  rmSync(join(kit.root, "bin", "deno"));
  writeFileSync(join(kit.root, "bin", "deno"), logger("deno", DENO), { mode: 0o755 });
}, 60_000);

afterAll(async () => {
  await w?.cleanup();
  await lab?.stop();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
});

/** Runs `what` with an empty log and returns the calls that named the live database. */
async function callsOnLive(what: () => Promise<unknown>): Promise<Call[]> {
  writeFileSync(log, "");
  await what();
  return readFileSync(log, "utf8")
    .split("\n\n")
    .filter(Boolean)
    .map((block) => {
      const [program, user, ...args] = block.split("\n");
      return { program: program as Call["program"], user, args };
    })
    .filter((call) => call.args.includes(kit.dbFile));
}

/** What a step may do to the live file: sqlite3 only with -readonly (before the file), writes only by kit-sql.js. */
function unsafe(calls: readonly Call[]): Call[] {
  return calls.filter((call) => {
    if (call.program === "deno") return !call.args.some((a) => a.endsWith("/kit-sql.js"));
    const db = call.args.indexOf(kit.dbFile);
    return !call.args.slice(0, db).includes("-readonly");
  });
}

const show = (name: string, calls: readonly Call[]) =>
  console.log(`${name}: ${calls.length} call(s) on the live file\n${calls.map((c) => `  ${c.program} (${c.user}) ${c.args.map((a) => (a.includes(" ") ? JSON.stringify(a) : a)).join(" ").slice(0, 160)}`).join("\n")}`);

const script = async (name: string) => {
  const run = await kit.script(name);
  if (run.status !== 0) throw new Error(`${name} exited ${run.status}: ${run.stderr || run.stdout}`);
  return run;
};

test("fallback-backup.sh copies the live file with a read-only sqlite3 .backup", async () => {
  const calls = await callsOnLive(() => script("fallback-backup.sh"));
  show("fallback-backup.sh", calls);
  expect(calls.map((c) => [c.program, c.args.at(-1)])).toEqual([["sqlite3", expect.stringMatching(/^\.backup '.*\/\.partial-\d{8}T\d{6}Z\.sqlite3'$/)]]);
  expect(unsafe(calls)).toEqual([]);
  expect(readdirSync(kit.path("backupDir")).filter((f) => f.endsWith(".sqlite3.gz"))).toHaveLength(1); // and it made its copy
});

test("restore-drill.sh: the sentinel by kit-sql.js, the live counts read-only", async () => {
  const calls = await callsOnLive(() => script("restore-drill.sh"));
  show("restore-drill.sh", calls);
  expect(calls.filter((c) => c.program === "deno")).toHaveLength(1);
  expect(calls.filter((c) => c.program === "sqlite3").length).toBeGreaterThan(0);
  expect(unsafe(calls)).toEqual([]);
});

test("watch.sh: the heartbeat by kit-sql.js, no sqlite3 on the live file", async () => {
  const before = Math.floor(Date.now() / 1000);
  const calls = await callsOnLive(
    () =>
      new Promise<void>((resolve, reject) => {
        const child = spawn(w.script, [], { env: w.env, stdio: "ignore" });
        child.once("error", reject);
        child.once("close", () => resolve());
      }),
  );
  show("watch.sh", calls);
  expect(calls.map((c) => c.program)).toEqual(["deno"]);
  expect(unsafe(calls)).toEqual([]);
  const verdict = JSON.parse(readFileSync(join(w.aux, "watch/verdict.json"), "utf8"));
  expect(verdict.checks.replication).toMatchObject({ state: "ok" }); // the heartbeat was written and reached the bucket
  expect(Number(kit.sql(kit.dbFile, "SELECT at FROM _kit_watch"))).toBeGreaterThanOrEqual(before);
}, 60_000);

test("deploy's pre-migration snapshot and schema version, restore's scratch counts and its copy from a file: read-only sqlite3 as the app user", async () => {
  const snapshot = await callsOnLive(() => runner.run(steps.snapshot("pre-deploy", paths), { onProgress: () => undefined }));
  const version = await callsOnLive(() => runner.run(steps.schemaVersion(paths)));
  let scratch = "";
  const fromReplica = await callsOnLive(async () => {
    scratch = (await runner.run(steps.restoreToScratch({ kind: "replica" }, paths))).stdout;
  });
  const copy = readdirSync(kit.path("asideDir")).find((f) => f.startsWith("pre-deploy-") && f.endsWith(".sqlite3"))!;
  const fromFile = await callsOnLive(() => runner.run(steps.restoreToScratch({ kind: "file", path: join(kit.path("asideDir"), copy) }, paths)));
  for (const [name, calls] of Object.entries({ snapshot, version, fromReplica, fromFile })) show(name, calls);
  expect(snapshot.map((c) => c.args.at(-1))).toEqual([expect.stringMatching(/^\.backup '.*\/pre-deploy-\d{8}T\d{6}Z\.sqlite3'$/)]);
  expect(version).toHaveLength(1);
  expect(fromReplica.length).toBeGreaterThanOrEqual(2); // the live table list and one count per table
  expect(scratch).toMatch(/^count\tlive\trows\t3$/m);
  expect(fromFile.length).toBeGreaterThanOrEqual(2);
  const all = [...snapshot, ...version, ...fromReplica, ...fromFile];
  expect(unsafe(all)).toEqual([]);
  expect(new Set(all.map((c) => c.user))).toEqual(new Set([String(kit.values.appUser)]));
}, 60_000);

test("the fixed SQLite is what kit-sql.js runs (≥ 3.51.3)", () => {
  const version = spawnSync(join(kit.path("libDir"), "kit-sql.js"), ["--version"], { encoding: "utf8", env: kit.env });
  expect(version.stderr).toBe("");
  const [major, minor, patch] = version.stdout.trim().split(".").map(Number);
  console.log(`kit-sql.js --version: ${version.stdout.trim()}; sqlite3 --version: ${execFileSync("sqlite3", ["--version"], { encoding: "utf8" }).split(" ")[0]}`);
  expect(major * 1e6 + minor * 1e3 + patch).toBeGreaterThanOrEqual(3_051_003);
});

test("as text: every sqlite3 call in the server scripts and the steps opens its database read-only, but for the named own-file ones", () => {
  // sqlite3 on a file nobody else has open (the fallback's fresh copy) may open it read-write: its close then
  // removes the -wal/-shm it made. restore-drill.sh's sql() passes its callers' flags: each caller says -readonly.
  const ownFile = new Set([`check=$(sqlite3 "$partial" 'PRAGMA integrity_check;')`, `sql() { sqlite3 -cmd '.timeout 5000' "$@"; }`]);
  const dirs = ["cloud-init/templates/scripts", "cloud-init/watch"];
  const texts = dirs.flatMap((d) => readdirSync(join(REPO_ROOT, d)).filter((f) => f.endsWith(".sh")).map((f) => [`${d}/${f}`, readFileSync(join(REPO_ROOT, d, f), "utf8")]));
  const builders = [steps.snapshot("pre-deploy"), steps.schemaVersion(), steps.restoreToScratch({ kind: "replica" }), steps.restoreToScratch({ kind: "fallback" }), steps.restoreToScratch({ kind: "file", path: "/mnt/data/aside/x.sqlite3" })];
  texts.push(...builders.map((s) => [`server-steps: ${s.title}`, s.script.text]));
  const found: string[] = [];
  const bad: string[] = [];
  for (const [where, text] of texts) {
    for (const line of text.split("\n")) {
      if (/^\s*#/.test(line) || !/(^|[\s(;|&])sqlite3 [-"$]/.test(line)) continue; // a command, not a comment or a name
      found.push(`${where}: ${line.trim()}`);
      if (ownFile.has(line.trim())) continue;
      for (const m of line.matchAll(/(?:^|[\s(;|&])sqlite3 ((?:-\S+(?: '[^']*')? )*)/g)) if (!m[1].includes("-readonly")) bad.push(`${where}: ${line.trim()}`);
    }
  }
  console.log(`${found.length} sqlite3 calls read:\n  ${found.join("\n  ")}`);
  expect(found.length).toBeGreaterThanOrEqual(8);
  expect(bad).toEqual([]);
});

test("as text: no script's TypeScript (scripts/, scripts/lib/) builds a read-write sqlite3 on the live database ($DB_FILE)", () => {
  const dirs = ["scripts", "scripts/lib"];
  const onLive: string[] = [];
  const bad: string[] = [];
  for (const d of dirs) {
    for (const f of readdirSync(join(REPO_ROOT, d)).filter((f) => f.endsWith(".ts"))) {
      for (const line of readFileSync(join(REPO_ROOT, d, f), "utf8").split("\n")) {
        if (/^\s*(\/\/|\*|\/\*)/.test(line) || !/sqlite3 [-"$]/.test(line) || !line.includes("DB_FILE")) continue;
        onLive.push(`${d}/${f}: ${line.trim()}`);
        for (const m of line.matchAll(/sqlite3 ((?:-\S+(?: '[^']*')? )*)/g)) if (!m[1].includes("-readonly")) bad.push(`${d}/${f}: ${line.trim()}`);
      }
    }
  }
  console.log(`${onLive.length} sqlite3 calls on $DB_FILE in the scripts' TypeScript:\n  ${onLive.join("\n  ")}`);
  // migrate-steps' reads at least; server-steps' calls go through readSqlite, read rendered by the test above.
  expect(onLive.length).toBeGreaterThanOrEqual(1);
  expect(bad).toEqual([]);
});
