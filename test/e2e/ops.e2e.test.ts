/**
 * The operations scripts against a booted server, over real SSH: scripts/deploy.ts, restore.ts and drill.ts
 * run as an operator runs them (`tsx scripts/<x>.ts example-staging --host … --identity …`), with the lab's
 * mirror/git/S3 passed through an outputs file and --render-overrides, and the client file (the shipped
 * example with the lab's SSH key) through --clients-dir, all in a temp dir. One server for the
 * whole file (a boot costs about a minute); the tests run in order and each leaves the site healthy.
 */
import { spawn } from "node:child_process";
import { Agent, request } from "node:http";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  bootKitServer, createKitLab, type KitLab, type KitServer, labEnvironment, labRenderOverrides, printTimings, waitForBootstrap, writeLabClientsDir,
} from "../../lab/kit-lab.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { startLoad } from "../../scripts/lib/http-load.ts";
import { executedTitles, plannedTitles } from "../../scripts/lib/cli.ts";
import { loadEnvironment } from "../../scripts/lib/target.ts";
import { createSshKey, FIXTURE_APP_DIR, log, REPO_ROOT, run, sshArgv, trustLabCa } from "../../lab/harness/index.ts";

const STACK = "example-staging";
let lab: KitLab;
let server: KitServer;
let dir: string;
/** The client files the scripts read (--clients-dir): the example client with the lab's SSH key. */
let clientsDir: string;
/** Commit ids of the fixture repo: v1 is what the server booted with. */
const commits: Record<string, string> = {};

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one of the scripts as an operator would, pointed at the booted server. */
function cli(script: string, args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const argv = [
    join("scripts", script),
    STACK,
    ...args,
    "--host", server.machine.address,
    "--identity", lab.sshKey.privateKeyPath,
    "--known-hosts", lab.knownHostsFile,
    "--outputs", join(dir, "outputs.json"),
    "--s3-endpoint", lab.s3.endpoint,
    "--clients-dir", clientsDir,
  ];
  if (script === "deploy.ts") argv.push("--render-overrides", join(dir, "overrides.json"));
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO_ROOT, "node_modules", ".bin", "tsx"), argv, {
      cwd: REPO_ROOT,
      // restore.ts --local/--list run Litestream here, which must trust the lab CA (as a laptop trusts
      // AWS's) without any change to the script.
      env: { ...process.env, TF_VAR_secret_SESSION_SECRET: "e2e-session_secret", ...trustLabCa(lab.s3.caFile), ...extraEnv },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGTERM"), 5 * 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      log(`$ tsx ${argv.slice(0, 3 + args.length).join(" ")} -> exit ${code}\n${stderr}`);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/**
 * GETs on one keep-alive connection to Caddy (as a browser holds one): resolves with each answer's status and
 * body and how many sockets the agent opened for them (1: the connection was kept throughout).
 */
function keepAliveClient() {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set<unknown>();
  const get = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: server.machine.address, port: 80, path, agent, timeout: 10_000 }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("socket", (socket) => sockets.add(socket));
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", reject);
      req.end();
    });
  return { get, sockets: () => sockets.size, close: () => agent.destroy() };
}

/** GET /healthz through Caddy back to back until stopped: every answer's status and version, and errors. */
function pollHealth() {
  const seen = new Map<string, number>();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const key = await server.http("/healthz").then(
        async (res) => `${res.status} ${((await res.json()) as { version?: string }).version ?? "-"}`,
        (error: Error) => `error ${error.message}`,
      );
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
  })();
  return { stop: async () => ((stopped = true), await loop, Object.fromEntries(seen)) };
}

