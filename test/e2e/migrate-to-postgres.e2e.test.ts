/**
 * scripts/migrate-to-postgres.ts against a booted lab server (issue 16 points 2 and 5), over real SSH, with the
 * lab's stand-in for the managed cluster on the lab network (lab/harness/postgres.ts: TLS verify-full against
 * its CA, scram, admitting only this server's address — the database firewall):
 *   1. a SQLite database of >= 100 MiB under read traffic through Caddy is moved: every read gets 200 or the
 *      503 maintenance page (with Retry-After), never another 5xx nor a connection error; every row compared
 *      (the script's counts and sha256 per table, and here the rows table's count); the app then serves from
 *      PostgreSQL through Caddy, Litestream is stopped and disabled; the maintenance window is printed;
 *   2. POSTs after the switch land in PostgreSQL; --rollback puts the SQLite file back (its rows as at the
 *      switch) and reports exactly those rows as added;
 *   3. a failure injected before the switch (pgloader's command broken on the server) leaves the server on
 *      SQLite with nothing lost: no database.env, Litestream running, the same rows, maintenance off.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { bootKitServer, createKitLab, type KitLab, type KitServer, labEnvironment, labRenderOverrides, printTimings, waitForBootstrap, writeLabClientsDir } from "../../lab/kit-lab.ts";
import { log, REPO_ROOT, run } from "../../lab/harness/index.ts";
import { startPostgres, type LabPostgres } from "../../lab/harness/postgres.ts";
import type { Change } from "../../scripts/lib/migrate-run.ts";

const STACK = "example-staging";
/** Rows seeded before the move: about 110 MiB with the unique index on value. */
const SEED_ROWS = 230_000;
let lab: KitLab;
let server: KitServer;
let pg: LabPostgres;
let dir: string;
let clientsDir: string;

const root = async (command: string) => (await server.machine.exec(command)).stdout.trim();
const count = async () => ((await (await server.http("/rows/count")).json()) as { count: number }).count;

/** Runs the script as an operator would, pointed at the booted server and the lab's PostgreSQL. */
async function migrate(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = [
    join("scripts", "migrate-to-postgres.ts"), STACK, ...args,
    "--host", server.machine.address,
    "--identity", lab.sshKey.privateKeyPath,
    "--known-hosts", lab.knownHostsFile,
    "--outputs", join(dir, "outputs.json"),
    "--clients-dir", clientsDir,
    "--render-overrides", join(dir, "overrides.json"),
    "--database-url-file", join(dir, "database-url"),
    "--database-ca", join(dir, "ca.pem"),
    "--drill-url-file", join(dir, "drill-url"),
  ];
  // tsx, as ops.e2e: the lab's client file imports the shipped one without an extension.
  const result = await run([join(REPO_ROOT, "node_modules", ".bin", "tsx"), ...argv], { cwd: REPO_ROOT, timeoutMs: 5 * 60_000, allowFailure: true });
  log(`$ migrate-to-postgres.ts ${args.join(" ")} -> exit ${result.code}\n${result.stderr}`);
  return result;
}

