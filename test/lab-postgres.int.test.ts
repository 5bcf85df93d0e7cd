/**
 * The lab's stand-in for the managed PostgreSQL cluster (lab/harness/postgres.ts) holds the properties the
 * kit relies on: TLS is required (a plain connection is refused), passwords are checked (scram-sha-256),
 * only admitted client addresses get in (the database firewall), and sslmode=verify-full against the CA it
 * hands out works — while a client pinning another CA is refused; with owner "admin" the databases are the
 * admin's, as on DigitalOcean, and the app user needs the admin's grant on schema public. Clients: psql (what
 * the kit's scripts run on a server) and the npm package `postgres` (what the fixture app uses).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { run, seconds } from "../lab/harness/process.ts";
import { POSTGRES_BIN_DIR, startPostgres, type LabPostgres } from "../lab/harness/postgres.ts";
import { Teardown } from "../lab/harness/teardown.ts";
import { makeCertificates } from "../lab/s3/ca.ts";

const PSQL = join(POSTGRES_BIN_DIR, "psql");

let teardown: Teardown;
let pg: LabPostgres;
let otherCa: string;
let scratch: string;

beforeAll(async () => {
  teardown = await Teardown.begin();
  const started = Date.now();
  pg = await startPostgres(teardown, { host: "127.0.0.1", allow: ["127.0.0.1"] });
  console.log(`lab PostgreSQL ${pg.majorVersion} up on ${pg.host}:${pg.port} in ${seconds(Date.now() - started)} (initdb, TLS, roles, databases)`);
  scratch = mkdtempSync(join(tmpdir(), "lab-postgres-"));
  otherCa = makeCertificates(scratch).caFile;
});
afterAll(async () => {
  await teardown?.run();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** psql as the app would connect: the URL alone, the CA by PGSSLROOTCERT; resolves with stdout or the refusal. */
async function psqlAs(url: string, sql: string, caFile = pg.caFile) {
  const result = await run([PSQL, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], {
    env: { PATH: process.env.PATH, PGSSLROOTCERT: caFile, PGCONNECT_TIMEOUT: "5" },
    allowFailure: true,
  });
  return { code: result.code, out: result.stdout.trim(), err: result.stderr.trim() };
}