async function json<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await server.http(path, init);
  expect(res.ok).toBe(true);
  return (await res.json()) as T;
}
const count = async () => (await json<{ count: number }>("/rows/count")).count;
const health = () => json<{ ok: boolean; version?: string }>("/healthz");
async function addRows(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await server.http("/rows", { method: "POST" });
    expect(res.status).toBe(201);
  }
}
async function root(command: string): Promise<string> {
  return (await server.machine.exec(command)).stdout.trim();
}
/** What the slots point at and which app units run; the active slot as the switch's file records it and as the kernel has it. */
async function slots() {
  const port = server.env.app.port;
  const unit = async (p: number) => (await server.machine.exec(["systemctl", "is-active", `app@${p}.service`], { allowFailure: true })).stdout.trim();
  const dnat = `grep -oE 'dnat (ip )?to 127\\.0\\.0\\.1:[0-9]+' | grep -oE '[0-9]+$'`;
  const active = Number(await root(`${dnat} <${LAYOUT.upstreamRules}`));
  // What the file says is what the kernel does (the switch loads the file it wrote; a boot loads it again).
  expect(Number(await root(`nft list chain ip kit_upstream output | ${dnat}`))).toBe(active);
  const release = await root(`readlink ${LAYOUT.slotsDir}/${active}`);
  return { active, release, units: { [port]: await unit(port), [port + 1]: await unit(port + 1) } };
}
/** The live database's schema (read-only). */
const schema = () => root(`sqlite3 -readonly ${LAYOUT.dbFile} "SELECT group_concat(sql, ';') FROM sqlite_schema"`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits past Litestream's 1 s sync interval (and the monitor interval) so S3 holds the latest writes. */
const replicated = () => sleep(4000);

/** What a deploy printed about one pushed file: undefined when not updated, else its changed lines ("- old", "+ new"). */
function pushed(stderr: string, path: string): string[] | undefined {
  const lines = stderr.split("\n").map((line) => line.replace(/^\s*│ /, ""));
  const at = lines.indexOf(`kit: updated ${path}`);
  if (at < 0) return undefined;
  const changed: string[] = [];
  for (const line of lines.slice(at + 1)) {
    if (!line.startsWith("kit:   ")) break;
    changed.push(line.slice("kit:   ".length));
  }
  return changed;
}

const fixture = (file: string) => readFileSync(join(FIXTURE_APP_DIR, file), "utf8");
const denoJson = (tasks: { migrate?: string; start?: string }) => {
  const base = JSON.parse(fixture("deno.json")) as { tasks: Record<string, string> };
  return `${JSON.stringify({ ...base, tasks: { migrate: tasks.migrate ?? base.tasks.migrate, start: tasks.start ?? base.tasks.start } }, null, 2)}\n`;
};

beforeAll(async () => {
  lab = await createKitLab();
  dir = mkdtempSync(join(lab.teardown.workDir, "ops-"));
  const env = labEnvironment(lab, STACK);
  clientsDir = writeLabClientsDir(lab, join(dir, "clients"));
  // The scripts read the same environment the server was booted from (only the file name differs).
  expect({ ...loadEnvironment(STACK, clientsDir), sourceFile: "" }).toEqual({ ...env, sourceFile: "" });
  commits.v1 = await lab.repo.head();
  server = await bootKitServer(lab, { name: "ops", env });
  // What an operator has after `cdktf output`: the stack outputs (with the backup key pair) ...
  writeFileSync(
    join(dir, "outputs.json"),
    JSON.stringify({ [STACK]: { ipv4: server.machine.address, bucket: env.names.bucket, region: lab.s3.region, access_key_id: lab.s3.accessKeyId, secret_access_key: lab.s3.secretAccessKey } }),
  );
  // ... and the render overrides the lab booted the server with (mirror and git URLs).
  writeFileSync(join(dir, "overrides.json"), JSON.stringify(labRenderOverrides(lab)));
  const boot = await waitForBootstrap(server);
  lab.timings.push(`boot -> cloud-init done: ${(boot.bootMs / 1000).toFixed(1)} s`);
  expect(boot.status).toBe("done");
});
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "ops");
});

