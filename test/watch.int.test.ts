/**
 * watch.sh (kit-watch.timer's script, the template exactly as it lands) run with bash against the repo's Deno
 * (its heartbeat goes through kit-sql.js), real sqlite3, Litestream 0.3.13 replicating to the lab S3 (HTTPS, the environment's least-privilege key), and one
 * loopback server that is both the app's health path behind "Caddy" and the alert receiver (dead-man and
 * webhook). systemd's answers come from test/support/systemctl-stand-in.sh; the e2e tier
 * (test/e2e/watcher.e2e.test.ts) runs the same script under the real systemd.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect as tlsConnect } from "node:tls";
import { basename, dirname, join } from "node:path";
import { labAccess, LocalKit, localEnvironments } from "../lab/local/local-kit.ts";
import { startWatchKit, type WatchKit } from "../lab/local/watch-kit.ts";
import { startKitLabS3Process, type LabS3Process } from "../lab/s3/process.ts";
import { renderTemplate } from "../cloud-init/template.ts";
import { WATCH_CHECKS, type WatchHistoryLine, type WatchVerdict } from "../cloud-init/watch-verdict.ts";

const [env] = localEnvironments(["watch"]);
/** The secret part of a Slack webhook URL: it must never appear in what the watcher says or sends. */
const WEBHOOK_TOKEN = "T0SECRET/B0SECRET/webhookTokenNeverShown";

interface Received {
  readonly path: string;
  readonly body: string;
}

let server: Server;
let port = 0;
let healthStatus = 200;
const received: Received[] = [];
let lab: LabS3Process;
let kit: LocalKit;
let w: WatchKit;
const said: string[] = [];

const at = (name: string) => join(w.aux, name);
const unit = (name: string, props: Record<string, string>) => w.unit(name, props);

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly verdict: WatchVerdict;
}

/** Runs watch.sh once as kit-watch.service does (its EnvironmentFiles: s3.env and alerts.env). */
function watch(script = w.script): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(script, [], { env: w.env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("close", (status) => {
      said.push(stdout, stderr);
      resolve({ status, stdout, stderr, verdict: JSON.parse(readFileSync(at("watch/verdict.json"), "utf8")) as WatchVerdict });
    });
  });
}

const webhooks = () => received.filter((r) => r.path.startsWith("/services/")).map((r) => JSON.parse(r.body).text as string);
const pings = () => received.filter((r) => r.path.startsWith("/ping/"));
const state = (): Record<string, string> =>
  Object.fromEntries(readFileSync(at("watch/state"), "utf8").trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
const setState = (changes: Record<string, string | number>) =>
  writeFileSync(at("watch/state"), Object.entries({ ...state(), ...changes }).map(([k, v]) => `${k}=${v}\n`).join(""));
/**
 * Restarts Litestream and waits until it has a generation: a Litestream that finds the WAL reset while it was
 * stopped (the heartbeat's connection, the last one open, checkpointed it on close) clears its generation and
 * starts a new one, and the replica's old snapshots answer kit.startReplication before that one exists.
 */
async function restartReplication(): Promise<void> {
  await kit.stopReplication();
  await startReplication();
}
async function startReplication(): Promise<void> {
  await kit.startReplication();
  const generation = join(dirname(kit.dbFile), `.${basename(kit.dbFile)}-litestream`, "generation");
  for (let i = 0; i < 100 && !existsSync(generation); i++) await new Promise((r) => setTimeout(r, 100));
  if (!existsSync(generation)) throw new Error(`Litestream started no generation within 10 s; it said:\n${kit.replicatorOutput().slice(-2000)}`);
}
/**
 * Stops Litestream, then lets the clock pass into the next second: S3 keeps LastModified in whole seconds, so the
 * WAL Litestream flushed on its way down could otherwise carry the second of the next heartbeat and count for it.
 */
async function stopReplication(): Promise<void> {
  await kit.stopReplication();
  await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 50));
}

