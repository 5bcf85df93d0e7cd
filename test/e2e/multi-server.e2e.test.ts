/**
 * `servers: 2` on PostgreSQL: two lab servers booted from the kit's user data, both on the lab's stand-in for
 * the managed cluster (lab/harness/postgres.ts; /etc/kit/database.env and the CA put on each server, Litestream
 * and the SQLite fallback stopped, as the migration leaves a server), behind the stand-in for the DigitalOcean
 * load balancer (lab/harness/load-balancer.ts: Caddy on the host, active health checks on the app's health
 * path). Users read through the LB on keep-alive and on new connections, and write, while scripts/deploy.ts
 * rolls a release out server by server exactly as an operator runs it (outputs with server_ipv4s):
 *   - a good release: 0 failed requests, each server on it, the migration ran once (on server 1);
 *   - a release whose health check fails: the rollout stops on server 1, back on the old release, server 2
 *     untouched, still 0 failed requests.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { bootKitServer, createKitLab, type KitLab, type KitServer, labRenderOverrides, printTimings, waitForBootstrap } from "../../lab/kit-lab.ts";
import { createVolume, FIXTURE_APP_DIR, log, REPO_ROOT, run, startPostgres, type LabPostgres } from "../../lab/harness/index.ts";
import { type LabLoadBalancer, startLoadBalancer, userLoad } from "../../lab/harness/load-balancer.ts";
import { digitalOceanVolumeDevice } from "../../stacks/server/digitalocean.ts";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { loadEnvironment } from "../../scripts/lib/target.ts";

const STACK = "example-staging";
let lab: KitLab;
let env: ResolvedEnvironment;
let servers: KitServer[];
let pg: LabPostgres;
let lb: LabLoadBalancer;
let dir: string;
let clientsDir: string;
const commits: Record<string, string> = {};

/** The shipped example client with staging on PostgreSQL behind a load balancer, the lab's SSH key, no domain. */
function writeClientsDir(): string {
  const out = join(dir, "clients");
  mkdirSync(out, { recursive: true });
  const sshKeys = [{ name: "e2e", publicKey: lab.sshKey.publicKey.trim() }];
  writeFileSync(
    join(out, "example.ts"),
    `import type { ClientConfig } from ${JSON.stringify(join(REPO_ROOT, "app", "config", "types"))};
import shipped from ${JSON.stringify(join(REPO_ROOT, "app", "clients", "example"))};
const sshKeys = ${JSON.stringify(sshKeys)};
const lab: ClientConfig = {
  ...shipped,
  environments: Object.fromEntries(Object.entries(shipped.environments).map(([name, env]) => [
    name,
    name === "staging" ? { ...env, domain: undefined, sshKeys, database: { engine: "postgres" }, servers: 2 } : { ...env, domain: undefined, sshKeys },
  ])),
};
export default lab;
`,
  );
  return out;
}

interface CliResult {
  readonly code: number;
  readonly stderr: string;
  readonly seconds: number;
}

async function deploy(args: readonly string[]): Promise<CliResult> {
  const argv = [
    join("scripts", "deploy.ts"), STACK, ...args,
    "--identity", lab.sshKey.privateKeyPath,
    "--known-hosts", lab.knownHostsFile,
    "--outputs", join(dir, "outputs.json"),
    "--s3-endpoint", lab.s3.endpoint,
    "--clients-dir", clientsDir,
    "--render-overrides", join(dir, "overrides.json"),
  ];
  const started = Date.now();
  const env = { ...process.env, TF_VAR_secret_SESSION_SECRET: "e2e-session_secret" };
  const result = await run([join(REPO_ROOT, "node_modules", ".bin", "tsx"), ...argv], { cwd: REPO_ROOT, env, timeoutMs: 4 * 60_000, allowFailure: true });
  log(`$ deploy.ts ${args.join(" ")} -> exit ${result.code}\n${result.stderr}`);
  return { code: result.code, stderr: result.stderr, seconds: (Date.now() - started) / 1000 };
}