describe("deploy.ts", () => {
  let v1Release: string;

  test("--dry-run prints the plan and changes nothing", async () => {
    const before = await slots();
    const releases = await root(`ls ${LAYOUT.releasesDir}`);
    const result = await cli("deploy.ts", ["--dry-run"]);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/plan for example-staging/);
    expect(result.stderr).toContain("dry run: nothing was changed.");
    expect(await slots()).toEqual(before);
    expect(await root(`ls ${LAYOUT.releasesDir}`)).toBe(releases);
  });

  test("deploys a new commit: the site serves it on the other slot, the old slot is stopped, data intact", async () => {
    await addRows(3);
    const before = await slots();
    v1Release = before.release;
    expect((await health()).version).toBeUndefined();
    commits.v2 = await lab.repo.commit({ "main.ts": fixture("main.ts").replace("json({ ok: true })", 'json({ ok: true, version: "v2" })') }, "v2: /healthz says its version");
    const dry = await cli("deploy.ts", ["--ref", commits.v2, "--dry-run"]);
    expect(dry.code).toBe(0);
    const planned = plannedTitles(dry.stderr);
    expect(planned[0]).toMatch(/^inspect /);
    // A browser's connection, open before the deploy: the switch keeps it (Caddy is not reloaded).
    const browser = keepAliveClient();
    expect((await browser.get("/healthz")).status).toBe(200);
    // Both load shapes through Caddy for the whole deploy, reads and writes: none may fail.
    const load = startLoad(`http://${server.machine.address}/`, [true, false].flatMap((keepAlive) => (["GET", "POST"] as const).map((method) => ({ keepAlive, method }))));
    const t = Date.now();
    const result = await cli("deploy.ts", ["--ref", commits.v2]);
    const loads = await load.stop();
    lab.timings.push(`deploy under load: ${loads.map((l) => `${l.method} ${l.keepAlive ? "keep-alive" : "new connection"} ${l.failed} of ${l.ok + l.failed} failed`).join(", ")}`);
    expect(loads.map((l) => ({ ...l, requests: l.ok + l.failed })).filter((l) => l.failed > 0 || l.requests < 10)).toEqual([]);
    expect(executedTitles(result.stderr)).toEqual(planned); // the plan is the steps
    const again = await browser.get("/healthz");
    browser.close();
    expect({ status: again.status, version: JSON.parse(again.body).version, sockets: browser.sockets() }).toEqual({ status: 200, version: "v2", sockets: 1 });
    lab.timings.push(`deploy (CLI, success): ${((Date.now() - t) / 1000).toFixed(1)} s`);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("✓ deployed");
    // The bootstrap and the deploy render the server's files with the same code: nothing to push.
    expect(result.stderr).not.toContain("kit: updated");
    // The old slot stopped cleanly (deno task's 143 on SIGTERM counts as a clean stop).
    expect(result.stderr).not.toContain("did not stop cleanly");
    expect((await health()).version).toBe("v2");
    const after = await slots();
    expect(after.active).not.toBe(before.active);
    expect(after.release).toContain(commits.v2.slice(0, 12));
    expect(after.units[before.active]).not.toBe("active");
    expect(after.units[after.active]).toBe("active");
    // Every acknowledged POST is a row, and no other row was added.
    expect(await count()).toBe(3 + loads.filter((l) => l.method === "POST").reduce((n, l) => n + l.ok, 0));
    expect(await root(`ls ${LAYOUT.asideDir}`)).toMatch(/pre-deploy-.*\.sqlite3/);
    expect(await root(`test -e ${LAYOUT.deployLock} && echo locked || echo unlocked`)).toBe("unlocked");
  });

  test("a reboot comes back on the slot the last deploy switched to (kit-upstream.service loads its rule before Caddy starts)", async () => {
    const before = await slots();
    expect(before.active).toBe(server.env.app.port + 1);
    const t = Date.now();
    await server.machine.stop();
    await server.machine.start();
    await server.machine.waitFor(async () => (await server.http("/healthz").catch(() => undefined))?.status === 200, { timeoutMs: 3 * 60_000, what: "the app to answer through Caddy after the reboot", intervalMs: 250 });
    lab.timings.push(`reboot after a deploy -> serving through Caddy: ${((Date.now() - t) / 1000).toFixed(1)} s`);
    expect((await health()).version).toBe("v2");
    expect(await slots()).toEqual(before);
    expect(await root(`systemctl is-active ${LAYOUT.units.upstream}`)).toBe("active");
  });

  test("a failing migration rolls back: the old release still serves, data intact", async () => {
    const before = await slots();
    const rows = await count();
    const schemaBefore = await schema();
    commits.badMigration = await lab.repo.commit({ "deno.json": denoJson({ migrate: `FAIL_MIGRATION=1 ${JSON.parse(fixture("deno.json")).tasks.migrate}` }) }, "broken migration");
    const result = await cli("deploy.ts", ["--ref", commits.badMigration]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/failed and was rolled back/);
    expect(result.stderr).toMatch(/step "migrate \(deno task migrate\)" failed/);
    expect(result.stderr).toContain("rolled back: database back to the pre-migration snapshot");
    expect((await health()).version).toBe("v2");
    expect(await slots()).toEqual(before);
    expect(await count()).toBe(rows);
    // The migration's half-done schema change is gone: the snapshot is back in place.
    expect(await schema()).toBe(schemaBefore);
    await addRows(1);
    expect(await count()).toBe(rows + 1);
  });

  test("a failing health check rolls back to the release that was serving", async () => {
    const before = await slots();
    const rows = await count();
    commits.badHealth = await lab.repo.commit({ "deno.json": denoJson({ start: `FAIL_HEALTHCHECK=1 ${JSON.parse(fixture("deno.json")).tasks.start}` }) }, "unhealthy release");
    const asideBefore = await root(`ls ${LAYOUT.asideDir}`);
    // A broken release never serves a request: it runs (answering 503) for the whole health check, and
    // through Caddy every answer meanwhile is the serving release's.
    const poll = pollHealth();
    const result = await cli("deploy.ts", ["--ref", commits.badHealth, "--health-seconds", "5"]);
    const seen = await poll.stop();
    log(`GET /healthz through Caddy during the failed deploy: ${JSON.stringify(seen)}`);
    expect(Object.keys(seen)).toEqual(["200 v2"]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/failed and was rolled back/);
    // Its migration changed nothing: the live database is kept (no swap, no downtime, no writes moved aside).
    expect(result.stderr).toContain("the database was left as it is (the migration changed no schema)");
    expect(result.stderr).not.toContain("did not stop cleanly");
    expect((await root(`ls ${LAYOUT.asideDir}`)).split("\n").filter((n) => n.startsWith("failed-deploy-") && !asideBefore.includes(n))).toEqual([]);
    expect((await health()).version).toBe("v2");
    const after = await slots();
    expect(after).toEqual(before);
    expect(await count()).toBe(rows);
  });

  test("--rollback goes back one release (to what the server booted with)", async () => {
    const rows = await count();
    const result = await cli("deploy.ts", ["--rollback"]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("✓ rolled back");
    expect((await health()).version).toBeUndefined();
    const after = await slots();
    expect(after.release).toBe(v1Release);
    expect(Object.values(after.units).filter((u) => u === "active")).toHaveLength(1);
    expect(await count()).toBe(rows);
  });

  test("SSH keys follow the client file: a key added there logs in after a deploy, and is refused once removed and pushed (--config-only); changed lines are shown, secrets never", async () => {
    const colleague = await createSshKey(lab.teardown, "colleague_ed25519");
    const login = () =>
      run(sshArgv({ key: colleague, user: LAYOUT.users.deploy, host: server.machine.address, knownHostsFile: lab.knownHostsFile }, ["true"]), { allowFailure: true, timeoutMs: 30_000 });
    expect((await login()).code).not.toBe(0);

    const lab1 = { name: "e2e", publicKey: lab.sshKey.publicKey.trim() };
    writeLabClientsDir(lab, clientsDir, [lab1, { name: "colleague", publicKey: colleague.publicKey.trim() }]);
    // The same deploy rotates the app's secret: the file is named as updated, its value appears nowhere.
    const rotated = "rotated-e2e-secret-9f3b";
    const added = await cli("deploy.ts", ["--ref", commits.v2], { TF_VAR_secret_SESSION_SECRET: rotated });
    expect(added.code).toBe(0);
    const keysFile = `${LAYOUT.authorizedKeysDir}/${LAYOUT.users.deploy}`;
    expect(pushed(added.stderr, keysFile)).toEqual([`+ ${colleague.publicKey.trim()}`]);
    expect(pushed(added.stderr, LAYOUT.appSecretsFile)).toEqual([]);
    expect(added.stderr + added.stdout).not.toContain(rotated);
    expect(added.stderr + added.stdout).not.toContain("e2e-session_secret");
    expect(await root(`cat ${LAYOUT.appSecretsFile}`)).toContain(rotated);
    expect((await login()).code).toBe(0);

    // Revoking needs no release: --config-only pushes the configuration and leaves the app running as it is.
    writeLabClientsDir(lab, clientsDir, [lab1]);
    const serving = await slots();
    const removed = await cli("deploy.ts", ["--config-only"]);
    expect(removed.code).toBe(0);
    expect(pushed(removed.stderr, keysFile)).toEqual([`- ${colleague.publicKey.trim()}`]);
    expect(pushed(removed.stderr, LAYOUT.appSecretsFile)).toEqual([]);
    expect(removed.stderr + removed.stdout).not.toContain(rotated);
    expect(removed.stderr).toContain(`✓ configuration of ${STACK}: 2 files updated; the app still runs ${serving.release}`);
    // The secret went back to the default value, which the running app reads only at its next start: said so.
    expect(removed.stderr).toContain(`the app reads ${LAYOUT.appSecretsFile} when it starts: the change takes effect at the next deploy`);
    expect(removed.stderr).not.toMatch(/fetch the app|migrate|health-check/);
    expect(await slots()).toEqual(serving);
    const refused = await login();
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Permission denied \(publickey\)/);
    // The operator's own key, still listed, keeps working.
    expect((await server.sshDeploy(["id", "-un"])).stdout.trim()).toBe(LAYOUT.users.deploy);
    expect((await health()).version).toBe("v2");
  });

  test("--config-only with nothing changed pushes nothing; with --ref it refuses (it would deploy no release)", async () => {
    const before = await slots();
    const result = await cli("deploy.ts", ["--config-only"]);
    expect(result.code).toBe(0);
    expect(result.stderr).not.toContain("kit: updated");
    expect(result.stderr).toContain(`✓ configuration of ${STACK}: already up to date, nothing pushed`);
    const refused = await cli("deploy.ts", ["--config-only", "--ref", commits.v2]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("error: --config-only deploys no release, so --ref would be ignored");
    expect(await slots()).toEqual(before);
  });

  test("a lock left by a dead deploy stops the next one, which prints how to remove it", async () => {
    await server.machine.exec(`mkdir -p ${LAYOUT.deployLock} && echo 'deploy of v9 by someone' >${LAYOUT.deployLock}/owner`);
    const blocked = await cli("deploy.ts", ["--ref", commits.v2]);
    expect(blocked.code).not.toBe(0);
    expect(blocked.stderr).toContain("another operation holds the deploy lock");
    expect(blocked.stderr).toContain("deploy of v9 by someone");
    const fix = new RegExp(`ssh (\\S+) (sudo rm -r ${LAYOUT.deployLock})`).exec(blocked.stderr);
    expect(fix).not.toBeNull();
    await server.sshDeploy(fix![2].split(" "));
    expect(await root(`test -e ${LAYOUT.deployLock} && echo locked || echo unlocked`)).toBe("unlocked");
  });
});

