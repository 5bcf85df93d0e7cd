/**
 * The stack's database URLs work as written. Terraform evaluates each output's expression exactly as the stack
 * synthesizes it (terraform console; the references given the lab's values, with a password full of the characters
 * a URI reserves), and the result connects to the lab's stand-in cluster (lab/harness/postgres.ts: TLS, scram, the
 * admitted address only) with sslmode=verify-full — through psql (libpq, what the kit's scripts run on a server) and
 * through the npm package `postgres` (the fixture app's client).
 *
 * It also shows why the stack outputs database_admin_url: a database the cluster's admin owns — as every database
 * digitalocean_database_db creates is doadmin's — gives the app user no CREATE on schema public (PostgreSQL 15+),
 * until the admin grants it once.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { shippedEnvironment } from "../lab/environments.ts";
import { run } from "../lab/harness/process.ts";
import { POSTGRES_BIN_DIR, startPostgres, type LabPostgres } from "../lab/harness/postgres.ts";
import { Teardown } from "../lab/harness/teardown.ts";
import { synthesize } from "./support/synth.ts";

const PSQL = join(POSTGRES_BIN_DIR, "psql");
const TERRAFORM = ["terraform", "tofu"].find((bin) => spawnSync(bin, ["version"], { encoding: "utf8" }).status === 0);

/** Every character RFC 3986 reserves in userinfo, a space, a plus and a percent sign. */
const APP_PASSWORD = "p@ss w:rd/?#[]!$&'()*+,;=%25~-._";
const ADMIN_PASSWORD = "Adm1n+/@:%";

let teardown: Teardown;
let pg: LabPostgres;
let scratch: string;
const outputs = synthesize(shippedEnvironment("examplepg-prod")).json.output as Record<string, { value: string }>;

beforeAll(async () => {
  teardown = await Teardown.begin();
  pg = await startPostgres(teardown, { host: "127.0.0.1", allow: ["127.0.0.1"] });
  const quoted = (text: string) => `$pw$${text}$pw$`;
  await pg.psql(`ALTER ROLE app PASSWORD ${quoted(APP_PASSWORD)}`);
  // DigitalOcean's cluster admin, and a database it owns as digitalocean_database_db's are.
  await pg.psql(`CREATE ROLE doadmin LOGIN CREATEROLE PASSWORD ${quoted(ADMIN_PASSWORD)}`);
  await pg.psql("CREATE DATABASE admins OWNER doadmin");
  scratch = mkdtempSync(join(tmpdir(), "kit-pg-url-"));
});
afterAll(async () => {
  await teardown?.run();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/**
 * An output's expression evaluated by Terraform, each reference given its value here as a string literal (the
 * template's literal parts quoted for HCL, its interpolations kept as they are).
 */
function evaluate(output: string, values: Record<string, string>): string {
  const expression = outputs[output].value;
  const hclString = (text: string) => text.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\$\{/g, () => "$${").replace(/%\{/g, "%%{");
  const parts = expression.split(/(\$\{[^{}]*\})/);
  const template = parts
    .map((part) => {
      const interpolation = /^\$\{([^{}]*)\}$/.exec(part);
      if (!interpolation) return hclString(part);
      const substituted = interpolation[1].replace(/\bdigitalocean_[a-z_]+\.[A-Za-z0-9_]+\.[a-z_]+/g, (ref: string) => {
        const [type, , attribute] = ref.split(".");
        const value = values[`${type.replace("digitalocean_database_", "")}.${attribute}`];
        if (value === undefined) throw new Error(`no value for ${ref} in ${output}`);
        return `"${hclString(value)}"`;
      });
      return `\${${substituted}}`;
    })
    .join("");
  const result = spawnSync(TERRAFORM!, ["console"], {
    cwd: scratch,
    input: `"${template}"\n`,
    encoding: "utf8",
    env: { ...process.env, CHECKPOINT_DISABLE: "1", TF_CLI_CONFIG_FILE: "/dev/null" },
  });
  if (result.status !== 0) throw new Error(`terraform console: ${result.stderr}`);
  return JSON.parse(result.stdout.trim()) as string;
}

const appValues = (db: string) => ({
  "user.name": "app",
  "user.password": APP_PASSWORD,
  "cluster.private_host": pg.host,
  "cluster.port": String(pg.port),
  "db.name": db,
});

async function psqlAs(url: string, sql: string) {
  const result = await run([PSQL, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], {
    env: { PATH: process.env.PATH, PGSSLROOTCERT: pg.caFile, PGCONNECT_TIMEOUT: "5" },
    allowFailure: true,
  });
  return { code: result.code, out: result.stdout.trim(), err: result.stderr.trim() };
}

test("terraform or tofu is on PATH", () => {
  expect(TERRAFORM).toBeDefined();
});

test("database_url and database_drill_url, as Terraform renders them, connect with verify-full (psql and postgres.js)", async () => {
  const url = evaluate("database_url", appValues("app"));
  const drillUrl = evaluate("database_drill_url", appValues("app_drill"));
  console.log(`database_url as rendered: ${url.replace(/:[^:@]*@/, ":<password>@")}`);
  expect(url).toMatch(new RegExp(`^postgresql://app:[^@]+@127\\.0\\.0\\.1:${pg.port}/app\\?sslmode=verify-full$`));
  expect(decodeURIComponent(new URL(url).password)).toBe(APP_PASSWORD);

  const viaPsql = await psqlAs(url, "SELECT current_user, current_database(), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  expect(viaPsql).toMatchObject({ code: 0, out: "app|app|t" });
  expect(await psqlAs(drillUrl, "SELECT current_database()")).toMatchObject({ code: 0, out: "app_drill" });

  const sql = postgres(url, { ssl: { ca: pg.caCertificate }, max: 1 });
  try {
    const [row] = await sql`SELECT current_user AS who, current_database() AS db`;
    expect(row).toEqual({ who: "app", db: "app" });
  } finally {
    await sql.end();
  }
});

test("database_admin_url connects as the admin; in a database the admin owns the app user may create nothing until the admin grants it", async () => {
  const adminUrl = evaluate("database_admin_url", { "cluster.user": "doadmin", "cluster.password": ADMIN_PASSWORD, "cluster.private_host": pg.host, "cluster.port": String(pg.port), "db.name": "admins" });
  expect(await psqlAs(adminUrl, "SELECT current_user, current_database()")).toMatchObject({ code: 0, out: "doadmin|admins" });

  const appUrl = evaluate("database_url", appValues("admins"));
  const refused = await psqlAs(appUrl, "CREATE TABLE t (id int)");
  expect(refused.code).not.toBe(0);
  expect(refused.err).toContain("permission denied for schema public");
  console.log(`app user in an admin-owned database (PostgreSQL ${pg.majorVersion}): ${refused.err.split("\n")[0]}`);

  expect(await psqlAs(adminUrl, "GRANT ALL ON SCHEMA public TO app")).toMatchObject({ code: 0 });
  expect(await psqlAs(appUrl, "CREATE TABLE t (id int); INSERT INTO t VALUES (1); SELECT count(*) FROM t")).toMatchObject({ code: 0, out: "1" });
});
