/**
 * The lab's stand-in for a DigitalOcean load balancer in front of `servers` > 1: Debian's Caddy on the host,
 * spreading requests over the servers' port 80 (`least_conn`, not `round_robin`: Caddy 2.6.2's round robin
 * answers "no upstreams available" now and then while one of two servers is down, its shared counter racing
 * between concurrent requests — measured here, 1 in ~10 000 requests), with ACTIVE health checks like the LB's (HTTP GET of the app's
 * health path on each server every `intervalSeconds`; a server that fails one leaves rotation until it
 * passes again). Like the DO LB it does not retry a failed request on another server (Caddy's default
 * lb_try_duration 0), so a request sent to a server that cannot answer fails in the client: the e2e counts it.
 *
 * It listens on one address and port (the lab network's host address, or loopback); its admin API is on a
 * loopback port of its own (`upstreams()` reads how many requests each server has been sent). The process
 * is journaled with the teardown (a crashed run's Caddy is killed by the next run), its files are in the
 * teardown's work dir.
 */
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import { settlesWithin, tail } from "./process.ts";
import { processIdentity, type Teardown } from "./teardown.ts";
import { GiveUp, waitFor } from "./wait.ts";

export interface LoadBalancerOptions {
  /** Address to listen on. @default "127.0.0.1" */
  readonly host?: string;
  /** @default a free port */
  readonly port?: number;
  /** The servers, `address:port` (their Caddy), in order. */
  readonly upstreams: readonly string[];
  /** The path the health check GETs on each server (the app's health path, answered through Caddy). */
  readonly healthPath: string;
  /** @default 2 */
  readonly intervalSeconds?: number;
  /** @default 2 */
  readonly timeoutSeconds?: number;
}

export interface UpstreamState {
  readonly address: string;
  /** Requests in flight to it right now. */
  readonly num_requests: number;
  readonly fails: number;
}

export interface LabLoadBalancer {
  /** http://host:port */
  readonly url: string;
  readonly caddyfile: string;
  /** Caddy's view of each server (its admin API's /reverse_proxy/upstreams). */
  upstreams(): Promise<UpstreamState[]>;
  /** Caddy's log (health-check transitions are logged there: "host is down" / "host is up"). */
  log(): string;
  stop(): Promise<void>;
}

export function loadBalancerCaddyfile(o: { host: string; port: number; adminPort: number; storage: string } & Pick<LoadBalancerOptions, "upstreams" | "healthPath" | "intervalSeconds" | "timeoutSeconds">): string {
  return `{
	admin 127.0.0.1:${o.adminPort}
	auto_https off
	storage file_system ${o.storage}
}
http://${o.host}:${o.port} {
	reverse_proxy ${o.upstreams.join(" ")} {
		lb_policy least_conn
		health_uri ${o.healthPath}
		health_interval ${o.intervalSeconds ?? 2}s
		health_timeout ${o.timeoutSeconds ?? 2}s
		health_status 200
	}
}
`;
}