describe("restore.ts over SSH", () => {
  test("--latest restores the replica, keeps the old database aside and prints how to undo", async () => {
    await addRows(2);
    const rows = await count();
    await replicated();
    const asideBefore = await root(`ls ${LAYOUT.asideDir}`);
    const dry = await cli("restore.ts", ["--latest", "--yes", "--dry-run"]);
    expect(dry.code).toBe(0);
    expect(await root(`ls ${LAYOUT.asideDir}`)).toBe(asideBefore);
    const result = await cli("restore.ts", ["--latest", "--yes"]);
    expect(result.code).toBe(0);
    expect(executedTitles(result.stderr)).toEqual(plannedTitles(dry.stderr));
    expect(result.stderr).toContain("integrity:     ok");
    expect(result.stderr).toMatch(/to undo: npx zx scripts\/restore\.ts example-staging --from-file \/\S+before-restore-\S+ --yes/);
    expect(await count()).toBe(rows);
    const aside = (await root(`ls ${LAYOUT.asideDir}`)).split("\n").filter((n) => !asideBefore.split("\n").includes(n));
    expect(aside.some((n) => n.startsWith("before-restore-"))).toBe(true);
    const kept = aside.find((n) => n.startsWith("before-restore-"))!;
    expect(await root(`ls ${LAYOUT.asideDir}/${kept}`)).toMatch(/app\.sqlite3/);
  });

  test("the printed undo command (--from-file the aside copy) puts the previous database back", async () => {
    await addRows(1);
    const rows = await count();
    const restore = await cli("restore.ts", ["--latest", "--yes"]);
    expect(restore.code).toBe(0);
    const undo = /to undo: npx zx scripts\/restore\.ts example-staging (--from-file \S+) --yes/.exec(restore.stderr);
    expect(undo).not.toBeNull();
    const result = await cli("restore.ts", [...undo![1].split(" "), "--yes"]);
    expect(result.code).toBe(0);
    expect(await count()).toBe(rows);
    // The runbook's way to look at what is kept aside, as the deploy user.
    expect((await server.sshDeploy(["sudo", "ls", "-l", LAYOUT.asideDir])).stdout).toMatch(/before-restore-/);
  });

  test("--list shows the replica's time range; --local restores onto this machine without touching the server", async () => {
    const list = await cli("restore.ts", ["--list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain("== generations");
    expect(list.stderr).toMatch(/point-in-time restores reach from \S+ to \S+ \(UTC\)/);
    await replicated();
    const rows = await count();
    const out = join(dir, "local.sqlite3");
    const local = await cli("restore.ts", ["--latest", "--local", out]);
    expect(local.code).toBe(0);
    expect(local.stderr).toContain("integrity:     ok");
    expect(local.stderr).toMatch(new RegExp(`rows\\s+${rows}\\b`));
    expect(existsSync(out)).toBe(true);
  });

  test("--timestamp restores the database as it was between two writes", async () => {
    await addRows(2);
    await replicated();
    const rowsAtT = await count();
    const at = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    await sleep(2500);
    await addRows(3);
    await replicated();
    expect(await count()).toBe(rowsAtT + 3);
    const result = await cli("restore.ts", ["--timestamp", at, "--yes"]);
    expect(result.code).toBe(0);
    expect(await count()).toBe(rowsAtT);
  });

  test("--from-fallback restores the newest daily copy on the volume (S3 not needed)", async () => {
    const rows = await count();
    await server.machine.exec(["systemctl", "start", "fallback-backup.service"]);
    await addRows(2);
    const result = await cli("restore.ts", ["--from-fallback", "--yes"]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("integrity:     ok");
    expect(await count()).toBe(rows);
  });
});

describe("drill.ts", () => {
  test("passes on the server and keeps its JSON report", async () => {
    const report = join(dir, "drill-pass.json");
    const dry = await cli("drill.ts", ["--report", report, "--dry-run"]);
    expect(dry.code).toBe(0);
    expect(existsSync(report)).toBe(false);
    const result = await cli("drill.ts", ["--report", report]);
    expect(result.code).toBe(0);
    expect(executedTitles(result.stderr)).toEqual(plannedTitles(dry.stderr));
    expect(result.stderr).toContain("PASSED");
    const parsed = JSON.parse(readFileSync(report, "utf8")) as { ok: boolean; rpo_ms: number | null };
    expect(parsed.ok).toBe(true);
    expect(parsed.rpo_ms).not.toBeNull();
    expect((await server.sshDeploy(["sudo", "ls", LAYOUT.drillDir])).stdout).toContain("latest.json");
  });

  test("fails when Litestream is stopped", async () => {
    await server.machine.exec(["systemctl", "stop", "litestream.service"]);
    try {
      const report = join(dir, "drill-fail.json");
      const result = await cli("drill.ts", ["--report", report]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain("FAILED");
      expect(existsSync(report) && (JSON.parse(readFileSync(report, "utf8")) as { ok: boolean }).ok).toBe(false);
    } finally {
      await server.machine.exec(["systemctl", "start", "litestream.service"]);
    }
  });
});
