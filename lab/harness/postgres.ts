/**
 * The lab's stand-in for a DigitalOcean Managed PostgreSQL cluster: Debian's PostgreSQL 15 server
 * (/usr/lib/postgresql/15/bin) in a scratch directory, set up the way the managed cluster is reached:
 *
 *   - TLS only: `hostssl` lines in pg_hba.conf and nothing else on the network, with a server certificate
 *     from a CA made for this run (openssl), so clients pin that CA (sslmode=verify-full + the CA's PEM), as
 *     they pin the cluster's CA from `digitalocean_database_ca`;
 *   - scram-sha-256 passwords;
 *   - only the given client addresses are admitted (the stand-in for the database firewall);
 *   - an app user, the app database and the drill's scratch database `<db>_drill`, owned by the app user
 *     or, as on DigitalOcean, by an admin role `doadmin` (`owner: "admin"`).
 *
 * It listens on one address: 127.0.0.1 for host-side tests, the lab network's host address for booted
 * machines (admit the machine's address). The harness's own superuser reaches it through the Unix socket in
 * its data directory only (the `psql` helper), never over the network.
 *
 * PostgreSQL refuses to run as root: when the tests run as root, the server runs as the `postgres` system
 * user that Debian's package creates. Everything is registered with the teardown (the server process
 * journaled, so a crashed run's server is killed by the next run; the directory removed).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createServer, isIP } from "node:net";
import { join } from "node:path";
import { makeCertificates } from "../s3/ca.ts";
import { run, runSyncQuiet, settlesWithin, tail } from "./process.ts";
import { processIdentity, SCRATCH_ROOT, type Teardown } from "./teardown.ts";
import { GiveUp, waitFor } from "./wait.ts";

/** Debian 12's server, the host's `postgresql-15` package. */
export const POSTGRES_BIN_DIR = "/usr/lib/postgresql/15/bin";
/** The harness's superuser (Unix socket only); the app never sees it. */
const SUPERUSER = "postgres";
/** DigitalOcean's name for a cluster's admin role. */
const ADMIN_USER = "doadmin";

export interface PostgresOptions {
  /** Address to listen on (and the host in the URLs and the certificate). @default "127.0.0.1" */
  readonly host?: string;
  /**
   * Client addresses or CIDRs admitted (one `hostssl … scram-sha-256` line each); any other address is
   * refused with "no pg_hba.conf entry". A bare address means that address alone (/32).
   * @default [host] — the host itself, for host-side tests
   */
  readonly allow?: readonly string[];
  /** @default "app" */
  readonly database?: string;
  /** The app user's name. @default "app" */
  readonly user?: string;
  /**
   * Who owns the app and drill databases. "admin" is DigitalOcean's way (digitalocean_database_db creates
   * them as doadmin): PostgreSQL 15+ then gives the app user no CREATE on schema public until the admin
   * grants it (`GRANT ALL ON SCHEMA public TO app`, as `adminUrl()`) — "permission denied for schema public"
   * otherwise. "app" skips that step for tests that are not about it.
   * @default "app"
   */
  readonly owner?: "app" | "admin";
}

export interface LabPostgres {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** The app user's password (random per run, URL-safe). */
  readonly password: string;
  readonly database: string;
  /** `<database>_drill`: the scratch database the restore drill restores into. */
  readonly drillDatabase: string;
  /**
   * The app user's URI on `db` (default the app database), as the stack's `database_url` output has it:
   * postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full. Who owns the databases: `owner`.
   */
  url(db?: string): string;
  /** `doadmin`: the cluster's admin role (LOGIN CREATEDB CREATEROLE, not a superuser, as on DigitalOcean). */
  readonly adminUser: string;
  /** The admin's URI on `db` (default the app database): the stack's `database_admin_url`. Only with owner "admin". */
  adminUrl(db?: string): string;
  /** = url(drillDatabase): the stack's `database_drill_url`. */
  readonly drillUrl: string;
  /** PEM of the CA that signed the server's certificate (the stack's `database_ca_certificate`). */
  readonly caCertificate: string;
  /** That PEM as a file (PGSSLROOTCERT for host-side clients). */
  readonly caFile: string;
  /** The server's major version (15): what `SHOW server_version_num` says, divided by 10000. */
  readonly majorVersion: number;
  /**
   * Runs SQL as the superuser through the Unix socket (psql -X -A -t -v ON_ERROR_STOP=1): resolves with
   * psql's stdout (one row a line, columns separated by |), throws with its stderr on an error.
   */
  psql(sql: string, options?: { readonly database?: string }): Promise<string>;
  /** Stops the server (fast shutdown: open sessions are cut); the data stays until teardown. */
  stop(): Promise<void>;
  /** Starts a stopped server again, same port and data. */
  start(): Promise<void>;
  /** True while the server process runs. */
  running(): boolean;
  /** The server's log so far (connections and refusals are logged). */
  log(): string;
}

