/**
 * The drain on real Caddy (Debian's 2.6.2), on loopback: two "servers", each a Caddy running the kit's own
 * rendered Caddyfile (site and upstream pointed at loopback ports, the drain file at a temp path) in front of
 * a small app, behind the lab's load-balancer stand-in (lab/harness/load-balancer.ts: least connections, active
 * health checks). Under both shapes of load (keep-alive, and a new connection per request): draining server 1
 * takes it out of rotation within deploy.ts's drain wait with no failed request, and undraining puts it back
 * within the undrain wait. The rollout on booted servers: test/e2e/multi-server.e2e.test.ts.
 */
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { drainWaitSeconds, undrainWaitSeconds } from "../cloud-init/load-balancer.ts";
import { LAYOUT } from "../cloud-init/layout.ts";
import { serverFiles } from "../cloud-init/server-files.ts";
import { concreteServerValues, shippedEnvironment } from "../lab/environments.ts";
import { freePort, type LabLoadBalancer, startLoadBalancer, userLoad } from "../lab/harness/load-balancer.ts";
import { processIdentity, Teardown } from "../lab/harness/teardown.ts";
import { sleep } from "../lab/harness/process.ts";
import { waitFor } from "../lab/harness/wait.ts";

const env = { ...shippedEnvironment("example-staging"), domain: undefined, servers: 2 };
let teardown: Teardown;
let lb: LabLoadBalancer;
/** User requests each server's app answered (health checks not counted). */
const hits = [0, 0];
const drainFiles: string[] = [];

/** The kit's Caddyfile for this environment, on loopback: site on `port`, proxying to `appPort`, drain file `drain`. */
function kitCaddyfile(port: number, appPort: number, drain: string, storage: string): string {
  const rendered = serverFiles(env, concreteServerValues(env)).find((f) => f.path === LAYOUT.caddyfile)!.content;
  const local = rendered
    .replace(/^:80 \{$/m, `http://127.0.0.1:${port} {`)
    .replace(/reverse_proxy 127\.0\.0\.1:\d+/, `reverse_proxy 127.0.0.1:${appPort}`)
    .split(LAYOUT.lbDrainFile).join(drain);
  expect(local).toContain(`http://127.0.0.1:${port} {`);
  return `{\n\tadmin off\n\tstorage file_system ${storage}\n}\n${local}`;
}

async function startServer(k: number): Promise<number> {
  const app: Server = createServer((req, res) => {
    if (req.url !== env.app.healthPath) hits[k]++;
    res.end(JSON.stringify({ server: k + 1 }));
  });
  const appPort = await freePort();
  await new Promise<void>((resolve) => app.listen(appPort, "127.0.0.1", resolve));
  teardown.defer(`app ${k + 1}`, () => new Promise<void>((resolve) => app.close(() => resolve())));
  const port = await freePort();
  const dir = join(teardown.workDir, `server-${k + 1}`);
  mkdirSync(dir, { recursive: true });
  drainFiles[k] = join(dir, "drain");
  writeFileSync(join(dir, "Caddyfile"), kitCaddyfile(port, appPort, drainFiles[k], join(dir, "storage")));
  const proc = spawn("caddy", ["run", "--config", join(dir, "Caddyfile"), "--adapter", "caddyfile"], { cwd: dir, stdio: "ignore", env: { ...process.env, HOME: dir } });
  const identity = proc.pid ? processIdentity(proc.pid) : undefined;
  if (identity) teardown.track({ kind: "process", ...identity });
  teardown.defer(`caddy ${k + 1}`, () => void proc.kill("SIGTERM"));
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}${env.app.healthPath}`).catch(() => undefined))?.status === 200, { timeoutMs: 15_000, intervalMs: 100, what: `server ${k + 1}'s Caddy` });
  return port;
}

beforeAll(async () => {
  teardown = await Teardown.begin();
  const ports = [await startServer(0), await startServer(1)];
  lb = await startLoadBalancer(teardown, { upstreams: ports.map((p) => `127.0.0.1:${p}`), healthPath: env.app.healthPath, intervalSeconds: 2, timeoutSeconds: 2 });
}, 60_000);
afterAll(async () => {
  await teardown?.run();
});

test("draining server 1 takes it out of the LB's rotation within the drain wait, with no failed request; undraining brings it back", async () => {
  const traffic = userLoad(lb.url, { readPath: "/rows/count" });
  await sleep(1500);
  expect(hits[0]).toBeGreaterThan(0);
  expect(hits[1]).toBeGreaterThan(0);

  const drained = Date.now();
  writeFileSync(drainFiles[0], "");
  // What the LB's health check now gets from server 1, and what users still get from it directly.
  await sleep(drainWaitSeconds() * 1000);
  const atWaitEnd = hits[0];
  await sleep(3000);
  const strays = hits[0] - atWaitEnd;
  const servedMeanwhile = hits[1];

  rmSync(drainFiles[0]);
  const undrained = Date.now();
  const before = hits[0];
  await waitFor(() => hits[0] > before, { timeoutMs: undrainWaitSeconds() * 1000, intervalMs: 100, what: "the LB to send to server 1 again" });
  const backIn = (Date.now() - undrained) / 1000;
  await traffic.stop();
  const { counts } = traffic;
  console.log(
    `drain through the LB stand-in: ${counts.keepAlive} keep-alive + ${counts.fresh} new-connection requests, ${counts.failed} failed; ` +
      `server 1 got ${strays} user requests in the 3 s after the ${drainWaitSeconds()} s drain wait (server 2 served ${servedMeanwhile} in all); ` +
      `back in rotation ${backIn.toFixed(1)} s after the undrain (wait ${undrainWaitSeconds()} s); drained for ${((undrained - drained) / 1000).toFixed(1)} s`,
  );
  if (counts.failed) console.log(lb.log().split("\n").filter((l) => /health|unhealthy|down|error/i.test(l)).slice(-20).join("\n"));
  expect(counts.failures).toEqual([]);
  expect(counts.keepAlive).toBeGreaterThan(100);
  expect(counts.fresh).toBeGreaterThan(100);
  expect(strays).toBe(0);
  expect(backIn).toBeLessThan(undrainWaitSeconds());
}, 60_000);
