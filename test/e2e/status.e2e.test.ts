/**
 * scripts/status.ts --all against the lab's servers: the example client's two environments booted from
 * their real user data (the watcher installed by the first boot, its timer running), read over real SSH as
 * an operator reads them (the client file through --clients-dir, their addresses and backup keys through
 * --outputs-dir); then one of them with Litestream stopped; the --html page rendered by headless Chromium.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { log, REPO_ROOT } from "../../lab/harness/index.ts";
import { bootKitServer, createKitLab, type KitLab, type KitServer, labEnvironment, printTimings, waitForBootstrap, writeLabClientsDir } from "../../lab/kit-lab.ts";
import type { StatusReport } from "../../scripts/lib/status.ts";

const STACKS = ["example-prod", "example-staging"] as const;
let lab: KitLab;
let dir: string;
const servers = new Map<string, KitServer>();

/** status.ts --all as an operator runs it, pointed at the lab. */
function status(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string; seconds: number }> {
  const argv = [join("scripts", "status.ts"), "--all", "--clients-dir", join(dir, "clients"), "--outputs-dir", join(dir, "outputs"), "--identity", lab.sshKey.privateKeyPath, "--known-hosts", lab.knownHostsFile, ...args];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO_ROOT, "node_modules", ".bin", "tsx"), argv, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const seconds = (Date.now() - started) / 1000;
      log(`$ tsx ${argv.slice(0, 2).join(" ")} ${args.join(" ")} -> exit ${code} in ${seconds.toFixed(1)} s\n${stdout}${stderr}`);
      resolve({ code: code ?? 1, stdout, stderr, seconds });
    });
  });
}

/** One watcher run now, as its timer starts it; waits until the verdict is one written after `since` (Unix s). */
async function watchNow(server: KitServer, since = Math.floor(Date.now() / 1000)): Promise<void> {
  const started = await server.sshDeploy(["sudo", "systemctl", "start", LAYOUT.units.watch], { allowFailure: true });
  if (started.code !== 0) log(`${server.env.stackName}: systemctl start ${LAYOUT.units.watch}: exit ${started.code} ${started.stderr.trim()}`);
  await server.machine.waitFor(
    async () => {
      const verdict = await server.sshDeploy(["sudo", "cat", LAYOUT.watchVerdictFile], { allowFailure: true });
      return verdict.code === 0 && Date.parse(JSON.parse(verdict.stdout).checkedAt) / 1000 >= since;
    },
    { timeoutMs: 90_000, intervalMs: 1000, what: `${server.env.stackName}: a verdict written after ${new Date(since * 1000).toISOString()}` },
  );
}

