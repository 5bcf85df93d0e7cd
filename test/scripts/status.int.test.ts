/**
 * The fleet view against a real sshd on loopback, with verdicts and history the real watch.sh wrote (run
 * with bash against sqlite3, Litestream 0.3.13 and the lab S3, by the watch kit test/watch.int.test.ts uses), beside a
 * server whose watcher went silent and one that cannot be reached; then the --html page as headless
 * Chromium (Debian's package) renders it, and scripts/status.ts as an operator runs it.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { WatchHistoryLine, WatchVerdict } from "../../cloud-init/watch-verdict.ts";
import { AGENCY } from "../../app/agency.ts";
import { loadClientsDir } from "../../app/config/load.ts";
import { REPO_ROOT } from "../../lab/environments.ts";
import { labAccess, localEnvironments } from "../../lab/local/local-kit.ts";
import { freePort, startSshd, type TestSshd } from "../../lab/local/sshd.ts";
import { startWatchKit, type WatchKit } from "../../lab/local/watch-kit.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";
import { SshRunner } from "../../scripts/lib/ssh.ts";
import { fleetStatus, type StatusPaths, type StatusReport, type StatusRow } from "../../scripts/lib/status.ts";
import { formatHtml, formatTable } from "../../scripts/lib/status-render.ts";
import { resolveTarget, type Target } from "../../scripts/lib/target.ts";

/** The stacks of the shipped client files (app/clients/*.ts), in the order the scripts list them. */
const SHIPPED_STACKS = loadClientsDir(AGENCY, join(REPO_ROOT, "app", "clients"), REPO_ROOT).map((e) => e.stackName);

const [good, silent, gone] = localEnvironments(["status", "stsilent", "stgone"]);
/** A release name as a compromised server could write it: the page must show it as text. */
const HOSTILE = `<img src=x onerror="document.title='owned'">&amp;`;
const DAY = 86_400_000;
/** How much older the silent server's three history lines are than the real ones: spread over its day. */
const SILENT_SHIFT_MS = [16 * 3_600_000 + 600_000, 8 * 3_600_000 + 600_000, 600_000];

let lab: LabS3Process;
let w: WatchKit;
let sshd: TestSshd;
let caddy: Server;
let dir: string;
const runners: SshRunner[] = [];
const at = (...parts: string[]) => join(dir, ...parts);
/** What each server's read step reads: the watch kit's files for `good`, a copy aged by 10 min for `silent`. */
const paths = new Map<string, StatusPaths>();
let report: StatusReport;
let verdict: WatchVerdict;
let history: WatchHistoryLine[];
let readSeconds = 0;

/** Runs watch.sh once as kit-watch.service does (exit 1 is a critical verdict, still a verdict). */
function watch(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(w.script, [], { env: w.env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("close", (status) => (status === 0 || status === 1 ? resolve() : reject(new Error(`watch.sh exited ${status}: ${stderr}`))));
  });
}

/** The outputs file cdktf writes, with the backup key's slot, id and creation date. */
function outputs(stack: string, keyId: string, created: Date): string {
  const file = at(`${stack}.json`);
  writeFileSync(file, JSON.stringify({ [stack]: { ipv4: "127.0.0.1", access_keys: [{ slot: "a", id: keyId, created: created.toISOString() }] } }));
  return file;
}

const target = (env: typeof good, port: number, outputsFile: string): Target =>
  resolveTarget(env, { outputs: outputsFile, host: "127.0.0.1", user: sshd.user, port, identity: sshd.identity, knownHosts: at("known_hosts") });