/** Starts the stand-in cluster; resolves once it accepts connections. Stopped and removed by teardown. */
export async function startPostgres(teardown: Teardown, options: PostgresOptions = {}): Promise<LabPostgres> {
  const host = options.host ?? "127.0.0.1";
  const database = options.database ?? "app";
  const user = options.user ?? "app";
  const allow = (options.allow ?? [host]).map(toCidr);
  if (user === ADMIN_USER || user === SUPERUSER) throw new Error(`startPostgres: the app user cannot be called ${user} (the lab's own roles are ${SUPERUSER} and ${ADMIN_USER})`);
  for (const name of [database, user]) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
      throw new Error(`startPostgres: ${JSON.stringify(name)} is not a plain PostgreSQL name: use lowercase letters, digits and _`);
    }
  }
  const osUser = serverOwner();

  // Our own directory (not the teardown's 0700 work dir): the postgres user must reach it.
  const root = await mkdtemp(join(SCRATCH_ROOT, "postgres-"));
  teardown.track({ kind: "tree", path: root });
  const dataDir = join(root, "data");
  mkdirSync(dataDir, { mode: 0o700 });
  const certs = makeCertificates(root, host === "127.0.0.1" ? ["localhost"] : [], [host]);
  const superPassword = randomBytes(18).toString("hex");
  const password = randomBytes(18).toString("hex");
  const adminPassword = randomBytes(18).toString("hex");
  const owner = options.owner === "admin" ? ADMIN_USER : user;
  writeFileSync(join(root, "superuser.pw"), `${superPassword}\n`, { mode: 0o600 });
  for (const path of [root, dataDir, join(root, "superuser.pw")]) chownSync(path, osUser.uid, osUser.gid);
  chmodSync(root, 0o700);

  await run([
    ...osUser.asUser,
    join(POSTGRES_BIN_DIR, "initdb"),
    "--pgdata", dataDir,
    "--username", SUPERUSER,
    "--pwfile", join(root, "superuser.pw"),
    "--auth-local", "scram-sha-256",
    "--auth-host", "scram-sha-256",
    "--encoding", "UTF8",
    "--locale", "C.UTF-8",
    "--no-sync", // a scratch cluster: durability of the initial catalog does not matter
  ], { cwd: root });
  // The server reads its key only when it belongs to it and nobody else can read it.
  writeFileSync(join(dataDir, "server.key"), certs.key, { mode: 0o600 });
  writeFileSync(join(dataDir, "server.pem"), certs.cert, { mode: 0o644 });
  for (const file of ["server.key", "server.pem"]) chownSync(join(dataDir, file), osUser.uid, osUser.gid);
  writeFileSync(join(dataDir, "pg_hba.conf"), hbaConf(allow));

  let port = 0;
  const writeConfig = () =>
    writeFileSync(
      join(dataDir, "postgresql.auto.conf"),
      [
        `listen_addresses = '${host}'`,
        `port = ${port}`,
        `unix_socket_directories = '${dataDir}'`,
        "ssl = on",
        "ssl_cert_file = 'server.pem'",
        "ssl_key_file = 'server.key'",
        "ssl_min_protocol_version = 'TLSv1.2'",
        "password_encryption = 'scram-sha-256'",
        "max_connections = 50",
        "shared_buffers = '64MB'",
        "log_connections = on",
        "log_timezone = 'UTC'",
        "timezone = 'UTC'",
        "",
      ].join("\n"),
    );

  const logFile = join(root, "postgres.log");
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const psql = async (sql: string, psqlOptions: { readonly database?: string } = {}) => {
    const result = await run(
      [join(POSTGRES_BIN_DIR, "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
        "-h", dataDir, "-p", String(port), "-U", SUPERUSER, "-d", psqlOptions.database ?? "postgres", "-f", "-"],
      { input: sql, env: { ...process.env, PGPASSWORD: superPassword, PGCONNECT_TIMEOUT: "5" }, allowFailure: true },
    );
    if (result.code !== 0) throw new Error(`psql as ${SUPERUSER} on the lab PostgreSQL failed (exit ${result.code}): ${result.stderr.trim()}\nSQL: ${sql.slice(0, 500)}`);
    return result.stdout.trimEnd();
  };

  const start = async () => {
    if (child) throw new Error("the lab PostgreSQL is already running");
    const fd = openSync(logFile, "a");
    const proc = spawn(join(POSTGRES_BIN_DIR, "postgres"), ["-D", dataDir], {
      cwd: root,
      stdio: ["ignore", fd, fd],
      ...(osUser.ids ?? {}),
    });
    closeSync(fd);
    child = proc;
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    void exited.then(() => {
      if (child === proc) child = undefined;
    });
    const identity = proc.pid ? processIdentity(proc.pid) : undefined;
    if (identity) teardown.track({ kind: "process", ...identity });
    await waitFor(
      async () => {
        if (child !== proc) throw new GiveUp(`postgres exited:\n${tail(readLog(), 20)}`);
        const ready = await run([join(POSTGRES_BIN_DIR, "pg_isready"), "-q", "-h", dataDir, "-p", String(port)], { allowFailure: true });
        return ready.code === 0;
      },
      { timeoutMs: 30_000, intervalMs: 50, what: `the lab PostgreSQL to accept connections on ${host}:${port}`, diagnostics: async () => tail(readLog(), 20) },
    );
  };
  const stop = async () => {
    const proc = child;
    if (!proc) return;
    proc.kill("SIGINT"); // fast shutdown: roll back open transactions, close sessions, checkpoint
    if (!(await settlesWithin(exited, 15_000))) {
      proc.kill("SIGKILL");
      await exited;
    }
  };
  const readLog = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };

  // The port is free when asked for, but another process may take it before the server binds: try another.
  for (let attempt = 1; ; attempt++) {
    port = await freePort(host);
    writeConfig();
    try {
      await start();
      break;
    } catch (error) {
      if (attempt >= 3 || !readLog().includes("Address already in use")) throw error;
    }
  }
  teardown.defer("lab PostgreSQL", stop);

  const drillDatabase = `${database}_drill`;
  await psql(
    [
      ...(options.owner === "admin" ? [`CREATE ROLE ${ADMIN_USER} LOGIN CREATEDB CREATEROLE PASSWORD '${adminPassword}';`] : []),
      `CREATE ROLE ${user} LOGIN PASSWORD '${password}';`,
      `CREATE DATABASE ${database} OWNER ${owner};`,
      `CREATE DATABASE ${drillDatabase} OWNER ${owner};`,
    ].join("\n"),
  );
  const majorVersion = Math.floor(Number(await psql("SHOW server_version_num")) / 10_000);
  const urlHost = isIP(host) === 6 ? `[${host}]` : host;
  const uri = (name: string, secret: string, db: string) => `postgresql://${name}:${secret}@${urlHost}:${port}/${db}?sslmode=verify-full`;
  const url = (db = database) => uri(user, password, db);

  return {
    host,
    port,
    user,
    password,
    database,
    drillDatabase,
    url,
    drillUrl: url(drillDatabase),
    adminUser: ADMIN_USER,
    adminUrl: (db = database) => {
      if (options.owner !== "admin") throw new Error(`this lab PostgreSQL has no ${ADMIN_USER}: start it with { owner: "admin" } (the databases are then the admin's, as on DigitalOcean)`);
      return uri(ADMIN_USER, adminPassword, db);
    },
    caCertificate: readFileSync(certs.caFile, "utf8"),
    caFile: certs.caFile,
    majorVersion,
    psql,
    stop,
    start,
    running: () => child !== undefined,
    log: readLog,
  };
}

