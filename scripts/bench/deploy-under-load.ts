/**
 * Deploy benchmark (not a test): steady HTTP load through Caddy while deploy.ts deploys; reports failed
 * requests (the goal is 0) and the deploy's wall time.
 *
 *   npm run bench:deploy [-- --deploys 3 --concurrency 4]
 *     builds its own lab (lab/kit-lab.ts: root, nspawn, as for `npm run test:e2e`), boots the example
 *     client's user data, and deploys a new commit of the fixture app --deploys times under load.
 *
 *   npx zx scripts/bench/deploy-under-load.ts <stack> --url http://127.0.0.1/ [--concurrency 4] [--ref REF]
 *     [deploy.ts's host flags: --host, --port, --identity, --known-hosts, --outputs, --render-overrides]
 *     against a server you have (only loopback URLs unless --allow-remote).
 *
 * The load is bounded: `--concurrency` clients sending requests back to back (5 s timeout each; keep-alive
 * connections, new connections per request, or both: --keep-alive yes|no|both; `GET /rows/count`, `POST /rows`
 * or both: --method get|post|both) that stop when the deploy ends, and never run longer than --max-seconds
 * (default 300). Each POST adds a row: the rows the database gained must be the ones acknowledged (201).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { main, parseArgs, scriptArgs, say } from "../lib/cli.ts";
import { type Load, loop, type Method, PATHS } from "../lib/http-load.ts";
import { deploy } from "../lib/deploy-run.ts";
import { OpsError } from "../lib/errors.ts";
import { SshRunner } from "../lib/ssh.ts";
import { loadEnvironment, resolveTarget, type Target, type TargetFlags } from "../lib/target.ts";

export interface BenchResult {
  readonly url: string;
  readonly keepAlive: boolean;
  readonly method: Method;
  readonly deploySeconds: number;
  readonly deployFailed: boolean;
  readonly requests: number;
  readonly failedRequests: number;
  readonly failures: Record<string, number>;
  readonly maxLatencyMs: number;
  /** Requests per second over the whole load (2 s before the deploy, the deploy, 2 s after). */
  readonly requestsPerSecond: number;
  /** POST only: rows acknowledged (201) and rows the database gained meanwhile (GET /rows/count before and after). */
  readonly rows?: { readonly acknowledged: number; readonly added: number };
  readonly error?: string;
}

/** The site's row count (GET /rows/count on the same origin), on a connection of its own. */
async function rowCount(url: string): Promise<number> {
  const res = await fetch(new URL(PATHS.GET, url), { headers: { connection: "close" } });
  if (!res.ok) throw new OpsError(`GET ${PATHS.GET} answered ${res.status}`, "is the site up?");
  return ((await res.json()) as { count: number }).count;
}

/** One deploy under load: 2 s of load before, the deploy, 2 s after. `url` is the site's origin. */
export async function deployUnderLoad(o: { target: Target; url: string; concurrency: number; ref?: string; maxSeconds: number; keepAlive: boolean; method?: Method }): Promise<BenchResult> {
  const method = o.method ?? "GET";
  const url = new URL(PATHS[method], o.url).href;
  const runner = new SshRunner(o.target.ssh, o.target.sshSettings);
  const load: Load = { ok: 0, failed: 0, statuses: {}, maxLatencyMs: 0 };
  const deadline = Date.now() + 1000 * o.maxSeconds;
  const rowsBefore = method === "POST" ? await rowCount(o.url) : 0;
  const loadStarted = Date.now();
  let done = false;
  const stop = () => done || Date.now() > deadline;
  const loops = Array.from({ length: o.concurrency }, () => loop(url, stop, load, o.keepAlive, method));
  await new Promise((r) => setTimeout(r, 2000)); // steady state before the deploy starts
  let seconds = 0;
  let error: unknown;
  try {
    seconds = (await deploy({ target: o.target, runner, ref: o.ref })).seconds;
  } catch (e) {
    error = e;
  } finally {
    await new Promise((r) => setTimeout(r, 2000)); // and after it
    done = true;
    await Promise.all(loops);
    await runner.close();
  }
  const loadSeconds = (Date.now() - loadStarted) / 1000;
  const rows = method === "POST" ? { acknowledged: load.ok, added: (await rowCount(o.url)) - rowsBefore } : undefined;
  return {
    url,
    keepAlive: o.keepAlive,
    method,
    deploySeconds: seconds,
    deployFailed: Boolean(error),
    requests: load.ok + load.failed,
    failedRequests: load.failed,
    failures: load.statuses,
    maxLatencyMs: load.maxLatencyMs,
    requestsPerSecond: Math.round((load.ok + load.failed) / loadSeconds),
    rows,
    error: error ? (error as Error).message : undefined,
  };
}

