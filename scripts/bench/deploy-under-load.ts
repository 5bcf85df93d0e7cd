/**
 * Deploy benchmark (not a test): steady HTTP load against the site while deploy.ts deploys; reports failed
 * requests (the goal is 0) and the deploy's wall time.
 *
 *   npx tsx scripts/bench/deploy-under-load.ts <stack> --url http://127.0.0.1/ [--concurrency 4] [--ref REF]
 *     [deploy.ts's host flags: --host, --port, --identity, --known-hosts, --outputs, --render-overrides]
 *
 * The load is bounded: `--concurrency` loops of GET requests (5 s timeout each) that stop when the deploy
 * ends, and never run longer than --max-seconds (default 300). Only loopback URLs unless --allow-remote.
 */
import { main, parseArgs, say } from "../lib/cli";
import { deploy } from "../lib/deploy-run";
import { OpsError } from "../lib/errors";
import { SshRunner } from "../lib/ssh";
import { loadEnvironment, resolveTarget } from "../lib/target";

interface Load {
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  maxLatencyMs: number;
}

async function loop(url: string, until: () => boolean, load: Load): Promise<void> {
  while (!until()) {
    const t = Date.now();
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      if (res.ok) load.ok++;
      else {
        load.failed++;
        load.statuses[res.status] = (load.statuses[res.status] ?? 0) + 1;
      }
    } catch (error) {
      load.failed++;
      const key = (error as Error).name;
      load.statuses[key] = (load.statuses[key] ?? 0) + 1;
    }
    load.maxLatencyMs = Math.max(load.maxLatencyMs, Date.now() - t);
  }
}

void main(async () => {
  const args = parseArgs(process.argv.slice(2), { string: ["url", "concurrency", "ref", "max-seconds"], boolean: ["allow-remote"] });
  const [stack] = args.positional;
  const url = args.flags.url as string | undefined;
  if (args.help || !stack || !url) {
    process.stdout.write("Usage: npx tsx scripts/bench/deploy-under-load.ts <stack> --url URL [--concurrency N] [--ref REF] [--max-seconds N] [host flags]\n");
    return args.help ? 0 : 1;
  }
  const host = new URL(url).hostname;
  if (!args.flags["allow-remote"] && !/^(127\.|localhost$|\[?::1\]?$)/.test(host)) {
    throw new OpsError(`${url} is not a loopback address`, "pass --allow-remote to load a real server on purpose");
  }
  const target = resolveTarget(loadEnvironment(stack), args.target);
  const runner = new SshRunner(target.ssh, target.sshSettings);
  const load: Load = { ok: 0, failed: 0, statuses: {}, maxLatencyMs: 0 };
  const deadline = Date.now() + 1000 * Number(args.flags["max-seconds"] ?? 300);
  let done = false;
  const stop = () => done || Date.now() > deadline;
  const loops = Array.from({ length: Number(args.flags.concurrency ?? 4) }, () => loop(url, stop, load));
  await new Promise((r) => setTimeout(r, 2000)); // steady state before the deploy starts
  const before = { ...load };
  let seconds = 0;
  let error: unknown;
  try {
    seconds = (await deploy({ target, runner, ref: args.flags.ref as string | undefined })).seconds;
  } catch (e) {
    error = e;
  } finally {
    await new Promise((r) => setTimeout(r, 2000)); // and after it
    done = true;
    await Promise.all(loops);
    await runner.close();
  }
  const result = { stack, url, deploySeconds: seconds, deployFailed: Boolean(error), requests: load.ok + load.failed, failedRequests: load.failed, failures: load.statuses, maxLatencyMs: load.maxLatencyMs, requestsBeforeDeploy: before.ok + before.failed };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  say(`deploy ${error ? "FAILED" : "ok"} in ${seconds.toFixed(1)} s; ${result.requests} requests, ${result.failedRequests} failed (goal 0), max latency ${load.maxLatencyMs} ms`);
  if (error) throw error;
  return load.failed === 0 ? 0 : 1;
});
