/**
 * The watcher on a booted server (issue 12, point 5): one server booted from the kit's user data with the
 * lab's watcher period (kit-watch.timer every 20 s instead of 60 s), its backups reached through a relay
 * that can be cut, its alerts pointed at a receiver on the lab network (HTTPS with its own CA, which the
 * server trusts the Debian way) that records every dead-man ping and webhook post with its arrival time.
 * All good → good pings only, no webhook. Then each fault in turn, timed from the fault to the webhook that
 * names it and from the repair to the recovery message, each bound to 2 minutes: the bucket unreachable,
 * the backup key deleted in IAM, Litestream stopped, the volume filled past 90 %, the app down, the
 * fallback backup failing. Nothing an alert says holds a secret.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import type { WatchVerdict } from "../../cloud-init/watch-verdict.ts";
import { log, type Relay, startRelay, waitFor } from "../../lab/harness/index.ts";
import { bootKitServer, createKitLab, type KitLab, type KitServer, labEnvironment, printTimings, waitForBootstrap } from "../../lab/kit-lab.ts";
import { makeCertificates } from "../../lab/s3/ca.ts";
import type { ResolvedEnvironment } from "../../app/config/types.ts";

/** kit-watch.timer's period here (servers: 60 s). */
const PERIOD_S = 20;
/** Issue 12: every fault raises its alert within two minutes. */
const BOUND_MS = 120_000;
/** The secret parts of the alert URLs: never in what the server sends. */
const DEAD_MAN_UUID = "5b0e2e00-dead-4a11-beef-0123456789ab";
const WEBHOOK_TOKEN = "T0E2E/B0E2E/e2eWebhookTokenNeverShown";

interface Arrival {
  readonly at: number;
  readonly path: string;
  readonly body: string;
}
interface Latency {
  readonly fault: string;
  readonly alertS: number;
  readonly recoveryS: number;
  readonly message: string;
}

const arrivals: Arrival[] = [];
const latencies: Latency[] = [];
const secrets: string[] = [DEAD_MAN_UUID, WEBHOOK_TOKEN, "e2eWebhookTokenNeverShown"];
let lab: KitLab;
let server: KitServer;
let relay: Relay;
let env: ResolvedEnvironment;
let trustedAt = 0;

const webhooks = (since: number) =>
  arrivals.filter((a) => a.at >= since && a.path.startsWith("/services/")).map((a) => ({ at: a.at, text: (JSON.parse(a.body) as { text: string }).text }));
const pings = (since: number) => arrivals.filter((a) => a.at >= since && a.path.startsWith("/ping/"));
const root = async (command: string | readonly string[]) => (await server.machine.exec(command)).stdout.trim();
const verdict = async () => JSON.parse(await root(["cat", LAYOUT.watchVerdictFile])) as WatchVerdict;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
/** How every alert names the server: client, environment, stack. */
const who = () => `${escape(env.client)} ${escape(env.environment)} \\(${escape(env.stackName)}\\)`;

/** What the watcher was doing, for a wait that gave up. */
async function diagnostics(): Promise<string> {
  const journal = await server.machine.exec(["journalctl", "-u", LAYOUT.units.watch, "-n", "20", "--no-pager", "-o", "cat"], { allowFailure: true });
  const v = await server.machine.exec(["cat", LAYOUT.watchVerdictFile], { allowFailure: true });
  return `webhooks: ${JSON.stringify(webhooks(0).map((w) => w.text))}\nverdict: ${v.stdout}\nkit-watch:\n${journal.stdout}`;
}

/** The first webhook since `since` whose text matches; waits past the bound so that the figure is printed. */
async function webhook(since: number, pattern: RegExp, what: string): Promise<{ at: number; text: string }> {
  return waitFor(() => webhooks(since).find((w) => pattern.test(w.text)), { timeoutMs: BOUND_MS + 60_000, intervalMs: 250, what, diagnostics });
}

/**
 * Each fault starts from a server whose checks are all ok and a full webhook budget: the watcher's 12-an-hour
 * token bucket (its own test is test/watch.int.test.ts's rate limit) would otherwise hold back the later
 * faults' messages, six faults of two messages each in ten minutes. The state file keeps its owner (the
 * app user): it is rewritten in place.
 */
async function fromAllGood(): Promise<number> {
  await waitFor(async () => (await verdict()).state === "ok", { timeoutMs: BOUND_MS, intervalMs: 1000, what: "every check ok", diagnostics });
  const state = `${LAYOUT.watchDir}/state`;
  await root(`s=$(sed 's/^tokens=.*/tokens=12/' ${state}) && printf '%s\\n' "$s" >${state}`);
  return Date.now();
}

/**
 * One fault: `inject` it, wait for the webhook matching `alert` (and a /fail ping), `repair`, wait for the
 * recovery message; both within the bound. Returns the alert's text.
 */