/** Points the kit.env the watcher reads at an S3 that cannot be reached; returns the undo. */
function unreachable(): () => void {
  const text = readFileSync(kit.kitEnvFile, "utf8");
  writeFileSync(kit.kitEnvFile, text.replace(/^S3_ENDPOINT=.*$/m, "S3_ENDPOINT=https://127.0.0.1:9")); // nothing listens there
  return () => writeFileSync(kit.kitEnvFile, text);
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      if (req.url === env.app.healthPath) {
        res.statusCode = healthStatus;
        res.end();
        return;
      }
      received.push({ path: req.url ?? "", body });
      res.end("OK");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
  lab = await startKitLabS3Process([env]);
  // "Caddy" is the test server (health path and alert receiver); watch.sh rendered as a server gets it.
  w = startWatchKit(labAccess(lab, env), env, {
    httpPort: port,
    alerts: { deadManUrl: `http://127.0.0.1:${port}/ping/abc-uuid`, webhookUrl: `http://127.0.0.1:${port}/services/${WEBHOOK_TOKEN}` },
  });
  kit = w.kit;
  kit.sql(kit.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes(body) VALUES ('a');");
  await kit.startReplication();
}, 60_000);

afterAll(async () => {
  await w?.cleanup();
  await lab?.stop();
  await new Promise((resolve) => server?.close(resolve));
});

