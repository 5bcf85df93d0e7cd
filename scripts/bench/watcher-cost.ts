/**
 * The watcher's cost (not a test): what one run of cloud-init/watch/watch.sh costs, as kit-watch.timer
 * runs it every minute. Budget (issue 12): ≤ 1 % of one core and ≤ 30 MiB on the smallest server.
 *
 *   npm run bench:watcher [-- --runs 30 --every 5 --db-mib 300 --hourly-every 10]
 *
 * The real script (rendered as a server gets it) against a `--db-mib` database replicating with Litestream
 * 0.3.13 to the lab S3 child process (TLS, SigV4, the environment's least-privilege key), the fixture app
 * (test/fixtures/app, by the repo's Deno, as app@.service runs it) on that database answering the health
 * path, and a loopback server receiving the dead-man pings. One run every `--every` seconds (the minute's
 * cadence compressed: nothing in a run depends on the time since the last one but the hourly block, which
 * is forced every `--hourly-every`-th run). Per run:
 *   - CPU: user + sys of the whole process tree (getrusage of the waited-for children, via /usr/bin/time);
 *   - wall time (most of it is the wait for the heartbeat to reach the bucket);
 *   - memory of the tree, each the peak of the sum over its live processes, sampled from
 *     /proc/<pid>/smaps_rollup every 5 ms: RSS; PSS (each shared page split among the processes mapping
 *     it); USS (Private_Clean + Private_Dirty: the pages no other process maps, what the server gets back
 *     when the run ends — the marginal cost, and what the budget is judged on: the heartbeat's Deno shares
 *     the deno binary's pages with the app's Deno); and the largest single process's RSS (exact, getrusage);
 * and the share of one core at the 60 s period: CPU / 60 s, hourly runs amortized over their hour.
 * systemctl is test/support/systemctl-stand-in.sh (bash + sed; no systemd here): on a server it is the real
 * binary asking systemd over D-Bus, of a similar cost per call.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../../lab/environments.ts";
import { DENO, localEnvironments, labAccess } from "../../lab/local/local-kit.ts";
import { freePort } from "../../lab/local/sshd.ts";
import { startWatchKit, type WatchKit } from "../../lab/local/watch-kit.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";
import { integerFlag, main, parseArgs, scriptArgs, say } from "../lib/cli.ts";
import { OpsError } from "../lib/errors.ts";
import { median, MiB, seedDatabase } from "./lab-replica.ts";

const TICKS = 100; // USER_HZ: /proc's CPU times are in 1/100 s on Linux
const PERIOD_S = 60; // kit-watch.timer's period on servers
const BUDGET = { corePercent: 1, mib: 30 };

interface Measured {
  readonly hourly: boolean;
  readonly cpuMs: number;
  readonly wallMs: number;
  readonly treeRssMiB: number;
  readonly treePssMiB: number;
  readonly treeUssMiB: number;
  readonly largestRssMiB: number;
  readonly processes: number;
  readonly state: string;
}

/** Every descendant of `pid` (all threads' children), read from /proc; gone processes are skipped. */
function descendants(pid: number): number[] {
  const found: number[] = [];
  const walk = (p: number) => {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const t of tasks) {
      let text = "";
      try {
        text = readFileSync(`/proc/${p}/task/${t}/children`, "utf8");
      } catch {
        continue;
      }
      for (const c of text.split(" ").filter(Boolean).map(Number)) {
        found.push(c);
        walk(c);
      }
    }
  };
  walk(pid);
  return found;
}

interface Memory {
  rss: number;
  pss: number;
  uss: number;
}
/** A process's RSS, PSS and USS in bytes (/proc/<pid>/smaps_rollup; 0 for a process already gone). */
const memoryOf = (pid: number): Memory => {
  let text = "";
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  } catch {
    return { rss: 0, pss: 0, uss: 0 };
  }
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
  return { rss: kib("Rss"), pss: kib("Pss"), uss: kib("Private_Clean") + kib("Private_Dirty") };
};

/** user + sys of a process so far, in ms (/proc/<pid>/stat fields 14 and 15). */
const cpuOf = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
};

