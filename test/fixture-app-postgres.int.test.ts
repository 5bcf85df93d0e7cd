/**
 * The fixture app on PostgreSQL (issue 16 point 3), through Caddy, on loopback: the lab's stand-in cluster
 * (startPostgres: TLS only, verify-full against its CA), the app cloned from the lab's git fixture as a
 * server clones it (with its vendored PostgreSQL client, outside this checkout, the npm registry
 * unreachable), and Debian's Caddy with the server's Caddyfile (rendered by serverFiles; only its site
 * address and upstream port point at this test's ports). Same routes and answers as on SQLite, migrations
 * recorded in kit_schema_version, the rows table as the design has it, draining on SIGTERM, and /healthz
 * following the database down and up.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, lstatSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../cloud-init/layout.ts";
import { serverFiles } from "../cloud-init/server-files.ts";
import { concreteServerValues, shippedEnvironment } from "../lab/environments.ts";
import { createAppRepo } from "../lab/harness/git-fixture.ts";
import { DENO_BIN, REPO_ROOT } from "../lab/harness/paths.ts";
import { startPostgres, type LabPostgres } from "../lab/harness/postgres.ts";
import { run, seconds, tail } from "../lab/harness/process.ts";
import { processIdentity, Teardown } from "../lab/harness/teardown.ts";
import { waitFor } from "../lab/harness/wait.ts";
import { freePort } from "../lab/local/sshd.ts";

let teardown: Teardown;
let pg: LabPostgres;
let appDir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  teardown = await Teardown.begin();
  pg = await startPostgres(teardown);
  // As a server gets the app: a clone of the lab's git fixture, away from this checkout's node_modules.
  const repo = await createAppRepo(teardown);
  appDir = join(teardown.workDir, "release");
  await run(["git", "clone", "--quiet", repo.bareDir, appDir]);
  const caFile = join(teardown.workDir, "postgres-ca.crt");
  writeFileSync(caFile, pg.caCertificate);
  env = {
    PATH: process.env.PATH,
    HOME: teardown.workDir,
    DENO_DIR: join(teardown.workDir, "deno"),
    DENO_NO_UPDATE_CHECK: "1",
    NO_COLOR: "1",
    // Offline, as on a lab server: anything fetched from npm would fail here.
    NPM_CONFIG_REGISTRY: "http://127.0.0.1:9/",
    // What /etc/kit/database.env holds on a server on PostgreSQL.
    DATABASE_URL: pg.url(),
    PGSSLROOTCERT: caFile,
  };
});
afterAll(() => teardown?.run());

const task = (name: string, extra: NodeJS.ProcessEnv = {}) =>
  run([DENO_BIN, "task", name], { cwd: appDir, env: { ...env, ...extra }, allowFailure: true });

test("the app's repository carries its PostgreSQL client as files (vendor/postgres, the kit's pinned copy), not the checkout's symlink", async () => {
  const staged = (await run(["git", "-C", appDir, "ls-files", "--stage"])).stdout.trim().split("\n");
  const modes = new Map(staged.map((line) => [line.split("\t")[1], line.split(" ")[0]]));
  expect([modes.get("deno.json"), modes.get("vendor/postgres/package.json"), modes.get("vendor/postgres/src/index.js")]).toEqual(["100644", "100644", "100644"]);
  expect(staged.filter((line) => line.startsWith("120000"))).toEqual([]); // no symlink in the repository
  const vendored = JSON.parse((await run(["git", "-C", appDir, "show", "HEAD:vendor/postgres/package.json"])).stdout) as { version: string };
  const root = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { devDependencies: Record<string, string> };
  expect(vendored.version).toBe(root.devDependencies.postgres);
  // The checkout keeps its symlink into node_modules (the copy happened in the lab's repository only).
  expect(lstatSync(join(REPO_ROOT, "test/fixtures/app/vendor/postgres")).isSymbolicLink()).toBe(true);
  expect(existsSync(join(REPO_ROOT, "node_modules/postgres/package.json"))).toBe(true);
});

test("migrate creates kit_schema_version and the rows table as designed, once; a second run changes nothing", async () => {
  const first = await task("migrate");
  expect(first).toMatchObject({ code: 0 });
  expect(first.stdout).toContain("migrate: applied migration 1");
  const second = await task("migrate");
  expect(second).toMatchObject({ code: 0 });
  expect(second.stdout).toContain("migrate: schema at version 1 (was 1)");
  expect(second.stdout).not.toContain("applied");
  expect(await pg.psql("SELECT version FROM kit_schema_version", { database: pg.database })).toBe("1");
  const columns = await pg.psql(
    "SELECT column_name, data_type, is_nullable, coalesce(identity_generation, '') FROM information_schema.columns WHERE table_name = 'rows' ORDER BY ordinal_position",
    { database: pg.database },
  );
  expect(columns.split("\n")).toEqual(["id|bigint|NO|BY DEFAULT", "value|text|NO|", "created_at|text|NO|"]);
  const constraints = await pg.psql(
    "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'rows'::regclass ORDER BY contype",
    { database: pg.database },
  );
  expect(constraints.split("\n")).toEqual(["p|PRIMARY KEY (id)", "u|UNIQUE (value)"]);
  // The app user owns what it made (a migration's tables are the app's, not the admin's).
  expect(await pg.psql("SELECT tableowner FROM pg_tables WHERE tablename IN ('rows', 'kit_schema_version')", { database: pg.database })).toBe("app\napp");
});

test("FAIL_MIGRATION=1 exits non-zero and rolls its change back (DDL is transactional)", async () => {
  const failed = await task("migrate", { FAIL_MIGRATION: "1" });
  expect(failed.code).not.toBe(0);
  expect(failed.stderr).toContain("migrate: migration 2 failed and was rolled back");
  expect(await pg.psql("SELECT max(version) FROM kit_schema_version", { database: pg.database })).toBe("1");
  expect(await pg.psql("SELECT to_regclass('broken_migration') IS NULL", { database: pg.database })).toBe("t");
});

test("two servers migrating a fresh database at the same moment apply each migration once", async () => {
  await pg.psql(`CREATE DATABASE app_race OWNER ${pg.user}`);
  const race = { DATABASE_URL: pg.url("app_race") };
  const [a, b] = await Promise.all([task("migrate", race), task("migrate", race)]);
  expect([a.code, b.code]).toEqual([0, 0]);
  expect([a.stdout, b.stdout].filter((out) => out.includes("applied migration 1"))).toHaveLength(1);
  expect(await pg.psql("SELECT version FROM kit_schema_version", { database: "app_race" })).toBe("1");
});

test("sslmode=verify-full without a CA is refused with what to set", async () => {
  const { PGSSLROOTCERT: _, ...withoutCa } = env;
  const result = await run([DENO_BIN, "task", "migrate"], { cwd: appDir, env: withoutCa, allowFailure: true });
  expect(result.code).not.toBe(0);
  expect(result.stderr).toContain("sslmode=verify-full but no CA to verify against: set PGSSLROOTCERT");
});

describe("through Caddy", () => {
  let app: ChildProcess;
  let appExit: Promise<number | null>;
  let base: string;
  const post = (value?: string) =>
    fetch(`${base}/rows`, value === undefined ? { method: "POST" } : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ value }) });
  const getJson = async (path: string) => {
    const response = await fetch(`${base}${path}`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    const appPort = await freePort();
    const caddyPort = await freePort();
    base = `http://127.0.0.1:${caddyPort}`;
    const started = Date.now();
    let output = "";
    app = spawn(DENO_BIN, ["task", "start"], { cwd: appDir, env: { ...env, PORT: String(appPort) }, stdio: ["ignore", "pipe", "pipe"] });
    app.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    app.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    appExit = once(app, "exit").then(([code]) => code as number | null);
    teardown.defer("fixture app", () => void app.kill("SIGKILL"));

    const caddyfile = join(teardown.workDir, "Caddyfile");
    writeFileSync(caddyfile, serverCaddyfile(caddyPort, appPort));
    const caddy = spawn("caddy", ["run", "--adapter", "caddyfile", "--config", caddyfile], {
      env: { PATH: process.env.PATH, HOME: teardown.workDir, XDG_DATA_HOME: join(teardown.workDir, "xdg"), XDG_CONFIG_HOME: join(teardown.workDir, "xdg") },
      stdio: "ignore",
    });
    const identity = caddy.pid ? processIdentity(caddy.pid) : undefined;
    if (identity) teardown.track({ kind: "process", ...identity });
    await waitFor(async () => (await fetch(`${base}/healthz`)).status === 200, {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: "the app's /healthz through Caddy",
      diagnostics: async () => `app output:\n${tail(output, 20)}`,
    });
    console.log(`app on PostgreSQL up behind Caddy in ${seconds(Date.now() - started)}`);
  });

  test("the routes answer as on SQLite, and the rows are committed in PostgreSQL", async () => {
    const first = await post();
    expect(first.status).toBe(201);
    const firstRow = (await first.json()) as { id: number; value: string };
    expect(firstRow).toEqual({ id: expect.any(Number), value: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(await post("sentinel").then((r) => r.status)).toBe(201);
    const duplicate = await post("sentinel");
    expect(duplicate.status).toBe(409);
    expect(await getJson("/rows/count")).toEqual({ status: 200, body: { count: 2 } });
    expect(await getJson("/rows/max")).toEqual({ status: 200, body: { max: firstRow.id + 1 } });
    expect(await getJson("/rows/value/sentinel")).toEqual({ status: 200, body: { id: firstRow.id + 1, value: "sentinel" } });
    expect((await getJson("/rows/value/missing")).status).toBe(404);
    expect((await getJson("/nowhere")).status).toBe(404);
    // Another session sees them at once; created_at in the format SQLite's default writes.
    const rows = await pg.psql("SELECT value, created_at FROM rows ORDER BY id", { database: pg.database });
    expect(rows.split("\n")).toEqual([
      expect.stringMatching(new RegExp(`^${firstRow.value}\\|\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$`)),
      expect.stringMatching(/^sentinel\|\d{4}-\d\d-\d\dT/),
    ]);
  });

  test("40 concurrent writes go through a pool of at most 4 TLS connections", async () => {
    const before = Number((await getJson("/rows/count")).body.count);
    const statuses = await Promise.all(Array.from({ length: 40 }, () => post().then((r) => r.status)));
    expect(statuses.filter((s) => s !== 201)).toEqual([]);
    expect(await getJson("/rows/count")).toEqual({ status: 200, body: { count: before + 40 } });
    const sessions = await pg.psql(
      "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'kit-fixture-app'",
    );
    const [count, allTls] = sessions.split("|");
    console.log(`app sessions after 40 concurrent writes: ${count} (all TLS: ${allTls})`);
    expect(Number(count)).toBeGreaterThanOrEqual(1);
    expect(Number(count)).toBeLessThanOrEqual(4);
    expect(allTls).toBe("t");
  });

  test("a statement stuck behind a lock is cancelled by the app's statement_timeout (5 s): a 500 that says so, /healthz stays 200", async () => {
    // Another session holds the rows table, as a long migration or a manual ALTER would.
    const holder = pg.psql("BEGIN; LOCK TABLE rows IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30); COMMIT;", { database: pg.database }).catch((error: Error) => error);
    await waitFor(async () => (await pg.psql("SELECT count(*) FROM pg_locks WHERE relation = 'rows'::regclass AND mode = 'AccessExclusiveLock' AND granted", { database: pg.database })) === "1", {
      timeoutMs: 5_000,
      intervalMs: 50,
      what: "the lock on rows",
    });
    const started = Date.now();
    const stuck = post();
    expect((await getJson("/healthz")).status).toBe(200);
    const response = await stuck;
    const waited = Date.now() - started;
    console.log(`insert behind a held lock: ${response.status} after ${seconds(waited)}`);
    expect(response.status).toBe(500);
    expect(((await response.json()) as { error: string }).error).toContain("canceling statement due to statement timeout");
    expect(waited).toBeGreaterThanOrEqual(4_900);
    expect(waited).toBeLessThan(6_900);
    // Let the holder go (its session ends, the lock with it).
    await pg.psql("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE relation = 'rows'::regclass AND mode = 'AccessExclusiveLock'", { database: pg.database });
    expect(String(await holder)).toMatch(/terminat/);
  });

  test("/healthz is 503 while PostgreSQL is down and 200 once it is back; writes resume", async () => {
    await pg.stop();
    const downAt = Date.now();
    const down = await getJson("/healthz");
    console.log(`/healthz with PostgreSQL stopped: ${down.status} in ${seconds(Date.now() - downAt)}: ${JSON.stringify(down.body)}`);
    expect(down.status).toBe(503);
    expect(down.body.ok).toBe(false);
    expect((await post()).status).toBe(500);
    await pg.start();
    const upAt = Date.now();
    await waitFor(async () => (await fetch(`${base}/healthz`)).status === 200, { timeoutMs: 15_000, intervalMs: 100, what: "/healthz to answer 200 again" });
    console.log(`/healthz 200 again ${seconds(Date.now() - upAt)} after PostgreSQL restarted`);
    expect((await post("after the restart")).status).toBe(201);
  });

  test("SIGTERM drains a request in flight through Caddy, then the app exits 0", async () => {
    const inFlight = fetch(`${base}/slow?ms=1500`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    app.kill("SIGTERM");
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ sleptMs: 1500 });
    expect(await appExit).toBe(0);
    // It closed its sessions on the way out.
    expect(await pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kit-fixture-app'")).toBe("0");
    // Nothing was written into the release (no node_modules, no lock file): it runs from a read-only checkout.
    expect((await run(["git", "-C", appDir, "status", "--porcelain", "--ignored"])).stdout).toBe("");
  });
});

/**
 * The server's Caddyfile as serverFiles renders it for the shipped example, pointed at this test's ports:
 * the site address becomes http://127.0.0.1:<caddyPort>, the upstream the app's port; a global block turns
 * the admin endpoint off (parallel test files each run a Caddy).
 */