/** GET /rows/count through Caddy back to back (two readers) until stopped: each answer's status, 503s' Retry-After, errors. */
function readTraffic() {
  const seen = new Map<string, number>();
  let stopped = false;
  const get = () =>
    server.http("/rows/count").then(async (res) => {
      const body = await res.text();
      return res.status === 503 ? `503 retry-after=${res.headers.get("retry-after")} ${/maintenance/.test(body) ? "maintenance page" : body.slice(0, 60)}` : String(res.status);
    });
  const reader = async () => {
    while (!stopped) {
      // A Caddy reload (maintenance on, off) closes idle keep-alive connections at once (README: measured); a
      // GET that meets one is retried once, as browsers retry an idempotent request on a closed reused
      // connection (RFC 9110 9.2.2). Counted apart; a second failure is an error.
      const key = await get().catch(async (first: Error & { cause?: { code?: string } }) => {
        seen.set(`retried once (${first.cause?.code ?? first.message})`, (seen.get(`retried once (${first.cause?.code ?? first.message})`) ?? 0) + 1);
        return get().catch((error: Error) => `error ${error.message}`);
      });
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
  };
  const loops = [reader(), reader()];
  return { stop: async () => ((stopped = true), await Promise.all(loops), Object.fromEntries(seen)) };
}

beforeAll(async () => {
  lab = await createKitLab();
  dir = mkdtempSync(join(lab.teardown.workDir, "migrate-"));
  const env = labEnvironment(lab, STACK);
  // The client file as an operator has it before the move: engine postgres (the server still runs SQLite).
  clientsDir = writeLabClientsDir(lab, join(dir, "clients"));
  const file = join(clientsDir, "example.ts");
  writeFileSync(file, readFileSync(file, "utf8").replace("domain: undefined, sshKeys }", `domain: undefined, sshKeys, database: { engine: "postgres" } }`));
  server = await bootKitServer(lab, { name: "pgmove", env });
  expect((await waitForBootstrap(server)).status).toBe("done");
  pg = await startPostgres(lab.teardown, { host: lab.network.hostAddress, allow: [server.machine.address] });
  writeFileSync(join(dir, "outputs.json"), JSON.stringify({ [STACK]: { ipv4: server.machine.address, bucket: env.names.bucket, region: lab.s3.region } }));
  writeFileSync(join(dir, "overrides.json"), JSON.stringify(labRenderOverrides(lab)));
  writeFileSync(join(dir, "database-url"), `${pg.url()}\n`, { mode: 0o600 });
  writeFileSync(join(dir, "drill-url"), `${pg.drillUrl}\n`, { mode: 0o600 });
  writeFileSync(join(dir, "ca.pem"), pg.caCertificate);
  // >= 100 MiB of rows, written while the app and Litestream are stopped (one writer), then replicated.
  const started = Date.now();
  await root(`systemctl stop app@${env.app.port}.service ${LAYOUT.units.litestream}
runuser -u app -- sqlite3 ${LAYOUT.dbFile} "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${SEED_ROWS}) INSERT INTO rows (value, created_at) SELECT 'seed-' || i || '-' || hex(randomblob(110)), strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM n;"
systemctl start ${LAYOUT.units.litestream} app@${env.app.port}.service
${LAYOUT.libDir}/wait-healthy.sh ${env.app.port} 60`);
  log(`seeded ${SEED_ROWS} rows: ${await root(`du -m ${LAYOUT.dbFile} | cut -f1`)} MiB in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}, 15 * 60_000);
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "migrate-to-postgres");
});

let beforeMove = 0;
const posted: string[] = [];

test("a dry run prints the plan with the database's figures and changes nothing", async () => {
  beforeMove = await count();
  const dry = await migrate(["--dry-run"]);
  expect(dry.code).toBe(0);
  expect(dry.stderr).toMatch(/SQLite: 1\d\d\.\d MiB \(with its WAL\), quick_check ok, 1 app table: rows \d+ rows/);
  expect(dry.stderr).toContain("maintenance on: Caddy answers 503 with Retry-After on every path");
  expect(dry.stderr).toContain("dry run: nothing was changed.");
  expect(await root(`ls ${LAYOUT.databaseEnvFile} 2>/dev/null || echo none`)).toBe("none");
  expect(await pg.psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", { database: "app" })).toBe("0");
}, 120_000);

test("the move under read traffic: 200 or the 503 maintenance page only; every row compared; the app then on PostgreSQL through Caddy", async () => {
  const traffic = readTraffic();
  const run = await migrate([]);
  const answers = await traffic.stop();
  log(`reads during the move: ${JSON.stringify(answers)}`);
  if (run.code !== 0) log(`app@${server.env.app.port} after the failed move:\n${await root(`systemctl status --no-pager app@${server.env.app.port}.service ${LAYOUT.units.restore} | head -40; journalctl --no-pager -o short-monotonic -u app@${server.env.app.port}.service -n 60`).catch((e: Error) => e.message)}\nthe lab PostgreSQL's log:\n${pg.log().split("\n").slice(-40).join("\n")}`);
  expect(run.code).toBe(0);
  const window = Number(/maintenance window: ([\d.]+) s/.exec(run.stderr)?.[1]);
  log(`maintenance window for ${beforeMove} rows: ${window} s`);
  expect(window).toBeGreaterThan(0);
  expect(window).toBeLessThanOrEqual(60);
  expect(Object.keys(answers).filter((k) => !k.startsWith("retried once")).every((k) => k === "200" || k === "503 retry-after=120 maintenance page")).toBe(true);
  expect(answers["200"]).toBeGreaterThan(0);
  expect(answers["503 retry-after=120 maintenance page"]).toBeGreaterThan(0);
  expect(run.stderr).toMatch(new RegExp(`rows +${beforeMove} +${beforeMove} +[0-9a-f]{12} +[0-9a-f]{12} +same`));
  // The app answers from PostgreSQL now: the same rows, its sessions are there, the files are in place.
  expect(await count()).toBe(beforeMove);
  expect(Number(await pg.psql("SELECT count(*) FROM rows", { database: "app" }))).toBe(beforeMove);
  expect(await pg.psql("SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'kit-fixture-app'")).toBe("t");
  expect(await root(`stat -c '%a %U' ${LAYOUT.databaseEnvFile}`)).toBe("600 root");
  expect(await root(`systemctl is-active ${LAYOUT.units.litestream} || true`)).toBe("inactive");
  expect(await root(`systemctl is-enabled ${LAYOUT.units.litestream} || true`)).toBe("disabled");
  expect(JSON.parse(await root(`cat ${LAYOUT.postgresSwitchMarker}`)).tables.rows.rows).toBe(beforeMove);
  for (let i = 0; i < 5; i++) {
    const res = await server.http("/rows", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ value: `after-switch-${i}` }) });
    expect(res.status).toBe(201);
    posted.push(`after-switch-${i}`);
  }
  expect(await count()).toBe(beforeMove + 5);
}, 5 * 60_000);