/** One run of watch.sh under /usr/bin/time, its tree sampled while it runs. */
function measureRun(w: WatchKit, timeFile: string, hourly: boolean): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn("/usr/bin/time", ["-f", "%U %S %M", "-o", timeFile, w.script], { env: w.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const peak: Memory = { rss: 0, pss: 0, uss: 0 };
    const seen = new Set<number>();
    const sample = () => {
      if (!child.pid) return;
      // The tree below /usr/bin/time: the watcher and what it spawned (time's own few KiB not counted).
      const tree = descendants(child.pid);
      for (const p of tree) seen.add(p);
      const sum: Memory = { rss: 0, pss: 0, uss: 0 };
      for (const m of tree.map(memoryOf)) for (const k of ["rss", "pss", "uss"] as const) sum[k] += m[k];
      for (const k of ["rss", "pss", "uss"] as const) peak[k] = Math.max(peak[k], sum[k]);
    };
    const timer = setInterval(sample, 5);
    child.once("error", reject);
    child.once("close", (code) => {
      clearInterval(timer);
      const wallMs = performance.now() - started;
      if (code !== 0) return reject(new Error(`watch.sh exited ${code}: ${(stderr || stdout).trim().slice(-2000)}`));
      const [user, sys, maxKiB] = readFileSync(timeFile, "utf8").trim().split("\n").at(-1)!.split(" ").map(Number);
      const state = /^kit-watch: (\w+)/m.exec(stdout)?.[1] ?? "?";
      resolve({ hourly, cpuMs: (user + sys) * 1000, wallMs, treeRssMiB: peak.rss / MiB, treePssMiB: peak.pss / MiB, treeUssMiB: peak.uss / MiB, largestRssMiB: (maxKiB * 1024) / MiB, processes: seen.size, state });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The fixture app as app@.service runs it (`deno task start`, PORT, HOST, DATABASE_URL), until its health path answers. */
async function startApp(dbFile: string, port: number, healthPath: string): Promise<ChildProcess> {
  const env = { ...process.env, PORT: String(port), HOST: "127.0.0.1", DATABASE_URL: dbFile, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
  const child = spawn(DENO, ["task", "start"], { cwd: join(REPO_ROOT, "test", "fixtures", "app"), env, stdio: ["ignore", "pipe", "pipe"] });
  let said = "";
  child.stdout!.on("data", (d: Buffer) => (said += d));
  child.stderr!.on("data", (d: Buffer) => (said += d));
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}${healthPath}`).then((r) => r.ok, () => false);
    if (ok) return child;
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  child.kill("SIGKILL");
  throw new OpsError(`the fixture app did not answer ${healthPath} on 127.0.0.1:${port} within 10 s`, `it said:\n${said.slice(-2000)}`);
}

async function stopApp(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  // deno task and the app it runs (systemd stops the unit's whole cgroup the same way).
  for (const pid of descendants(child.pid!)) process.kill(pid, "SIGTERM");
  child.kill("SIGTERM");
  await exited;
}
/** The litestream process among this process's descendants (LocalKit's replicator). */
const litestreamPid = (): number | undefined =>
  descendants(process.pid).find((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, "utf8").trim() === "litestream";
    } catch {
      return false;
    }
  });
const range = (xs: readonly number[], digits: number, unit: string) =>
  `${median(xs).toFixed(digits)} ${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { string: ["runs", "every", "db-mib", "hourly-every"] });
  if (args.help) return void process.stdout.write("Usage: npm run bench:watcher [-- --runs 30 --every 5 --db-mib 300 --hourly-every 10]\n");
  const runs = integerFlag(args, "runs", 3, 1000) ?? 30;
  const every = integerFlag(args, "every", 2, 60) ?? 5;
  const dbMiB = integerFlag(args, "db-mib", 1, 4096) ?? 300;
  const hourlyEvery = integerFlag(args, "hourly-every", 2, 1000) ?? 10;
  const [env] = localEnvironments(["bench"]);

  let server: Server | undefined;
  let lab: LabS3Process | undefined;
  let w: WatchKit | undefined;
  let app: ChildProcess | undefined;
  const work = mkdtempSync(join(tmpdir(), "bench-watcher-"));
  try {
    let pings = 0;
    server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        pings++;
        res.end("OK");
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const appPort = await freePort();
    lab = await startKitLabS3Process([env]);
    // The health path is the app's own (no Caddy here): the watcher's curl reaches the fixture app directly.
    w = startWatchKit(labAccess(lab, env), env, { httpPort: appPort, alerts: { deadManUrl: `http://127.0.0.1:${port}/ping/bench` } });
    say(`seeding a ${dbMiB} MiB database …`);
    await seedDatabase(w.kit.dbFile, dbMiB);
    await w.kit.startReplication({ wait: false });
    app = await startApp(w.kit.dbFile, appPort, env.app.healthPath);
    const timeFile = join(work, "time");
    // Warm-up, not counted: until the first snapshot of the seed is up and a heartbeat comes back ok.
    const deadline = Date.now() + 300_000;
    for (;;) {
      const r = await measureRun(w, timeFile, false);
      const v = JSON.parse(readFileSync(join(w.aux, "watch/verdict.json"), "utf8")) as { checks: { replication: { state: string; value: string } } };
      if (v.checks.replication.state === "ok") break;
      if (Date.now() > deadline) throw new OpsError(`replication never became ok (last: ${v.checks.replication.value}, run state ${r.state})`, `see Litestream's output:\n${w.kit.replicatorOutput().slice(-2000)}`);
      await sleep(2000);
    }
    const lsPid = litestreamPid();
    say(`${dbMiB} MiB database, Litestream 0.3.13 → lab S3 child (TLS, SigV4, IAM); ${runs} runs, one every ${every} s, the hourly block every ${hourlyEvery}th`);

    const lsBefore = lsPid ? cpuOf(lsPid) : 0;
    const benchStart = performance.now();
    const all: Measured[] = [];
    for (let i = 0; i < runs; i++) {
      const hourly = i % hourlyEvery === 0;
      // The state's `slow` stamp is when the hourly block last ran: 0 forces it.
      const stateFile = join(w.aux, "watch/state");
      if (hourly) writeFileSync(stateFile, readFileSync(stateFile, "utf8").replace(/^slow=.*$/m, "slow=0"));
      const t0 = performance.now();
      const m = await measureRun(w, timeFile, hourly);
      all.push(m);
      say(`  run ${String(i + 1).padStart(3)}${hourly ? " (hourly)" : "         "}: cpu ${m.cpuMs.toFixed(0).padStart(4)} ms, wall ${(m.wallMs / 1000).toFixed(2)} s, ` +
        `tree RSS ${m.treeRssMiB.toFixed(1)} / PSS ${m.treePssMiB.toFixed(1)} / USS ${m.treeUssMiB.toFixed(1)} MiB (largest process ${m.largestRssMiB.toFixed(1)}), ${m.processes} processes, ${m.state}`);
      await sleep(Math.max(0, every * 1000 - (performance.now() - t0)));
    }
    const benchS = (performance.now() - benchStart) / 1000;
    const lsMs = lsPid ? cpuOf(lsPid) - lsBefore : Number.NaN;

    const minute = all.filter((m) => !m.hourly);
    const hourly = all.filter((m) => m.hourly);
    const cpuMinute = median(minute.map((m) => m.cpuMs));
    const cpuHourly = median(hourly.map((m) => m.cpuMs));
    // An hour of the timer: 59 plain runs and one with the hourly block, over 60 periods.
    const share = ((59 * cpuMinute + cpuHourly) / (60 * PERIOD_S * 1000)) * 100;
    const peakUss = Math.max(...all.map((m) => m.treeUssMiB));
    const appMemory = descendants(app.pid!).concat(app.pid!).map(memoryOf).reduce((a, m) => ({ rss: a.rss + m.rss, pss: a.pss + m.pss, uss: a.uss + m.uss }), { rss: 0, pss: 0, uss: 0 });
    say(`\n${runs} runs (${minute.length} plain, ${hourly.length} hourly), medians (ranges):`);
    say(`  cpu, plain run    ${range(minute.map((m) => m.cpuMs), 0, "ms")}`);
    say(`  cpu, hourly run   ${range(hourly.map((m) => m.cpuMs), 0, "ms")}`);
    say(`  wall              ${range(all.map((m) => m.wallMs / 1000), 2, "s")}`);
    say(`  tree RSS peak     ${range(all.map((m) => m.treeRssMiB), 1, "MiB")}; largest single process ${range(all.map((m) => m.largestRssMiB), 1, "MiB")}`);
    say(`  tree PSS peak     ${range(all.map((m) => m.treePssMiB), 1, "MiB")}`);
    say(`  tree USS peak     ${range(all.map((m) => m.treeUssMiB), 1, "MiB")} (the marginal cost: pages no other process maps)`);
    say(`  the app beside it (deno task start + its deno): RSS ${(appMemory.rss / MiB).toFixed(1)} / PSS ${(appMemory.pss / MiB).toFixed(1)} / USS ${(appMemory.uss / MiB).toFixed(1)} MiB between runs`);
    say(`  processes seen    ${range(all.map((m) => m.processes), 0, "a run")} (sampled: the shortest are missed)`);
    say(`  share of one core at the ${PERIOD_S} s period: ${share.toFixed(3)} % (plain runs ${((cpuMinute / (PERIOD_S * 1000)) * 100).toFixed(3)} %); budget ${BUDGET.corePercent} %`);
    say(`  memory: tree USS peak ${peakUss.toFixed(1)} MiB; budget ${BUDGET.mib} MiB`);
    if (lsPid) say(`  Litestream meanwhile: ${lsMs.toFixed(0)} ms CPU over ${benchS.toFixed(0)} s (${((lsMs / benchS / 1000) * 100).toFixed(2)} % of a core, its own 1 s monitor loop included)`);
    say(`  dead-man pings received: ${pings}`);
    const over = share > BUDGET.corePercent || peakUss > BUDGET.mib;
    say(over ? "OVER BUDGET" : "within budget");
    return over ? 1 : 0;
  } finally {
    await stopApp(app);
    await w?.cleanup();
    await lab?.stop();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    rmSync(work, { recursive: true, force: true });
  }
});