async function fault(name: string, inject: () => Promise<unknown>, alert: RegExp, repair: () => Promise<unknown>): Promise<string> {
  await fromAllGood();
  await inject();
  const faulted = Date.now();
  let raised: { at: number; text: string };
  try {
    raised = await webhook(faulted, new RegExp(`^CRITICAL ${who()}; .*${alert.source}`), `the alert for ${name}`);
  } finally {
    // Repaired even when the alert did not come: the next fault must start from a good server.
    await repair();
  }
  const failPing = pings(faulted).find((p) => p.path === `/ping/${DEAD_MAN_UUID}/fail`);
  const repaired = Date.now();
  const recovered = await webhook(repaired, new RegExp(`^RECOVERED ${who()}: all checks ok at \\d{4}-`), `the recovery message after ${name}`);
  latencies.push({ fault: name, alertS: (raised.at - faulted) / 1000, recoveryS: (recovered.at - repaired) / 1000, message: raised.text });
  expect(raised.at - faulted).toBeLessThanOrEqual(BOUND_MS);
  expect(recovered.at - repaired).toBeLessThanOrEqual(BOUND_MS);
  // The dead-man URL's /fail got the same reasons: a server that is down is silent, a failing one says why.
  expect(failPing?.body).toMatch(new RegExp(`^${who()} critical; .*${alert.source}`));
  return raised.text;
}

beforeAll(async () => {
  lab = await createKitLab();
  const host = lab.network.hostAddress;
  // The receiver: HTTPS, as the client file requires of alert URLs, with a CA of its own.
  const certs = makeCertificates(mkdtempSync(join(lab.teardown.workDir, "alert-receiver-")), ["localhost"], [host]);
  const receiver: Server = createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d));
    req.on("end", () => {
      arrivals.push({ at: Date.now(), path: req.url ?? "", body });
      res.end("OK");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, host, resolve));
  lab.teardown.defer("alert receiver", () => new Promise<void>((resolve) => receiver.close(() => resolve())));
  const base = `https://${host}:${(receiver.address() as { port: number }).port}`;
  relay = await startRelay(lab.teardown, { host, target: lab.s3.endpoint });

  const plain = labEnvironment(lab);
  // Both alerts configured; their URLs are secrets, given to the server as the stack's variables are.
  env = { ...plain, alerts: { ...plain.alerts, deadMan: true, webhook: true } };
  const alertUrls = { deadMan: `${base}/ping/${DEAD_MAN_UUID}`, webhook: `${base}/services/${WEBHOOK_TOKEN}` };
  const backups = lab.s3.forStack(env.stackName);
  secrets.push(backups.secretAccessKey, ...env.app.secrets.map((name) => `e2e-${name.toLowerCase()}`));
  server = await bootKitServer(lab, { name: "watcher", env, s3Endpoint: relay.endpoint, alertUrls, overrides: { watchIntervalSeconds: PERIOD_S } });
  const boot = await waitForBootstrap(server);
  lab.timings.push(`boot -> cloud-init ${boot.status} ${(boot.bootMs / 1000).toFixed(1)} s`);
  expect(boot.status).toBe("done");
  // The receiver's CA, added as Debian adds one (what an operator's own CA would need; public ones are there).
  await server.machine.exec(["sh", "-c", "cat >/usr/local/share/ca-certificates/kit-e2e-alerts.crt"], { input: readFileSync(certs.caFile) });
  await root(["update-ca-certificates"]);
  trustedAt = Date.now();
}, 15 * 60_000);

afterAll(async () => {
  if (latencies.length) {
    const rows = latencies.map((l) => `  ${l.fault.padEnd(28)} ${l.alertS.toFixed(1).padStart(6)} s ${l.recoveryS.toFixed(1).padStart(8)} s   ${l.message}`);
    log(`watcher, period ${PERIOD_S} s: fault → alert, repair → recovery (bound ${BOUND_MS / 1000} s)\n  ${"fault".padEnd(28)} ${"alert".padStart(8)} ${"recovery".padStart(10)}   message\n${rows.join("\n")}`);
  }
  await lab?.teardown.run();
  printTimings(lab, "watcher");
});

test("all good: the dead-man URL gets a good ping every period, the webhook nothing; the verdict is ok", async () => {
  const timer = await root(["systemctl", "show", "-p", "ActiveState", "--value", LAYOUT.units.watchTimer]);
  expect(timer).toBe("active");
  await waitFor(() => pings(trustedAt).length >= 3, { timeoutMs: 4 * PERIOD_S * 1000 + 30_000, intervalMs: 500, what: "three dead-man pings", diagnostics });
  const good = pings(trustedAt);
  expect(good.map((p) => p.path)).toEqual(good.map(() => `/ping/${DEAD_MAN_UUID}`));
  for (const p of good) expect(p.body).toMatch(new RegExp(`^${who()} ok$`));
  // One period apart (the timer's accuracy is 1 s; a run takes about as long as the heartbeat's trip).
  const gaps = good.slice(1).map((p, i) => (p.at - good[i].at) / 1000);
  for (const gap of gaps) expect(Math.abs(gap - PERIOD_S)).toBeLessThan(8);
  expect(webhooks(trustedAt)).toEqual([]);
  const v = await verdict();
  expect(v).toMatchObject({ schema: 1, stack: env.stackName, client: env.client, environment: env.environment, state: "ok" });
  expect(v.facts.replicationLagSeconds).toBeLessThanOrEqual(3);
  lab.timings.push(`good pings ${gaps.map((g) => g.toFixed(1)).join(", ")} s apart; replication lag ${v.facts.replicationLagSeconds} s; run ${v.durationMs} ms`);
}, 5 * 60_000);

