/**
 * Steady HTTP load through a site, as the deploy benchmark (scripts/bench/deploy-under-load.ts) and the ops
 * e2e test send it: clients sending GET /rows/count or POST /rows back to back, on one keep-alive connection
 * (as a browser) or a new connection per request, counting what succeeded and what failed and why.
 */
import { Agent, request } from "node:http";

export interface Load {
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  maxLatencyMs: number;
}

export type Method = "GET" | "POST";
/** What each method loads: a read, or a write of one row. */
export const PATHS: Record<Method, string> = { GET: "/rows/count", POST: "/rows" };

/** One request with node:http (5 s timeout): resolves with the status, rejects with the socket error. */
function send(url: string, agent: Agent, method: Method = "GET"): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, method, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.on("error", reject);
    req.end();
  });
}

/** One client: requests back to back; `keepAlive` reuses its connection (as a browser does), else one per request. */
export async function loop(url: string, until: () => boolean, load: Load, keepAlive: boolean, method: Method): Promise<void> {
  const agent = new Agent({ keepAlive, maxSockets: 1 });
  try {
    while (!until()) {
      const t = Date.now();
      try {
        const status = await send(url, agent, method);
        if (status >= 200 && status < 400) load.ok++;
        else {
          load.failed++;
          load.statuses[status] = (load.statuses[status] ?? 0) + 1;
        }
      } catch (error) {
        load.failed++;
        const key = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
        load.statuses[key] = (load.statuses[key] ?? 0) + 1;
      }
      load.maxLatencyMs = Math.max(load.maxLatencyMs, Date.now() - t);
    }
  } finally {
    agent.destroy();
  }
}

/**
 * One client per shape sending requests back to back to `origin` (GET /rows/count or POST /rows) until
 * `stop()`, which resolves with each shape's counts (the ops e2e test loads its deploys with this).
 */
export function startLoad(origin: string, shapes: readonly { readonly keepAlive: boolean; readonly method: Method }[]) {
  let done = false;
  const loads = shapes.map((shape) => ({ shape, load: { ok: 0, failed: 0, statuses: {}, maxLatencyMs: 0 } as Load }));
  const loops = loads.map(({ shape, load }) => loop(new URL(PATHS[shape.method], origin).href, () => done, load, shape.keepAlive, shape.method));
  return {
    stop: async () => {
      done = true;
      await Promise.all(loops);
      return loads.map(({ shape, load }) => ({ ...shape, ...load }));
    },
  };
}

