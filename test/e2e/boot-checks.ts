/**
 * What every boot proof checks on a freshly booted kit server, shared by the boot suites (Debian 12 in
 * boot.e2e.test.ts, Debian 13 in debian-13.e2e.test.ts): booted and healthy through Caddy, rows written
 * through the app, and those rows found in an outside restore of the replica.
 */
import { join } from "node:path";
import { restoreReplica, run } from "../../lab/harness/index.ts";
import { bootKitServer, type KitLab, type KitServer, waitForBootstrap } from "../../lab/kit-lab.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";

export const WAIT = { timeoutMs: 60_000, intervalMs: 500 };

/** Boots a server, waits for its bootstrap and for /healthz through Caddy; records the timings in `lab.timings`. */
export async function bootHealthy(lab: KitLab, name: string, options: Omit<Parameters<typeof bootKitServer>[1], "name">): Promise<KitServer> {
  const started = Date.now();
  const booted = await bootKitServer(lab, { name, ...options });
  const result = await waitForBootstrap(booted);
  expect(result.status).toBe("done");
  lab.timings.push(`${name}: boot -> cloud-init done ${(result.bootMs / 1000).toFixed(1)} s`);
  await booted.machine.waitFor(async () => (await booted.http("/healthz").catch(() => undefined))?.status === 200, {
    ...WAIT,
    what: `${name}: GET /healthz through Caddy to answer 200`,
  });
  lab.timings.push(`${name}: boot -> healthy ${((Date.now() - started) / 1000).toFixed(1)} s (including machine setup)`);
  return booted;
}

/**
 * Writers adding rows through the app (Caddy), one row per 50 ms each, until stopped: each acknowledged id and
 * each failure with its time (a test of downtime reads the times; others only that nothing failed).
 */
export function steadyWrites(on: KitServer, writers = 2) {
  let running = true;
  const acked: { id: number; at: number }[] = [];
  const failures: { why: string; at: number }[] = [];
  const loops = Array.from({ length: writers }, async () => {
    while (running) {
      try {
        const res = await on.http("/rows", { method: "POST" });
        if (res.status === 201) acked.push({ id: ((await res.json()) as { id: number }).id, at: Date.now() });
        else failures.push({ why: `HTTP ${res.status}`, at: Date.now() });
      } catch (error) {
        failures.push({ why: String((error as Error).cause ?? error), at: Date.now() });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  return {
    acked,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return { acked, failures };
    },
  };
}

/** Writes `n` rows through the app (Caddy), one after another; returns their ids. */
export async function postRows(on: KitServer, n: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await on.http("/rows", { method: "POST" });
    expect(res.status).toBe(201);
    ids.push(((await res.json()) as { id: number }).id);
  }
  return ids;
}

/** Restores the server's replica on the host (an outside `litestream restore` with the environment's own backup key); returns its row ids. */
export async function restoredIds(lab: KitLab, on: KitServer, label: string): Promise<number[]> {
  const out = join(lab.teardown.workDir, `${label}-${Date.now()}.sqlite3`);
  await restoreReplica(lab.teardown, out, { s3: lab.s3.forStack(on.env.stackName), replicaPath: `${on.env.names.bucketPrefix}/${LAYOUT.bucket.litestream}` });
  const check = await run(["sqlite3", out, "PRAGMA integrity_check;"]);
  expect(check.stdout.trim()).toBe("ok");
  const ids = await run(["sqlite3", out, "SELECT id FROM rows ORDER BY id;"]);
  return ids.stdout.split("\n").filter(Boolean).map(Number);
}

/** Waits until an outside restore holds every id in `ids` (Litestream syncs every second). */
export async function expectReplicated(lab: KitLab, on: KitServer, ids: readonly number[], label: string): Promise<void> {
  let last: number[] = [];
  await on.machine.waitFor(
    async () => {
      last = await restoredIds(lab, on, label);
      return ids.every((id) => last.includes(id));
    },
    { timeoutMs: 30_000, intervalMs: 2_000, what: `${label}: rows ${ids.join(",")} to be restorable from S3 (last restore held ${last.length} rows)` },
  );
}