test("--rollback: SQLite back as it was at the switch, and exactly the rows written on PostgreSQL since are reported", async () => {
  const report = join(dir, "writes.jsonl");
  const run = await migrate(["--rollback", "--yes", "--report", report]);
  expect(run.code).toBe(0);
  expect(run.stderr).toContain("rows: 5 added, 0 changed, 0 deleted");
  const changes = readFileSync(report, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Change);
  expect(changes.map((c) => [c.table, c.kind, (c.row as { value: string }).value])).toEqual(posted.map((v) => ["rows", "added", v]));
  log(`rollback: ${/maintenance window: ([\d.]+) s/.exec(run.stderr)?.[0]}`);
  expect(await count()).toBe(beforeMove);
  expect(await root(`ls ${LAYOUT.databaseEnvFile} 2>/dev/null || echo none`)).toBe("none");
  expect(await root(`systemctl is-active ${LAYOUT.units.litestream}`)).toBe("active");
}, 5 * 60_000);

test("a failure before the switch (pgloader's command broken) leaves the server on SQLite with nothing lost", async () => {
  const load = LAYOUT.pgloaderLoadFile;
  await root(`cp ${load} ${load}.e2e && echo 'LOAD NOTHING FROM nowhere;' >${load}`);
  try {
    const run = await migrate([]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("the move to PostgreSQL failed before the switch");
    expect(run.stderr).toContain("runs on SQLite as before; nothing moved");
  } finally {
    await root(`mv ${load}.e2e ${load}`);
  }
  expect(await count()).toBe(beforeMove);
  expect((await server.http("/rows/count")).status).toBe(200);
  expect(await root(`ls ${LAYOUT.databaseEnvFile} 2>/dev/null || echo none`)).toBe("none");
  expect(await root(`systemctl is-active ${LAYOUT.units.litestream}`)).toBe("active");
  const res = await server.http("/rows", { method: "POST" });
  expect(res.status).toBe(201);
}, 5 * 60_000);