const row = (stack: string): StatusRow => report.environments.find((r) => r.stack === stack)!;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kit-status-"));
  mkdirSync(at("silent"));
  caddy = createServer((_, res) => res.end("ok"));
  await new Promise<void>((resolve) => caddy.listen(0, "127.0.0.1", resolve));
  [lab, sshd] = await Promise.all([startKitLabS3Process([good]), startSshd()]);
  w = startWatchKit(labAccess(lab, good), good, { httpPort: (caddy.address() as { port: number }).port });
  const { kit } = w;
  kit.sql(kit.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes(body) VALUES ('a');");
  // A drill report, as restore-drill.sh leaves it: the drill column shows its RPO/RTO.
  writeFileSync(join(kit.path("drillDir"), "latest.json"), `{"stack":"${good.stackName}","at":"20261201T040000Z","ok":true,"replica":"s3://b/p","sentinel":"drill-1","integrity":"ok","rpo_ms":812,"rto_ms":1400,"missing_tables":0,"tables":[]}\n`);
  await kit.startReplication();
  // Three runs, a second apart at least (checkedAt has whole seconds): three points on the chart.
  for (let i = 0; i < 3; i++) {
    await watch();
    await new Promise((r) => setTimeout(r, 1100));
  }
  verdict = JSON.parse(readFileSync(kit.path("watchVerdictFile"), "utf8")) as WatchVerdict;
  history = readFileSync(kit.path("watchHistoryFile"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as WatchHistoryLine);

  // The silent server: the same real verdict and history, older (as if its timer stopped 10 min ago), the
  // history spread over its day, its release name hostile (and a terminal escape in a check's value), its
  // Deno one patch behind the pin and its backup key 200 days old.
  const older = (iso: string, ms = 600_000) => new Date(Date.parse(iso) - ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  writeFileSync(
    at("silent/verdict.json"),
    `${JSON.stringify({ ...verdict, stack: silent.stackName, checkedAt: older(verdict.checkedAt), checks: { ...verdict.checks, updates: { state: "warn", value: "3 pending\u001b[2J" } }, facts: { ...verdict.facts, release: HOSTILE } })}\n`,
  );
  writeFileSync(at("silent/history.jsonl"), history.map((h, i) => `${JSON.stringify({ ...h, checkedAt: older(h.checkedAt, SILENT_SHIFT_MS[i]) })}\n`).join(""));
  writeFileSync(at("silent/deno"), "#!/bin/sh\necho 'deno 2.9.5'\n", { mode: 0o755 });
  writeFileSync(at("silent/s3.env"), "AWS_ACCESS_KEY_ID=AKIASILENTKEY0000001\nAWS_SECRET_ACCESS_KEY=never-read\n", { mode: 0o600 });
  const bin = String(kit.values.binDir);
  paths.set(good.stackName, { watchVerdictFile: kit.path("watchVerdictFile"), watchHistoryFile: kit.path("watchHistoryFile"), s3CredentialsFile: kit.path("s3CredentialsFile"), deno: join(bin, "deno"), litestream: join(bin, "litestream") });
  paths.set(silent.stackName, { watchVerdictFile: at("silent/verdict.json"), watchHistoryFile: at("silent/history.jsonl"), s3CredentialsFile: at("silent/s3.env"), deno: at("silent/deno"), litestream: join(bin, "litestream") });

  const targets = [
    target(good, sshd.port, outputs(good.stackName, kit.access.accessKeyId, new Date(Date.now() - 40 * DAY))),
    target(silent, sshd.port, outputs(silent.stackName, "AKIASILENTKEY0000001", new Date(Date.now() - 200 * DAY))),
    target(gone, await freePort(), at("none.json")), // nothing listens there
  ];
  const started = Date.now();
  report = await fleetStatus(
    targets.map((t) => ({ target: t })),
    {
      pathsFor: (t) => paths.get(t.env.stackName)!,
      runnerFor: (t) => {
        const runner = new SshRunner(t.ssh, { ...t.sshSettings, controlDir: at("ctl"), connectTimeoutSeconds: 5 });
        runners.push(runner);
        return runner;
      },
    },
  );
  readSeconds = (Date.now() - started) / 1000;
}, 120_000);

afterAll(async () => {
  await Promise.all(runners.map((r) => r.close()));
  await w?.cleanup();
  await lab?.stop();
  await sshd?.stop();
  await new Promise((resolve) => caddy?.close(resolve));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("fleetStatus over SSH", () => {
  test("a watched server: its row is the verdict watch.sh wrote, its day of history, the versions and the key's age", () => {
    const r = row(good.stackName);
    expect(r.verdict).toEqual(verdict);
    expect(r.error).toBeNull();
    expect(r.verdictAgeSeconds).toBeLessThan(30);
    // The machine's own disks and packages are what they are: health is the verdict's own state.
    expect(r.cells.health.state).toBe(verdict.state);
    expect(r.cells.release).toEqual({ state: "none", text: "20261203T100000Z-abc1234" });
    expect(r.cells.lag).toEqual({ state: "ok", text: `${verdict.facts.replicationLagSeconds} s` });
    expect(r.cells.drill).toEqual({ state: "ok", text: "2026-12-01 ok, 0.812 s/1.4 s" });
    expect(r.cells.deno).toEqual({ state: "ok", text: "2.9.6" });
    expect(r.cells.litestream).toEqual({ state: "ok", text: "0.3.13" });
    expect(r.cells.certificate).toEqual({ state: "none", text: verdict.checks.certificate.value });
    expect(r.cells.backupKey).toEqual({ state: "ok", text: "40 d (slot a)" });
    expect(r.cells.disk.text).toBe(`${verdict.facts.volumeUsedPercent}/${verdict.facts.rootUsedPercent}/${verdict.facts.inodesUsedPercent}`);
    expect(r.lagHistory).toEqual(history.map((h) => ({ checkedAt: h.checkedAt, replicationLagSeconds: h.replicationLagSeconds, state: h.state })));
    expect(r.lagHistory).toHaveLength(3);
  });

  test("a watcher silent for 10 min is red, naming since when; its old values still show; Deno off the pin and a 200-day key warn", () => {
    const r = row(silent.stackName);
    expect(r.state).toBe("critical");
    expect(r.verdictAgeSeconds).toBeGreaterThanOrEqual(600);
    expect(r.cells.health).toMatchObject({ state: "critical", text: expect.stringMatching(/^silent 1\d min$/) });
    expect(r.error).toMatch(new RegExp(`^watcher silent since ${r.checkedAt} \\(1\\d min ago\\)`));
    expect(r.cells.release.text).toBe(HOSTILE);
    expect(r.cells.deno).toMatchObject({ state: "warn", text: "2.9.5 ≠ 2.9.6" });
    expect(r.cells.backupKey).toMatchObject({ state: "warn", text: "200 d (slot a)", detail: expect.stringContaining("rotate it (scripts/rotate-keys.ts)") });
    expect(r.lagHistory).toHaveLength(3);
  });

  test("a server that cannot be reached is a red row naming the SSH error; the whole report is red; all three read within one server's 30 s timeout", () => {
    const r = row(gone.stackName);
    expect(r).toMatchObject({ state: "critical", verdict: null, lagHistory: [] });
    expect(r.cells.health).toMatchObject({ state: "critical", text: "unreachable" });
    expect(r.error).toMatch(/^cannot reach root@127\.0\.0\.1:\d+: ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused/);
    expect(report.red).toBe(true);
    expect(report.environments.map((e) => e.stack)).toEqual([good.stackName, silent.stackName, gone.stackName]);
    expect(readSeconds).toBeLessThan(30);
  });

  test("the table: one line per environment and a note per red or warn cell; color only when asked", () => {
    const plain = formatTable(report, false);
    expect(plain).not.toContain("\u001b[");
    const lines = plain.split("\n");
    expect(lines[0]).toMatch(/^environment +health +release +replication lag +last fallback +last drill \(RPO\/RTO\)/);
    const table = lines.slice(1, lines.indexOf(""));
    const mark = { ok: "", warn: "! ", critical: "✗ " }[row(good.stackName).state];
    expect(table.map((l) => /^(?:[!✗] )?\S+/.exec(l)?.[0])).toEqual([`${mark}${good.stackName}`, `✗ ${silent.stackName}`, `✗ ${gone.stackName}`]);
    // A terminal escape a server wrote is shown, not obeyed.
    expect(plain).toContain("3 pending?[2J");
    expect(plain).toContain(`✗ ${silent.stackName} health: watcher silent since`);
    expect(plain).toContain(`! ${silent.stackName} Deno: 2.9.5 installed, the kit pins 2.9.6`);
    expect(plain).toContain(`✗ ${gone.stackName} health: cannot reach`);
    expect(lines.at(-1)).toBe("2 of 3 environments red");
    const colored = formatTable(report, true);
    expect(colored).toContain("\u001b[31munreachable");
    expect(colored).toContain("\u001b[33m2.9.5 ≠ 2.9.6");
  });
});

describe("--html in headless Chromium", () => {
  let dom = "";
  let shot = "";
  beforeAll(() => {
    const page = at("status.html");
    writeFileSync(page, formatHtml(report));
    const chromium = (args: string[]) =>
      execFileSync("chromium", ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", `--user-data-dir=${at("chromium")}`, ...args, `file://${page}`], { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "ignore"] });
    dom = chromium(["--dump-dom"]);
    shot = at("status.png");
    chromium([`--screenshot=${shot}`, "--window-size=1800,480", "--hide-scrollbars"]);
  }, 120_000);

  /** The cells of a row in the DOM Chromium built: [column, class, text]. */
  const cells = (stack: string): [string, string, string][] => {
    const tr = new RegExp(`<tr data-stack="${stack}"[^>]*>([\\s\\S]*?)</tr>`).exec(dom)?.[1] ?? "";
    return [...tr.matchAll(/<td class="([^"]*)" data-column="([^"]*)"[^>]*>([\s\S]*?)<\/td>/g)].map((m) => [m[2], m[1], m[3]]);
  };

  test("the page has no external asset and no script: one file", () => {
    const html = readFileSync(at("status.html"), "utf8");
    expect(html).not.toMatch(/<(script|link|img|iframe|object|embed)\b|<[^>]+\s(src|href)=|url\(|@import/i);
  });

  test("one row per environment; red rows and cells red; the hostile release is text, not an element", () => {
    expect([...dom.matchAll(/<tr data-stack="([^"]+)" class="([^"]+)"/g)].map((m) => [m[1], m[2]])).toEqual([
      [good.stackName, row(good.stackName).state],
      [silent.stackName, "critical"],
      [gone.stackName, "critical"],
    ]);
    expect(cells(gone.stackName).find(([c]) => c === "health")).toEqual(["health", "critical", "unreachable"]);
    expect(cells(silent.stackName).find(([c]) => c === "health")?.slice(0, 2)).toEqual(["health", "critical"]);
    expect(cells(silent.stackName).find(([c]) => c === "deno")).toEqual(["deno", "warn", "2.9.5 ≠ 2.9.6"]);
    // Chromium built no <img> from it: the value is in the cell as escaped text.
    expect(dom).not.toMatch(/<img/i);
    expect(cells(silent.stackName).find(([c]) => c === "release")?.[2]).toBe("&lt;img src=x onerror=\"document.title='owned'\"&gt;&amp;amp;");
    expect(dom).toMatch(/<title>Fleet status /);
  });

  test("each watched environment's chart has one point per watcher run; the unreachable one has none", () => {
    const points = (stack: string) => [...(new RegExp(`<tr data-stack="${stack}"[\\s\\S]*?</tr>`).exec(dom)?.[0] ?? "").matchAll(/<circle class="point (\w+)" cx="([\d.]+)" cy="([\d.]+)"/g)];
    const mine = points(good.stackName);
    expect(mine).toHaveLength(3);
    // Left to right in time, within the 24 h frame; the newest near its right edge.
    const xs = mine.map((m) => Number(m[2]));
    expect(xs).toEqual([...xs].sort((a, b) => a - b));
    expect(xs[2]).toBeGreaterThan(230);
    // The silent server's runs 16 h, 8 h and 10 min before its last: placed by time across the day
    // (x = 3 + 234 × the fraction of the day, the chart's 240 px less its padding).
    const theirs = points(silent.stackName).map((m) => Number(m[2]));
    const r = row(silent.stackName);
    const end = Date.parse(r.checkedAt!) / 1000 + r.verdictAgeSeconds!;
    const expected = r.lagHistory.map((p) => 3 + ((Date.parse(p.checkedAt) / 1000 - (end - 86_400)) / 86_400) * 234);
    expect(theirs).toHaveLength(3);
    theirs.forEach((x, i) => expect(Math.abs(x - expected[i])).toBeLessThan(0.2));
    expect(theirs[0]).toBeLessThan(80);
    expect(points(gone.stackName)).toHaveLength(0);
    expect(cells(gone.stackName).find(([c]) => c === "chart")?.[2]).toBe("no history");
  });

  test("the screenshot is a rendered page (PNG of the window's size)", () => {
    const png = readFileSync(shot);
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([1800, 480]);
    if (process.env.KIT_KEEP_SCREENSHOT) copyFileSync(shot, process.env.KIT_KEEP_SCREENSHOT);
  });
});

describe("scripts/status.ts as an operator runs it", () => {
  const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(join(REPO_ROOT, "node_modules", ".bin", "tsx"), [join(REPO_ROOT, "scripts", "status.ts"), ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
      );
    });
  const refused = async (args: string[], error: string, fix: string) => {
    const r = await run(args);
    expect({ code: r.code, error: /^error: (.*)$/m.exec(r.stderr)?.[1], fix: /^fix: {3}(.*)$/m.exec(r.stderr)?.[1] }).toEqual({ code: 1, error, fix });
    expect(r.stderr).not.toMatch(/\n\s+at /);
  };

  test("bad flags are refused before anything is read, each naming the fix", async () => {
    writeFileSync(at("notes.html"), "<p>my notes</p>");
    await Promise.all([
      refused([], "which environments?", "npx zx scripts/status.ts <stack>… | --all (see --help)"),
      refused(["--all", "example-prod"], "--all and a stack (example-prod) together: --all already shows every environment", "drop --all, or the stacks"),
      refused(["--all", "--host", "198.51.100.1"], "--host names one server, and this shows all environments", "drop --host, or show one stack: npx zx scripts/status.ts <stack> --host …"),
      refused(["example-prod", "example-staging", "--port", "2222"], "--port names one server, and this shows 2", "drop --port, or show one stack: npx zx scripts/status.ts <stack> --port …"),
      refused(["example-prod", "--html", ""], "--html needs a file name", "pass e.g. --html status.html"),
      refused(["example-prod", "--html", at("no-such-dir", "s.html")], `--html ${at("no-such-dir", "s.html")}: ${at("no-such-dir")} is not a directory`, "create it, or name a file in an existing directory"),
      refused(["example-prod", "--html", at("notes.html")], `--html ${at("notes.html")} exists and is not a page status.ts wrote: it would be overwritten`, "name another file, or move that one aside"),
      refused(["example-prod", "--yes"], "--yes is not used by status.ts (it only reads)", "drop --yes"),
      refused(["--all", "--outputs-dir", at("no-such-dir")], `--outputs-dir ${JSON.stringify(at("no-such-dir"))} is not a directory`, "pass the directory that holds the <stack>.json outputs files"),
      refused(["example-prod", "--outputs-dir", dir, "--outputs", at("x.json")], "--outputs and --outputs-dir together: both say where the outputs file is", "drop one of them (see --help)"),
      refused(["example-prdo"], 'no client environment named "example-prdo"', `use one of: ${SHIPPED_STACKS.join(", ")} (stacks come from app/clients/*.ts)`),
      refused(["example-prod", "--jsno"], "unknown option --jsno", "see --help"),
    ]);
    expect(readFileSync(at("notes.html"), "utf8")).toBe("<p>my notes</p>");
  }, 120_000);

  test("--dry-run lists the servers and the read step, contacts none, exits 0", async () => {
    const r = await run(["--all", "--dry-run"]);
    expect(r.code).toBe(0);
    expect(SHIPPED_STACKS).toContain("example-prod");
    expect(r.stderr).toContain(`would read ${SHIPPED_STACKS.length} servers, 4 at a time:`);
    expect(r.stderr).toMatch(/example-prod: no server address for example-prod/);
    expect(r.stderr).toContain("/var/lib/kit/watch/verdict.json");
  });

  test("against the real sshd, --json --html: the server without a watcher and the unreachable one are red rows, exit 1, the page written", async () => {
    const page = at("cli.html");
    const shared = ["--user", sshd.user, "--identity", sshd.identity, "--known-hosts", at("known_hosts"), "--host", "127.0.0.1", "--json", "--html", page];
    const [here, away] = await Promise.all([run(["example-prod", "--port", String(sshd.port), ...shared]), run(["example-staging", "--port", String(await freePort()), ...shared.slice(0, -1), at("cli2.html")])]);
    for (const r of [here, away]) {
      expect(r.code).toBe(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const json = JSON.parse(here.stdout) as StatusReport;
    expect(json).toMatchObject({ schema: 1, red: true, environments: [{ stack: "example-prod", destination: `root@127.0.0.1:${sshd.port}`, state: "critical" }] });
    // This machine has no watcher of its own: the layout's verdict file does not exist here.
    expect(json.environments[0].cells.health).toMatchObject({ state: "critical", text: "no verdict" });
    expect(json.environments[0].error).toBe("no verdict: /var/lib/kit/watch/verdict.json does not exist (the watcher is not installed, or never ran)");
    expect((JSON.parse(away.stdout) as StatusReport).environments[0].cells.health).toMatchObject({ state: "critical", text: "unreachable" });
    expect(readFileSync(page, "utf8")).toContain('<tr data-stack="example-prod" class="critical">');
    // A second run overwrites its own page.
    expect((await run(["example-prod", "--port", String(sshd.port), ...shared])).code).toBe(1);
    expect(existsSync(`${page}.tmp`)).toBe(false);
    // The address and user from DIR/<stack>.json (--outputs-dir), as --all reads every stack's.
    mkdirSync(at("outputs"));
    writeFileSync(at("outputs", "example-prod.json"), JSON.stringify({ "example-prod": { ipv4: "127.0.0.1", ssh_user: sshd.user } }));
    const fromDir = await run(["example-prod", "--outputs-dir", at("outputs"), "--port", String(sshd.port), "--identity", sshd.identity, "--known-hosts", at("known_hosts"), "--json"]);
    expect((JSON.parse(fromDir.stdout) as StatusReport).environments[0]).toMatchObject({ destination: `${sshd.user}@127.0.0.1:${sshd.port}`, cells: { health: { text: "no verdict" } } });
  }, 120_000);
});