function serverCaddyfile(caddyPort: number, appPort: number): string {
  const env = shippedEnvironment("example-prod");
  const rendered = serverFiles(env, concreteServerValues(env)).find((file) => file.path === LAYOUT.caddyfile)!.content;
  const site = /^(\S+) \{$/m;
  const upstream = /reverse_proxy 127\.0\.0\.1:\d+/;
  if (!site.test(rendered) || !upstream.test(rendered)) throw new Error(`the server's Caddyfile changed shape; adapt serverCaddyfile():\n${rendered}`);
  return `{\n\tadmin off\n}\n${rendered.replace(site, `http://127.0.0.1:${caddyPort} {`).replace(upstream, `reverse_proxy 127.0.0.1:${appPort}`)}`;
}

test("verify-full against a certificate that names the server's IP address only (the lab network's, a private IP): the app's migrate task connects", async () => {
  // postgres.js gives TLS no servername for an IP host, and Deno's TLS then checks the certificate against
  // "localhost": the 127.0.0.1 cluster above names localhost too, this one does not (pg.ts checks the URL's host).
  const ipOnly = await startPostgres(teardown, { host: "127.0.0.2", allow: ["127.0.0.0/8"] });
  const caFile = join(teardown.workDir, "ip-only-ca.crt");
  writeFileSync(caFile, ipOnly.caCertificate);
  const result = await task("migrate", { DATABASE_URL: ipOnly.url(), PGSSLROOTCERT: caFile });
  expect(result.stderr).not.toContain("does not match certificate's altnames");
  expect(result).toMatchObject({ code: 0 });
  expect(await ipOnly.psql("SELECT count(*) FROM kit_schema_version", { database: "app" })).toBe("1");
});