const short = (commit: string) => commit.slice(0, 12);
const root = async (server: KitServer, command: string) => (await server.machine.exec(["bash", "-c", command])).stdout.trim();
/** The commit (first 12 characters, as release directories are named) the server's active slot runs. */
async function serving(server: KitServer): Promise<string> {
  const active = await root(server, `grep -oE 'dnat (ip )?to 127\\.0\\.0\\.1:[0-9]+' ${LAYOUT.upstreamRules} | grep -oE '[0-9]+$' || grep -oE 'reverse_proxy 127\\.0\\.0\\.1:[0-9]+' ${LAYOUT.caddyfile} | grep -oE '[0-9]+$'`);
  return (await root(server, `readlink ${LAYOUT.slotsDir}/${active}`)).replace(/^.*-/, "");
}
/** Seconds each server was out of rotation, as the rollout printed them. */
const outOfRotation = (stderr: string) => [...stderr.matchAll(/^✓ server (\d) \(.*\) serves .*\(([\d.]+) s out\)$/gm)].map((m) => `server ${m[1]} ${m[2]} s`);

/** Server 1 as migrate-to-postgres.ts leaves it: database.env and the CA, the schema in PostgreSQL, SQLite's backups off, the app restarted on it. */
async function migrated(server: KitServer): Promise<void> {
  await server.machine.exec(["bash", "-c", `cat >${LAYOUT.postgresCaFile} && chmod 0644 ${LAYOUT.postgresCaFile}`], { input: pg.caCertificate });
  await server.machine.exec(["bash", "-c", `umask 077 && cat >${LAYOUT.databaseEnvFile}`], {
    input: `DATABASE_URL=${pg.url()}\nPGSSLROOTCERT=${LAYOUT.postgresCaFile}\nDRILL_DATABASE_URL=${pg.drillUrl}\n`,
  });
  const port = server.env.app.port;
  await root(server, `${LAYOUT.libDir}/run-task.sh "$(readlink ${LAYOUT.slotsDir}/${port})" ${server.env.app.tasks.migrate}
systemctl restart app@${port}.service && ${LAYOUT.libDir}/wait-healthy.sh ${port} 30`);
}
/** What backupsToPostgres (scripts/lib/pg-backups.ts) does on a server on PostgreSQL: no Litestream, no SQLite fallback. */
const sqliteBackupsOff = (server: KitServer) => root(server, `systemctl disable --now ${LAYOUT.units.litestream} ${LAYOUT.units.fallbackBackupTimer}`);

function writeOutputs(withDatabase: boolean): void {
  const addresses = servers.map((s) => s.machine.address);
  const database = withDatabase ? { database_url: pg.url(), database_drill_url: pg.drillUrl, database_ca_certificate: pg.caCertificate } : {};
  writeFileSync(
    join(dir, "outputs.json"),
    JSON.stringify({
      [STACK]: {
        ipv4: addresses[0], server_ipv4s: addresses, load_balancer_ip: new URL(lb?.url ?? "http://127.0.0.1").host,
        bucket: env.names.bucket, region: lab.s3.region, access_key_id: lab.s3.accessKeyId, secret_access_key: lab.s3.secretAccessKey, ...database,
      },
    }),
  );
}