/** pg_hba.conf: the superuser on the Unix socket; on the network TLS + password from the admitted addresses only. */
function hbaConf(allow: readonly string[]): string {
  return [
    "# kit lab PostgreSQL (lab/harness/postgres.ts): TLS only, admitted addresses only (the database firewall).",
    "# TYPE   DATABASE USER ADDRESS METHOD",
    `local    all      ${SUPERUSER} scram-sha-256`,
    ...allow.map((cidr) => `hostssl  all      all  ${cidr} scram-sha-256`),
    "",
  ].join("\n");
}

function toCidr(address: string): string {
  const [ip, bits] = address.split("/");
  const family = isIP(ip);
  const max = family === 6 ? 128 : 32;
  if (family === 0 || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))) {
    throw new Error(`startPostgres: allow entry ${JSON.stringify(address)} is not an IP address or CIDR (e.g. "10.213.0.2" or "10.213.0.0/24")`);
  }
  return bits === undefined ? `${ip}/${max}` : address;
}

interface ServerOwner {
  readonly uid: number;
  readonly gid: number;
  /** spawn() options that drop to that user (none when we are not root). */
  readonly ids?: { readonly uid: number; readonly gid: number };
  /** argv prefix that runs a command as that user. */
  readonly asUser: readonly string[];
}

/** Who runs the server: the `postgres` system user when we are root (PostgreSQL refuses root), else us. */
function serverOwner(): ServerOwner {
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) return { uid, gid: process.getgid?.() ?? uid, asUser: [] };
  const id = (flag: string) => runSyncQuiet(["id", flag, "postgres"]);
  const [user, group] = [id("-u"), id("-g")];
  if (user.code !== 0 || group.code !== 0) {
    throw new Error("startPostgres runs the server as the `postgres` system user when run as root, and there is none: apt-get install postgresql-15");
  }
  const ids = { uid: Number(user.stdout.trim()), gid: Number(group.stdout.trim()) };
  return { ...ids, ids, asUser: ["setpriv", `--reuid=${ids.uid}`, `--regid=${ids.gid}`, "--clear-groups", "--"] };
}

/** A port that is free on `host` right now (the kernel's pick). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (address && typeof address === "object" ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