describe("watch.sh", () => {
  test("all good: every check ok or explained, the verdict has the contract's shape, the dead-man URL gets a good ping, the webhook nothing", async () => {
    const run = await watch();
    expect(run.stderr).toBe("");
    const v = run.verdict;
    expect(Object.keys(v.checks)).toEqual([...WATCH_CHECKS]);
    expect(v).toMatchObject({ schema: 1, stack: env.stackName, client: env.client, environment: env.environment });
    expect(v.checkedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Math.abs(Date.parse(v.checkedAt) - Date.now())).toBeLessThan(60_000);
    expect(v.durationMs).toBeGreaterThan(0);
    for (const name of ["replication", "litestream", "app", "units", "fallback", "drill", "certificate"] as const) {
      expect({ name, ...v.checks[name] }).toMatchObject({ name, state: "ok" });
    }
    // This machine's own disks and packages are what they are: the verdict states the worst of its checks.
    const order = ["ok", "warn", "critical"];
    expect(v.state).toBe(order[Math.max(...Object.values(v.checks).map((c) => order.indexOf(c.state)))]);
    expect(v.facts.replicationLagSeconds).toBeGreaterThanOrEqual(0);
    expect(v.facts.replicationLagSeconds).toBeLessThanOrEqual(3);
    expect(v.checks.replication.value).toBe(`${v.facts.replicationLagSeconds} s behind`);
    expect(v.facts).toMatchObject({ release: "20261203T100000Z-abc1234", litestream: "0.3.13", litestreamErrors: 0, fallbackAgeSeconds: null, drill: null, certDaysLeft: null });
    expect(v.facts.deno).toMatch(/^\d+\.\d+\.\d+$/);
    expect(v.facts.rootUsedPercent).toBeGreaterThan(0);
    // The heartbeat is a row of the kit's table in the app's database, committed at the run's start.
    expect(Number(kit.sql(kit.dbFile, "SELECT at FROM _kit_watch WHERE id = 1"))).toBe(Date.parse(v.checkedAt) / 1000);
    const history = readFileSync(at("watch/history.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as WatchHistoryLine);
    expect(history).toHaveLength(1);
    expect(history[0]).toEqual({ checkedAt: v.checkedAt, state: v.state, replicationLagSeconds: v.facts.replicationLagSeconds, volumeUsedPercent: v.facts.volumeUsedPercent, failing: Object.keys(v.checks).filter((c) => v.checks[c as keyof typeof v.checks].state !== "ok") });
    if (v.state !== "critical") {
      expect(pings().map((p) => p.path)).toEqual(["/ping/abc-uuid"]);
      expect(pings()[0].body).toContain(`${env.client} ${env.environment} (${env.stackName}) ${v.state}`);
    }
    // No change from the start state (ok) unless this machine's disks or updates warn.
    expect(webhooks()).toHaveLength(v.state === "ok" ? 0 : 1);
  });

  test("the bucket unreachable: replication critical within one run, naming the cause; /fail pinged with the reasons; one webhook; recovery posts one more", async () => {
    const base = received.length;
    const undo = unreachable();
    const bad = await watch();
    expect(bad.verdict.checks.replication).toMatchObject({ state: "critical", detail: "docs/runbook.md, An alert fired: replication" });
    expect(bad.verdict.checks.replication.value).toMatch(/^\d+ s behind: heartbeat not in the bucket after \d+ s \(Failed to connect to 127\.0\.0\.1 port 9/);
    expect(bad.verdict.state).toBe("critical");
    expect(bad.verdict.durationMs).toBeLessThan(30_000);
    const after = received.slice(base);
    expect(after.find((r) => r.path === "/ping/abc-uuid/fail")?.body).toContain("replication critical:");
    const message = webhooks().at(-1)!;
    expect(message).toMatch(new RegExp(`^CRITICAL ${env.client} ${env.environment} \\(${env.stackName}\\); replication critical: \\d+ s behind`));
    // A second bad run is no change: no second webhook.
    const count = webhooks().length;
    await watch();
    expect(webhooks()).toHaveLength(count);
    undo();
    const ok = await watch();
    expect(ok.verdict.checks.replication.state).toBe("ok");
    expect(webhooks()).toHaveLength(count + 1);
    expect(webhooks().at(-1)).toMatch(ok.verdict.state === "ok" ? /^RECOVERED .* all checks ok/ : /recovered: replication/);
  }, 90_000);

  test("access refused (the key deleted in IAM): replication critical with S3's code; Litestream's own metrics stay at 0 errors", async () => {
    const key = lab.users.get(env.stackName)!;
    const second = await lab.createAccessKey(env.stackName);
    await lab.deleteAccessKey(env.stackName, key.accessKeyId);
    const bad = await watch();
    expect(bad.verdict.checks.replication.value).toContain("(S3 answered InvalidAccessKeyId)");
    expect(bad.verdict.checks.replication.state).toBe("critical");
    // Why it must be measured: Litestream counts no error for a refused upload.
    expect(bad.verdict.facts.litestreamErrors).toBe(0);
    expect(bad.verdict.checks.litestream.state).toBe("ok");
    // The new key, as a key rotation pushes it: replication recovers.
    writeFileSync(kit.path("s3CredentialsFile"), `AWS_ACCESS_KEY_ID=${second.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${second.secretAccessKey}\n`);
    Object.assign(kit.env, { AWS_ACCESS_KEY_ID: second.accessKeyId, AWS_SECRET_ACCESS_KEY: second.secretAccessKey });
    await restartReplication();
    expect((await watch()).verdict.checks.replication).toMatchObject({ state: "ok" });
  }, 90_000);

  test("Litestream stopped: litestream and replication critical; app unhealthy: app critical with the HTTP code; both recover", async () => {
    await stopReplication();
    unit("litestream.service", { ActiveState: "inactive" });
    healthStatus = 503;
    const bad = await watch();
    expect(bad.verdict.checks.litestream).toMatchObject({ state: "critical", value: "litestream.service is not running" });
    expect(bad.verdict.checks.replication.state).toBe("critical");
    expect(bad.verdict.checks.app).toMatchObject({ state: "critical", value: "health check: 503" });
    expect(webhooks().at(-1)).toMatch(/replication critical: .*; litestream critical: litestream\.service is not running; app critical: health check: 503/);
    await startReplication();
    unit("litestream.service", { ActiveState: "active" });
    healthStatus = 200;
    const ok = await watch();
    expect([ok.verdict.checks.litestream.state, ok.verdict.checks.replication.state, ok.verdict.checks.app.state]).toEqual(["ok", "ok", "ok"]);
  }, 90_000);

  test("fallback: a failed run is critical; a copy that is not in the bucket is critical until it is uploaded", async () => {
    unit("fallback-backup.service", { ActiveState: "failed", Result: "exit-code" });
    const failed = await watch();
    expect(failed.verdict.checks.fallback).toMatchObject({ state: "critical", value: "last run failed (exit-code)" });
    expect(failed.verdict.checks.units).toMatchObject({ state: "critical", value: "failed: fallback-backup.service" });
    unit("fallback-backup.service", { ActiveState: "inactive", Result: "success" });
    const name = "app-20261203T033000Z.sqlite3.gz";
    writeFileSync(join(kit.path("backupDir"), name), "a copy");
    const missing = await watch();
    expect(missing.verdict.checks.fallback).toMatchObject({ state: "critical", value: `${name} is not in the bucket (S3 answered HTTP 404)` });
    expect(missing.verdict.facts.fallbackAgeSeconds).toBeLessThan(60);
    const put = await kit.script("s3-put.sh", [join(kit.path("backupDir"), name), `${kit.values.fallbackPrefix}/${name}`]);
    expect(put.status).toBe(0);
    expect((await watch()).verdict.checks.fallback).toMatchObject({ state: "ok", value: "0 h old, in the bucket" });
  }, 90_000);

  test("drill: a failed drill's report is critical; a passing one is ok and its RPO/RTO are facts", async () => {
    const report = (ok: boolean) =>
      `{"stack":"${env.stackName}","at":"20261201T040000Z","ok":${ok},"replica":"s3://b/p","sentinel":"drill-1","integrity":"ok","rpo_ms":${ok ? 812 : "null"},"rto_ms":140,"missing_tables":0,"tables":[]}\n`;
    writeFileSync(join(kit.path("drillDir"), "latest.json"), report(false));
    expect((await watch()).verdict.checks.drill).toMatchObject({ state: "critical", value: "the last drill failed (20261201T040000Z)" });
    writeFileSync(join(kit.path("drillDir"), "latest.json"), report(true));
    const ok = await watch();
    expect(ok.verdict.checks.drill).toMatchObject({ state: "ok", value: "20261201T040000Z" });
    expect(ok.verdict.facts.drill).toEqual({ at: "20261201T040000Z", ok: true, rpoSeconds: 0.812, rtoSeconds: 0.14 });
  }, 90_000);

  test("certificate: with a domain, the days left on the certificate the site serves (here the lab's, two days: critical)", async () => {
    const labPort = Number(new URL(lab.endpoint).port);
    const script = at("watch-tls.sh");
    writeFileSync(script, renderTemplate("../watch/watch.sh", { ...kit.values, domainName: "localhost", httpsPort: labPort }), { mode: 0o755 });
    const served = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: "127.0.0.1", port: labPort, servername: "localhost", ca: readFileSync(lab.caFile) }, () => {
        resolve(socket.getPeerCertificate().valid_to);
        socket.end();
      });
      socket.once("error", reject);
    });
    const run = await watch(script);
    const days = Math.floor((Date.parse(served) - Date.now()) / 86_400_000);
    expect(run.verdict.facts.certDaysLeft).toBe(days);
    expect(run.verdict.checks.certificate).toMatchObject({ state: days < 7 ? "critical" : days < 14 ? "warn" : "ok", value: `${days} days left` });
    // Through "Caddy" over https: the lab S3 is no app, its answer is not 2xx.
    expect(run.verdict.checks.app).toMatchObject({ state: "critical", value: expect.stringMatching(/^health check: 4\d\d$/) });
  }, 90_000);

  test("rate limit: with no token left a change is held (not lost) and the next message says so", async () => {
    setState({ tokens: 0, refill: Math.floor(Date.now() / 1000) });
    const count = webhooks().length;
    healthStatus = 500;
    await watch();
    expect(webhooks()).toHaveLength(count);
    expect(state().held).toBe("1");
    healthStatus = 200;
    await watch();
    expect(webhooks()).toHaveLength(count);
    expect(state().held).toBe("2");
    // Five minutes later one token is back: the current state goes out, with the count held back.
    setState({ refill: Math.floor(Date.now() / 1000) - 300 });
    healthStatus = 502;
    await watch();
    expect(webhooks()).toHaveLength(count + 1);
    expect(webhooks().at(-1)).toMatch(/app critical: health check: 502.*\(2 changes held back by the rate limit\)/);
    healthStatus = 200;
  }, 90_000);

  test("nothing the watcher sent or printed holds a key, a secret or the webhook's token", () => {
    const keys = [lab.users.get(env.stackName)!.secretAccessKey, ...Object.values(kit.env).filter((v): v is string => typeof v === "string" && v.length >= 20 && /SECRET|KEY/.test(v))];
    const everything = [...received.map((r) => `${r.path} ${r.body}`.replace(`/services/${WEBHOOK_TOKEN}`, "/services/<url>")), ...said].join("\n");
    expect(received.length).toBeGreaterThan(5);
    for (const secret of [kit.env.AWS_SECRET_ACCESS_KEY!, ...keys, "T0SECRET", "webhookTokenNeverShown", "abc-uuid"]) {
      expect({ secret, found: everything.replace(/\/ping\/abc-uuid/g, "/ping/<url>").includes(secret) }).toEqual({ secret, found: false });
    }
  });
});