beforeAll(async () => {
  lab = await createKitLab();
  dir = mkdtempSync(join(lab.teardown.workDir, "multi-"));
  clientsDir = writeClientsDir();
  env = loadEnvironment(STACK, clientsDir);
  expect([env.servers, env.database.engine]).toEqual([2, "postgres"]);
  commits.v1 = await lab.repo.head();
  writeFileSync(join(dir, "overrides.json"), JSON.stringify(labRenderOverrides(lab)));
  const started = Date.now();
  servers = await Promise.all(
    [1, 2].map(async (k) => {
      // Each droplet has its own volume (the stack's <volume>-<k> for k > 1), at the same device path inside.
      const volume = await createVolume(lab.teardown, { name: `${env.names.volume}-${k}`, byIdPath: digitalOceanVolumeDevice(env.names.volume) });
      return bootKitServer(lab, { name: `multi-${k}`, env, volume, serverIndex: k });
    }),
  );
  const first = await waitForBootstrap(servers[0]);
  expect(first.status).toBe("done");
  lab.timings.push(`server 1 booted: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  pg = await startPostgres(lab.teardown, { host: lab.network.hostAddress, allow: servers.map((s) => s.machine.address) });
  await migrated(servers[0]);
  await sqliteBackupsOff(servers[0]);
  lab.timings.push(`server 1 on PostgreSQL: ${((Date.now() - started) / 1000).toFixed(1)} s`);
}, 8 * 60_000);
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "multi-server");
});

test("server 2's first boot restored nothing and waits for database.env; deploy.ts --config-only puts it there and the bootstrap finishes on PostgreSQL", async () => {
  const waiting = await servers[1].machine.exec(["journalctl", "-u", LAYOUT.units.restore, "--no-pager", "-o", "cat"], { allowFailure: true });
  expect(waiting.stdout).toContain("server 2 of example-staging runs on PostgreSQL only: waiting for");
  expect(await root(servers[1], `test -e ${LAYOUT.dbFile} && echo sqlite || echo none`)).toBe("none");
  expect(await root(servers[1], `systemctl is-active app@${env.app.port}.service || true`)).not.toBe("active");
  writeOutputs(true);
  const pushed = await deploy(["--config-only"]);
  expect(pushed.code).toBe(0);
  expect(pushed.stderr).toMatch(new RegExp(`deploy@${servers[0].machine.address.replace(/\./g, "\\.")}: database\\.env`));
  expect(pushed.stderr).toContain(`kit: updated ${LAYOUT.postgresCaFile} ${LAYOUT.databaseEnvFile}`);
  const second = await waitForBootstrap(servers[1]);
  expect(second.status).toBe("done");
  await sqliteBackupsOff(servers[1]);
  expect(await root(servers[1], `test -e ${LAYOUT.dbFile} && echo sqlite || echo none`)).toBe("none");
  console.log(`server 2 joined: database.env pushed and its bootstrap finished in ${pushed.seconds.toFixed(1)} s (deploy.ts --config-only on both)`);
  lb = await startLoadBalancer(lab.teardown, { upstreams: servers.map((s) => `${s.machine.address}:80`), healthPath: env.app.healthPath });
  writeOutputs(true);
}, 6 * 60_000);

test("both servers answer from the one PostgreSQL database through the LB", async () => {
  const res = await fetch(`${lb.url}/rows`, { method: "POST" });
  expect(res.status).toBe(201);
  const { id } = (await res.json()) as { id: number };
  expect(await pg.psql(`SELECT count(*) FROM rows WHERE id = ${id}`, { database: pg.database })).toBe("1");
  for (const server of servers) {
    const count = (await (await server.http("/rows/count")).json()) as { count: number };
    expect(count.count).toBe(Number(await pg.psql("SELECT count(*) FROM rows", { database: pg.database })));
  }
});

test("a rollout across both servers under load: 0 failed requests, each server on the new release, the migration once", async () => {
  const fixture = readFileSync(join(FIXTURE_APP_DIR, "main.ts"), "utf8");
  commits.v2 = await lab.repo.commit({ "main.ts": fixture.replace("json({ ok: true })", 'json({ ok: true, version: "v2" })') }, "v2: /healthz says its version");
  const dry = await deploy(["--ref", commits.v2, "--dry-run"]);
  expect(dry.code).toBe(0);
  expect(dry.stderr).toMatch(new RegExp(`1\\. deploy@${servers[0].machine.address.replace(/\./g, "\\.")}: drain .* \\(with the migration`));
  expect(dry.stderr).toMatch(new RegExp(`2\\. deploy@${servers[1].machine.address.replace(/\./g, "\\.")}: drain .* \\(no migration`));
  expect(await root(servers[0], `test -e ${LAYOUT.lbDrainFile} && echo drained || echo serving`)).toBe("serving");
  expect([await serving(servers[0]), await serving(servers[1])]).toEqual([short(commits.v1), short(commits.v1)]);

  const load = userLoad(lb.url, { readPath: "/rows/count", writePath: "/rows" });
  const result = await deploy(["--ref", commits.v2]);
  await load.stop();
  const { counts } = load;
  console.log(
    `rollout of v2 across 2 servers: ${result.seconds.toFixed(1)} s (${outOfRotation(result.stderr).join(", ")} out of rotation); ` +
      `users: ${counts.keepAlive} keep-alive + ${counts.fresh} new-connection reads, ${counts.writes} writes, ${counts.failed} failed`,
  );
  expect(result.code).toBe(0);
  expect(counts.failures).toEqual([]);
  expect(counts.keepAlive + counts.fresh).toBeGreaterThan(500);
  expect(counts.writes).toBeGreaterThan(50);
  expect([await serving(servers[0]), await serving(servers[1])]).toEqual([short(commits.v2), short(commits.v2)]);
  // The migration ran on server 1 only; server 2 said why not.
  expect(result.stderr.match(/^▸ \d+\. migrate \(deno task migrate\)$/gm)).toHaveLength(1);
  expect(result.stderr).toContain("not here, it ran on the first server (the servers share PostgreSQL)");
  // Every acknowledged write is in PostgreSQL.
  const stored = new Set((await pg.psql(`SELECT id FROM rows WHERE id >= ${Math.min(...load.ackedIds)}`, { database: pg.database })).split("\n").map(Number));
  expect(load.ackedIds.filter((id) => !stored.has(id))).toEqual([]);
}, 5 * 60_000);

test("a release whose health check fails stops the rollout on server 1: back on the old release, server 2 untouched, 0 failed requests", async () => {
  const deno = JSON.parse(readFileSync(join(FIXTURE_APP_DIR, "deno.json"), "utf8")) as { tasks: Record<string, string> };
  commits.bad = await lab.repo.commit({ "deno.json": `${JSON.stringify({ ...deno, tasks: { ...deno.tasks, start: `FAIL_HEALTHCHECK=1 ${deno.tasks.start}` } }, null, 2)}\n` }, "unhealthy release");
  const load = userLoad(lb.url, { readPath: "/rows/count", writePath: "/rows" });
  const result = await deploy(["--ref", commits.bad, "--health-seconds", "8"]);
  await load.stop();
  const { counts } = load;
  console.log(
    `rollout of an unhealthy release: stopped after ${result.seconds.toFixed(1)} s; ` +
      `users: ${counts.keepAlive} keep-alive + ${counts.fresh} new-connection reads, ${counts.writes} writes, ${counts.failed} failed`,
  );
  expect(result.code).toBe(1);
  expect(result.stderr).toContain("the rollout stopped: deploy of");
  expect(result.stderr).toMatch(/failed on server 1:/);
  expect(result.stderr).toMatch(/server 1 \(.*\): .*\(rolled back: the change failed here\)/);
  expect(result.stderr).toMatch(/server 2 \(.*\): .*\(untouched\)/);
  expect(result.stderr).toContain("servers 2 were not touched");
  expect(counts.failures).toEqual([]);
  expect(counts.keepAlive + counts.fresh).toBeGreaterThan(200);
  expect([await serving(servers[0]), await serving(servers[1])]).toEqual([short(commits.v2), short(commits.v2)]);
  // Server 2 was never drained nor deployed: no release of the bad commit there.
  expect(await root(servers[1], `ls ${LAYOUT.releasesDir}`)).not.toContain(short(commits.bad));
  expect(await root(servers[0], `ls ${LAYOUT.releasesDir}`)).toContain(short(commits.bad));
  // Both back in rotation: the LB sends to each.
  expect(await root(servers[0], `test -e ${LAYOUT.lbDrainFile} && echo drained || echo serving`)).toBe("serving");
}, 5 * 60_000);