beforeAll(async () => {
  lab = await createKitLab();
  dir = mkdtempSync(join(lab.teardown.workDir, "status-"));
  writeLabClientsDir(lab, join(dir, "clients"));
  mkdirSync(join(dir, "outputs"));
  const started = Date.now();
  const booted = await Promise.all(STACKS.map((stack) => bootKitServer(lab, { name: `status-${stack.replace("example-", "")}`, env: labEnvironment(lab, stack) })));
  for (const server of booted) {
    const boot = await waitForBootstrap(server);
    expect(boot.status).toBe("done");
    servers.set(server.env.stackName, server);
    // What `cdktf output` writes for the stack: the address, the SSH user and the backup key (its id and age).
    const key = lab.s3.forStack(server.env.stackName).accessKeyId;
    writeFileSync(
      join(dir, "outputs", `${server.env.stackName}.json`),
      JSON.stringify({ [server.env.stackName]: { ipv4: server.machine.address, ssh_user: LAYOUT.users.deploy, access_keys: [{ slot: "a", id: key, created: new Date(Date.now() - 3 * 86_400_000).toISOString() }] } }),
    );
  }
  lab.timings.push(`two servers booted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  // Two watcher runs each (the timer's first is a minute after boot): a verdict and two points of history.
  for (let i = 0; i < 2; i++) {
    await Promise.all(booted.map((server) => watchNow(server)));
    await new Promise((r) => setTimeout(r, 1100)); // the next verdict a second later at least (whole seconds)
  }
}, 15 * 60_000);

afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "status");
});

test("status --all --json: one row per booted environment, from the verdict its own watcher wrote; nothing red, exit 0", async () => {
  const r = await status(["--json"]);
  const report = JSON.parse(r.stdout) as StatusReport;
  expect(report.environments.map((e) => e.stack)).toEqual([...STACKS]);
  for (const row of report.environments) {
    const verdict = JSON.parse((await servers.get(row.stack)!.sshDeploy(["sudo", "cat", LAYOUT.watchVerdictFile])).stdout);
    expect({ stack: row.stack, error: row.error, state: row.state }).toEqual({ stack: row.stack, error: null, state: verdict.state });
    expect(row.verdict?.checkedAt).toBe(verdict.checkedAt);
    expect(row.verdictAgeSeconds).toBeLessThan(60);
    expect(row.cells.lag.state).toBe("ok");
    expect(row.cells.deno).toEqual({ state: "ok", text: "2.9.6" });
    expect(row.cells.litestream).toEqual({ state: "ok", text: "0.3.13" });
    expect(row.cells.release.text).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]+$/);
    expect(row.cells.backupKey).toEqual({ state: "ok", text: "3 d (slot a)" });
    expect(row.lagHistory.length).toBeGreaterThanOrEqual(2);
  }
  expect(r.code).toBe(report.red ? 1 : 0);
  expect(report.red).toBe(false);
  lab.timings.push(`status --all --json over 2 servers: ${r.seconds.toFixed(1)} s`);
});

test("Litestream stopped on one: after its next watcher run its row is red (replication, litestream), the other's is not; exit 1; the page shows it", async () => {
  const staging = servers.get("example-staging")!;
  const stopped = Math.floor(Date.now() / 1000) + 1;
  await staging.sshDeploy(["sudo", "systemctl", "stop", "litestream.service"]);
  try {
    await new Promise((r) => setTimeout(r, 1100));
    await watchNow(staging, stopped);
    log(`example-staging after Litestream stopped: ${(await staging.sshDeploy(["sudo", "cat", LAYOUT.watchVerdictFile])).stdout}`);
    const page = join(dir, "status.html");
    const r = await status(["--html", page]);
    expect(r.code).toBe(1);
    const line = (stack: string) => r.stdout.split("\n").find((l) => l.startsWith(`✗ ${stack} `) || l.startsWith(`! ${stack} `) || l.startsWith(`${stack} `)) ?? "";
    expect(line("example-staging")).toMatch(/^✗ example-staging +✗ critical: replication, litestream/);
    expect(line("example-prod")).not.toMatch(/^✗/);
    expect(r.stdout).toContain("litestream: litestream.service is not running");
    expect(r.stdout).toMatch(/^✗ example-staging replication lag: \d+ s behind: heartbeat not in the bucket/m);
    expect(r.stdout).toMatch(/1 of 2 environments red$/m);

    const dom = execFileSync("chromium", ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", `--user-data-dir=${join(dir, "chromium")}`, "--dump-dom", `file://${page}`], { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "ignore"] });
    const rows = [...dom.matchAll(/<tr data-stack="([^"]+)" class="([^"]+)">([\s\S]*?)<\/tr>/g)];
    expect(rows.map((m) => m[1])).toEqual([...STACKS]);
    const staged = rows.find((m) => m[1] === "example-staging")!;
    expect(staged[2]).toBe("critical");
    expect(staged[3]).toMatch(/<td class="critical" data-column="health"[^>]*>critical: replication, litestream/);
    expect(staged[3]).toMatch(/<td class="critical" data-column="lag"/);
    // The Litestream column is the installed version: stopped, the binary still answers.
    expect(staged[3]).toContain('<td class="ok" data-column="litestream">0.3.13</td>');
    // One chart point (or an unmeasured tick) per run of the day: the two good runs and the bad one.
    expect([...staged[3].matchAll(/<circle class="point|<line class="gap"/g)].length).toBeGreaterThanOrEqual(3);
    expect(readFileSync(page, "utf8")).not.toMatch(/<(script|link|img)\b/);
  } finally {
    await staging.sshDeploy(["sudo", "systemctl", "start", "litestream.service"]);
  }
});