const shapeOf = (r: BenchResult) => `${r.method} ${r.keepAlive ? "keep-alive" : "new connection"}`;
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Builds a lab, boots the example client's server in it, and deploys `deploys` new commits under load. */
async function benchInLab(o: { deploys: number; concurrency: number; maxSeconds: number; keepAlive: readonly boolean[]; methods: readonly Method[] }): Promise<BenchResult[]> {
  const kit = await import("../../lab/kit-lab.ts");
  const { FIXTURE_APP_DIR } = await import("../../lab/harness/index.ts");
  const { readFileSync } = await import("node:fs");
  const stack = "example-staging";
  say("building the lab (test network, mirror, S3, git) and booting the example client's server …");
  const lab = await kit.createKitLab();
  try {
    const env = kit.labEnvironment(lab, stack);
    const server = await kit.bootKitServer(lab, { name: "bench", env });
    const boot = await kit.waitForBootstrap(server);
    if (boot.status !== "done") throw new OpsError(`the lab server did not boot (${boot.status})`, "run npm run test:e2e -- kit-lab-smoke to see why");
    say(`server up at ${server.machine.address} (${(boot.bootMs / 1000).toFixed(1)} s)`);
    const outputs = join(lab.teardown.workDir, "bench-outputs.json");
    const overrides = join(lab.teardown.workDir, "bench-overrides.json");
    writeFileSync(outputs, JSON.stringify({ [stack]: { ipv4: server.machine.address, access_key_id: lab.s3.accessKeyId, secret_access_key: lab.s3.secretAccessKey, region: lab.s3.region } }));
    writeFileSync(overrides, JSON.stringify(kit.labRenderOverrides(lab)));
    const flags: TargetFlags = { outputs, identity: lab.sshKey.privateKeyPath, knownHosts: lab.knownHostsFile, s3Endpoint: lab.s3.endpoint, renderOverrides: overrides };
    // The server was rendered from the lab's environment (its SSH key, not the shipped example's): deploy that.
    const target = resolveTarget(env, flags);
    process.env.TF_VAR_secret_SESSION_SECRET ??= "e2e-session_secret";
    const mainTs = readFileSync(join(FIXTURE_APP_DIR, "main.ts"), "utf8");
    const results: BenchResult[] = [];
    const shapes = o.methods.flatMap((method) => o.keepAlive.map((keepAlive) => ({ method, keepAlive })));
    const plan = shapes.flatMap((shape) => Array.from({ length: o.deploys }, () => shape));
    for (const [n, { keepAlive, method }] of plan.entries()) {
      const i = n + 1;
      const ref = await lab.repo.commit({ "main.ts": mainTs.replace("json({ ok: true })", `json({ ok: true, version: "bench-${i}" })`) }, `bench ${i}`);
      say(`\n── deploy ${i}/${plan.length} of ${ref.slice(0, 12)} under ${o.concurrency} concurrent ${method} ${PATHS[method]} loops (${keepAlive ? "keep-alive" : "Connection: close"})`);
      const result = await deployUnderLoad({ target, url: `http://${server.machine.address}/`, concurrency: o.concurrency, ref, maxSeconds: o.maxSeconds, keepAlive, method });
      const rows = result.rows ? `; rows acknowledged ${result.rows.acknowledged}, added ${result.rows.added}` : "";
      say(`deploy ${result.deployFailed ? `FAILED (${result.error})` : "ok"} in ${result.deploySeconds.toFixed(1)} s; ${result.requests} requests (${result.requestsPerSecond}/s), ${result.failedRequests} failed${rows}`);
      results.push(result);
    }
    return results;
  } finally {
    await lab.teardown.run();
  }
}

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { string: ["url", "concurrency", "ref", "max-seconds", "deploys", "keep-alive", "method"], boolean: ["allow-remote"] });
  // --keep-alive yes|no|both: reuse connections (what a browser does), a new one per request, or both.
  const keepAliveFlag = String(args.flags["keep-alive"] ?? "both");
  if (!["yes", "no", "both"].includes(keepAliveFlag)) throw new OpsError(`--keep-alive ${keepAliveFlag}`, "pass yes, no or both");
  const keepAlive = keepAliveFlag === "both" ? [true, false] : [keepAliveFlag === "yes"];
  // --method get|post|both: reads (GET /rows/count) or writes (POST /rows, one row each).
  const methodFlag = String(args.flags.method ?? "both");
  if (!["get", "post", "both"].includes(methodFlag)) throw new OpsError(`--method ${methodFlag}`, "pass get, post or both");
  const methods: Method[] = methodFlag === "both" ? ["GET", "POST"] : [methodFlag === "get" ? "GET" : "POST"];
  if (args.help) {
    process.stdout.write(
      "Usage: npm run bench:deploy [-- --deploys N --concurrency N --keep-alive yes|no|both --method get|post|both]   (own lab; root)\n" +
        "       npx zx scripts/bench/deploy-under-load.ts <stack> --url URL [--concurrency N] [--ref REF] [--max-seconds N] [--keep-alive yes|no] [--method get|post] [host flags]\n",
    );
    return 0;
  }
  const [stack] = args.positional;
  const url = args.flags.url as string | undefined;
  const concurrency = Number(args.flags.concurrency ?? 4);
  const maxSeconds = Number(args.flags["max-seconds"] ?? 300);
  let results: BenchResult[];
  if (!stack) {
    results = await benchInLab({ deploys: Number(args.flags.deploys ?? 3), concurrency, maxSeconds, keepAlive, methods });
  } else {
    if (!url) throw new OpsError("which URL to load?", "pass --url http://<site>/ (see --help)");
    const host = new URL(url).hostname;
    if (!args.flags["allow-remote"] && !/^(127\.|localhost$|\[?::1\]?$)/.test(host)) {
      throw new OpsError(`${url} is not a loopback address`, "pass --allow-remote to load a real server on purpose");
    }
    const target = resolveTarget(loadEnvironment(stack, args.clientsDir), args.target);
    results = [await deployUnderLoad({ target, url, concurrency, ref: args.flags.ref as string | undefined, maxSeconds, keepAlive: keepAlive[0], method: methods[0] })];
  }
  const ok = results.filter((r) => !r.deployFailed);
  const summary = {
    deploys: results.length,
    deploysFailed: results.length - ok.length,
    medianDeploySeconds: Number(median(ok.map((r) => r.deploySeconds)).toFixed(1)),
    deploySeconds: results.map((r) => Number(r.deploySeconds.toFixed(1))),
    requests: results.reduce((n, r) => n + r.requests, 0),
    failedRequests: results.reduce((n, r) => n + r.failedRequests, 0),
    failedRequestsKeepAlive: results.filter((r) => r.keepAlive).reduce((n, r) => n + r.failedRequests, 0),
    failedRequestsNewConnections: results.filter((r) => !r.keepAlive).reduce((n, r) => n + r.failedRequests, 0),
    failedRequestsPost: results.filter((r) => r.method === "POST").reduce((n, r) => n + r.failedRequests, 0),
    // Every acknowledged row is in the database, and no row was added without an acknowledgement.
    rowsAcknowledged: results.reduce((n, r) => n + (r.rows?.acknowledged ?? 0), 0),
    rowsAdded: results.reduce((n, r) => n + (r.rows?.added ?? 0), 0),
    // Per shape: the median throughput (the cost of Caddy's new upstream connection per request shows here).
    requestsPerSecond: Object.fromEntries([...new Set(results.map(shapeOf))].map((shape) => [shape, median(results.filter((r) => shapeOf(r) === shape).map((r) => r.requestsPerSecond))])),
    maxLatencyMs: Math.max(...results.map((r) => r.maxLatencyMs)),
    runs: results,
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  say(`\n${summary.deploys} deploy(s), ${summary.deploysFailed} failed; median deploy wall time ${summary.medianDeploySeconds} s; ${summary.requests} requests, ${summary.failedRequests} failed (goal 0: ${summary.failedRequestsKeepAlive} on reused keep-alive connections, ${summary.failedRequestsNewConnections} with a new connection per request; ${summary.failedRequestsPost} of them POSTs); rows acknowledged ${summary.rowsAcknowledged}, added ${summary.rowsAdded}; max latency ${summary.maxLatencyMs} ms`);
  if (summary.deploysFailed > 0) throw new OpsError(`${summary.deploysFailed} deploy(s) failed: ${results.find((r) => r.deployFailed)?.error}`, "see the deploy output above");
  return summary.failedRequests === 0 && summary.rowsAcknowledged === summary.rowsAdded ? 0 : 1;
});