test("the bucket unreachable (the relay cut): replication critical naming the connection failure; recovers when it is back", async () => {
  await fault(
    "bucket unreachable",
    () => relay.cut(),
    /replication critical: (\d+ s behind|nothing replicated): heartbeat not in the bucket after \d+ s \(Failed to connect to /,
    () => relay.restore(),
  );
}, 6 * 60_000);

test("access refused (the backup key deleted in IAM): replication critical with S3's code; recovers on the rotated key", async () => {
  const old = lab.s3.forStack(env.stackName).accessKeyId;
  const next = await lab.s3.createAccessKey(env.stackName);
  secrets.push(next.secretAccessKey);
  await fault(
    "access refused",
    () => lab.s3.deleteAccessKey(env.stackName, old),
    /replication critical: (\d+ s behind|nothing replicated): heartbeat not in the bucket after \d+ s \(S3 answered InvalidAccessKeyId\)/,
    // What rotate-keys.ts pushes: the new pair in s3.env (over stdin, never argv), then Litestream restarted.
    async () => {
      const content = `AWS_ACCESS_KEY_ID=${next.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${next.secretAccessKey}\n`;
      await server.machine.exec(["sh", "-c", `cat >${LAYOUT.s3CredentialsFile}.new && chmod 0600 ${LAYOUT.s3CredentialsFile}.new && mv ${LAYOUT.s3CredentialsFile}.new ${LAYOUT.s3CredentialsFile}`], { input: content });
      await root(["systemctl", "restart", LAYOUT.units.litestream]);
    },
  );
}, 6 * 60_000);

test("Litestream stopped: litestream critical naming its unit; recovers when it is started", async () => {
  await fault(
    "Litestream stopped",
    () => root(["systemctl", "stop", LAYOUT.units.litestream]),
    new RegExp(`litestream critical: ${escape(LAYOUT.units.litestream)} is not running`),
    () => root(["systemctl", "start", LAYOUT.units.litestream]),
  );
}, 6 * 60_000);

test("the volume filled past 90 %: volume-disk critical with the percentage; recovers when the file is gone", async () => {
  const fill = `${LAYOUT.volumeMount}/kit-e2e-fill`;
  const text = await fault(
    "volume filled past 90 %",
    async () => {
      const [size, avail] = (await root(["df", "-B1", "--output=size,avail", LAYOUT.volumeMount])).split("\n")[1].trim().split(/\s+/).map(Number);
      // Leave 5 % of the size free: ext4's reserved blocks make that about 94-95 % used as df counts it.
      await root(["fallocate", "-l", String(avail - Math.round(size * 0.05)), fill]);
    },
    /volume-disk critical: (9\d|100) % used/,
    () => root(["rm", "-f", fill]),
  );
  expect(text).not.toMatch(/root-disk critical/);
}, 6 * 60_000);

test("the app down (its slots stopped): app critical with Caddy's 502 (after its 10 s retry); recovers when it is started", async () => {
  const slots = (await root(["systemctl", "list-units", "--state=active", "--plain", "--no-legend", "app@*.service"])).split("\n").map((l) => l.split(" ")[0]).filter(Boolean);
  expect(slots.length).toBeGreaterThan(0);
  await fault(
    "app unhealthy",
    () => root(["systemctl", "stop", ...slots]),
    /app critical: health check: 502/,
    () => root(["systemctl", "start", ...slots]),
  );
}, 6 * 60_000);

test("the fallback backup failing (its directory not writable): fallback and units critical; recovers on a good run", async () => {
  const mode = await root(["stat", "-c", "%a", LAYOUT.backupDir]);
  const text = await fault(
    "fallback backup failing",
    async () => {
      await root(["chmod", "0555", LAYOUT.backupDir]);
      const run = await server.machine.exec(["systemctl", "start", LAYOUT.units.fallbackBackup], { allowFailure: true });
      expect(run.code).not.toBe(0);
    },
    /fallback critical: last run failed \(exit-code\)/,
    async () => {
      await root(["chmod", mode, LAYOUT.backupDir]);
      await root(["systemctl", "start", LAYOUT.units.fallbackBackup]);
    },
  );
  expect(text).toContain(`units critical: failed: ${LAYOUT.units.fallbackBackup}`);
  expect((await verdict()).checks.fallback).toMatchObject({ state: "ok", value: "0 h old, in the bucket" });
}, 6 * 60_000);

test("nothing any alert said holds a key, a secret or the alert URLs' tokens", () => {
  const bodies = arrivals.map((a) => a.body).join("\n");
  expect(arrivals.length).toBeGreaterThan(10);
  for (const secret of secrets) expect({ secret, found: bodies.includes(secret) }).toEqual({ secret, found: false });
});