test("verify-full against the handed-out CA: the app user reaches both databases over TLS and may create tables", async () => {
  expect(pg.url()).toBe(`postgresql://app:${pg.password}@127.0.0.1:${pg.port}/app?sslmode=verify-full`);
  expect(pg.drillUrl).toBe(pg.url("app_drill"));
  expect(pg.caCertificate).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
  const app = await psqlAs(pg.url(), "CREATE TABLE t (id int); SELECT current_user, current_database(), ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  expect(app).toMatchObject({ code: 0, out: expect.stringMatching(/^app\|app\|t\|TLSv1\.[23]$/) });
  const drill = await psqlAs(pg.drillUrl, "CREATE TABLE t (id int); SELECT current_database()");
  expect(drill).toMatchObject({ code: 0, out: "app_drill" });
  console.log(`psql verify-full: ${app.out}`);

  // The fixture app's client: the URL plus the CA passed as `ssl.ca` (postgres.js does not read PGSSLROOTCERT).
  const sql = postgres(pg.url(), { ssl: { ca: pg.caCertificate }, max: 1 });
  try {
    const [row] = await sql`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`;
    expect(row.ssl).toBe(true);
  } finally {
    await sql.end();
  }
});

test("TLS is required: a plain connection is refused by pg_hba (no hostnossl line)", async () => {
  const plain = await psqlAs(pg.url().replace("sslmode=verify-full", "sslmode=disable"), "SELECT 1");
  expect(plain.code).not.toBe(0);
  expect(plain.err).toContain(`no pg_hba.conf entry for host "127.0.0.1", user "app", database "app", no encryption`);
});

test("a wrong password is refused", async () => {
  const wrong = await psqlAs(pg.url().replace(pg.password, "not-the-password"), "SELECT 1");
  expect(wrong.code).not.toBe(0);
  expect(wrong.err).toContain(`password authentication failed for user "app"`);
});

test("a client pinning another CA is refused: verify-full checks the server's certificate", async () => {
  const otherPin = await psqlAs(pg.url(), "SELECT 1", otherCa);
  expect(otherPin.code).not.toBe(0);
  expect(otherPin.err).toMatch(/certificate verify failed/);
  const sql = postgres(pg.url(), { ssl: { ca: readFileSync(otherCa, "utf8") }, max: 1, connect_timeout: 5 });
  await expect(sql`SELECT 1`).rejects.toThrow(/self[- ]signed|unable to verify|unable to get local issuer/i);
  await sql.end();
});

test("an address outside the allowed list is refused (the database firewall); the same request from an admitted address works", async () => {
  // Loopback: a socket bound to 127.0.0.3 reaches the server on 127.0.0.1 from an address pg_hba does not admit.
  // (postgres.js's `socket` option is not in its type declarations: passed as a variable, not a literal.)
  const from = (localAddress: string) => {
    const options = { ssl: { ca: pg.caCertificate }, max: 1, connect_timeout: 5, socket: () => connect({ host: pg.host, port: pg.port, localAddress }) };
    return postgres(pg.url(), options);
  };
  const outside = from("127.0.0.3");
  await expect(outside`SELECT 1`).rejects.toThrow(`no pg_hba.conf entry for host "127.0.0.3", user "app", database "app", SSL encryption`);
  await outside.end();
  const inside = from("127.0.0.1");
  const [row] = await inside`SELECT inet_client_addr()::text AS addr`;
  expect(row.addr).toBe("127.0.0.1/32");
  await inside.end();
});

test("stop() cuts the server off and start() brings it back on the same port with the data", async () => {
  await psqlAs(pg.url(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')");
  await pg.stop();
  expect(pg.running()).toBe(false);
  const down = await psqlAs(pg.url(), "SELECT 1");
  expect(down.err).toMatch(/Connection refused/);
  const started = Date.now();
  await pg.start();
  console.log(`restart: ${seconds(Date.now() - started)}`);
  expect(await psqlAs(pg.url(), "SELECT v FROM kept")).toMatchObject({ code: 0, out: "still here" });
  expect(await pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'app' AND NOT rolsuper")).toBe("1");
});

test("the admin (doadmin) connects over TLS; with owner \"admin\", as on DigitalOcean, the app user may create nothing until the admin grants schema public", async () => {
  expect(() => pg.adminUrl()).toThrow(/no doadmin: start it with \{ owner: "admin" \}/);
  const asOnDo = await startPostgres(teardown, { owner: "admin" });
  const url = asOnDo.url();
  const ca = join(scratch, "do-like-ca.pem");
  writeFileSync(ca, asOnDo.caCertificate);
  expect(await psqlAs(asOnDo.adminUrl(), "SELECT current_user, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user", ca)).toMatchObject({ code: 0, out: "doadmin|f|t|t" });
  const refused = await psqlAs(url, "CREATE TABLE t (id int)", ca);
  expect(refused.code).not.toBe(0);
  expect(refused.err).toContain("permission denied for schema public");
  console.log(`app user in an admin-owned database: ${refused.err.split("\n")[0]}`);
  for (const db of [asOnDo.database, asOnDo.drillDatabase]) {
    expect(await psqlAs(asOnDo.adminUrl(db), `GRANT ALL ON SCHEMA public TO ${asOnDo.user}`, ca)).toMatchObject({ code: 0 });
  }
  expect(await psqlAs(url, "CREATE TABLE t (id int); SELECT tableowner FROM pg_tables WHERE tablename = 't'", ca)).toMatchObject({ code: 0, out: "app" });
  expect(await psqlAs(asOnDo.drillUrl, "CREATE TABLE t (id int)", ca)).toMatchObject({ code: 0 });
});

test("allow entries are checked before anything starts", async () => {
  await expect(startPostgres(teardown, { allow: ["10.0.0.300"] })).rejects.toThrow(/allow entry "10.0.0.300" is not an IP address or CIDR/);
  await expect(startPostgres(teardown, { allow: ["10.0.0.0/33"] })).rejects.toThrow(/allow entry "10.0.0.0\/33"/);
});