/** A free TCP port on `host` (the kernel's pick; closed again before it is used). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** Starts the stand-in and waits until its health checks have found every server up. */
export async function startLoadBalancer(teardown: Teardown, options: LoadBalancerOptions): Promise<LabLoadBalancer> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? (await freePort(host));
  const adminPort = await freePort();
  const dir = join(teardown.workDir, `load-balancer-${port}`);
  mkdirSync(join(dir, "storage"), { recursive: true });
  const caddyfile = loadBalancerCaddyfile({ ...options, host, port, adminPort, storage: join(dir, "storage") });
  writeFileSync(join(dir, "Caddyfile"), caddyfile);
  const logFile = join(dir, "caddy.log");
  const fd = openSync(logFile, "a");
  const proc = spawn("caddy", ["run", "--config", join(dir, "Caddyfile"), "--adapter", "caddyfile"], {
    cwd: dir,
    stdio: ["ignore", fd, fd],
    env: { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, "data"), XDG_CONFIG_HOME: join(dir, "config") },
  });
  closeSync(fd);
  let running = true;
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  void exited.then(() => void (running = false));
  const identity = proc.pid ? processIdentity(proc.pid) : undefined;
  if (identity) teardown.track({ kind: "process", ...identity });
  const readLog = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const stop = async () => {
    if (!running) return;
    proc.kill("SIGTERM");
    if (!(await settlesWithin(exited, 10_000))) {
      proc.kill("SIGKILL");
      await exited;
    }
  };
  teardown.defer("lab load balancer", stop);
  const upstreams = async (): Promise<UpstreamState[]> => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/reverse_proxy/upstreams`, { signal: AbortSignal.timeout(5000) });
    return (await res.json()) as UpstreamState[];
  };
  const url = `http://${host}:${port}`;
  // Up once every server answers through it: round robin over N servers, N answers in a row must all be 200.
  await waitFor(
    async () => {
      if (!running) throw new GiveUp(`caddy exited:\n${tail(readLog(), 20)}`);
      for (let i = 0; i < options.upstreams.length * 2; i++) {
        const res = await fetch(`${url}${options.healthPath}`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
        if (res?.status !== 200) return false;
        await res.arrayBuffer();
      }
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: `the lab load balancer on ${url} to reach every server`, diagnostics: async () => tail(readLog(), 20) },
  );
  return { url, caddyfile, upstreams, log: readLog, stop };
}


export interface UserLoad {
  /** Answers per kind of request, and every failure (status or error) with what it was. */
  readonly counts: { keepAlive: number; fresh: number; writes: number; failed: number; failures: string[] };
  /** Ids of the rows acknowledged (201) by POST /rows. */
  readonly ackedIds: number[];
  stop(): Promise<void>;
}

/**
 * Users through the load balancer until stopped, in both shapes: `readers` loops on pooled keep-alive
 * connections (fetch) and as many opening a new connection per request, all GET `readPath`; and `writers`
 * loops POSTing `writePath` (new connection each, no retries). Any status other than 200/201 is a failure.
 */
export function userLoad(url: string, options: { readPath: string; writePath?: string; readers?: number; writers?: number }): UserLoad {
  const counts = { keepAlive: 0, fresh: 0, writes: 0, failed: 0, failures: [] as string[] };
  const ackedIds: number[] = [];
  let running = true;
  const fail = (kind: string, why: string) => {
    counts.failed++;
    if (counts.failures.length < 50) counts.failures.push(`${kind}: ${why}`);
  };
  /** One request on a connection of its own (Connection: close): status and body. */
  const fresh = (method: string, path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${url}${path}`, { method, agent: false, headers: { connection: "close" }, timeout: 15_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("timeout", () => req.destroy(new Error("no answer in 15 s")));
      req.on("error", reject);
      req.end();
    });
  const loop = (kind: string, once: () => Promise<void>) =>
    (async () => {
      while (running) await once().catch((error: Error) => fail(kind, String(error.cause ?? error.message)));
    })();
  const readers = options.readers ?? 2;
  const loops = [
    ...Array.from({ length: readers }, () =>
      loop("keep-alive", async () => {
        const res = await fetch(`${url}${options.readPath}`, { signal: AbortSignal.timeout(15_000) });
        await res.arrayBuffer();
        if (res.status === 200) counts.keepAlive++;
        else fail("keep-alive", `HTTP ${res.status}`);
      }),
    ),
    ...Array.from({ length: readers }, () =>
      loop("new connection", async () => {
        const { status } = await fresh("GET", options.readPath);
        if (status === 200) counts.fresh++;
        else fail("new connection", `HTTP ${status}`);
      }),
    ),
    ...Array.from({ length: options.writePath ? (options.writers ?? 1) : 0 }, () =>
      loop("write", async () => {
        const { status, body } = await fresh("POST", options.writePath!);
        if (status !== 201) return fail("write", `HTTP ${status}`);
        counts.writes++;
        ackedIds.push((JSON.parse(body) as { id: number }).id);
      }),
    ),
  ];
  return {
    counts,
    ackedIds,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}
