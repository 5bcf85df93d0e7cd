import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { AGENCY } from "../../app/agency.ts";
import { ConfigError } from "../../app/config/errors.ts";
import { readClientFile } from "../../app/config/load.ts";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { resolveClient } from "../../app/config/validate.ts";
import { SERVER_FILES, serverFiles, templateValues } from "../../cloud-init/server-files.ts";
import { envQuote, renderTemplate, type TemplateValue } from "../../cloud-init/template.ts";
import { concreteServerValues, REPO_ROOT } from "../environments.ts";
import { freePortSync } from "./sshd.ts";
import type { LabS3Process } from "../s3/process.ts";

export const LITESTREAM_DIR = join(REPO_ROOT, "node_modules", "@flydotio", "litestream-linux-x64");
export const DENO = join(REPO_ROOT, "node_modules", ".bin", "deno");

/** The client slug of the local kit's environments (their buckets: pixelco-localkit-<name>-backups). */
export const LOCAL_CLIENT = "localkit";

/**
 * Client environments for the local kit, one per test scenario: the example client's prod settings under
 * the environment names given, resolved by the same validator as synth. Each has its own bucket, prefix
 * and backup user (env.names), so each can get its own least-privilege key from the lab S3.
 */
export function localEnvironments(names: readonly string[]): ResolvedEnvironment[] {
  const example = readClientFile(join(REPO_ROOT, "app", "clients", "example.ts"));
  const config = { slug: LOCAL_CLIENT, environments: Object.fromEntries(names.map((name) => [name, example.environments.prod])) };
  const { environments, problems } = resolveClient(config, "lab/local/local-kit.ts (from app/clients/example.ts)", AGENCY);
  if (problems.length) throw new ConfigError(problems);
  return environments;
}

export const localEnvironment = (name: string): ResolvedEnvironment => localEnvironments([name])[0];

/** Where a local kit's "server" reaches S3, and with which key pair (the lab CA when it is the lab S3). */
export interface S3Access {
  readonly endpoint: string;
  /** The CA that signed the endpoint's certificate; unset for an endpoint that never answers TLS. */
  readonly caFile?: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** The lab S3 as `env`'s server reaches it: HTTPS (or plain HTTP, to be refused), with that environment's own key. */
export function labAccess(lab: LabS3Process, env: ResolvedEnvironment, over: "https" | "http" = "https"): S3Access {
  const user = lab.users.get(env.stackName);
  if (!user) throw new Error(`the lab S3 has no backup user for ${env.stackName} (it serves ${[...lab.users.keys()].join(", ")}): start it with that environment`);
  const endpoint = over === "https" ? lab.endpoint : lab.httpEndpoint;
  if (!endpoint) throw new Error("the lab S3 was started without plainHttp: start it with { plainHttp: true } to be reached over http");
  return { endpoint, caFile: lab.caFile, accessKeyId: user.accessKeyId, secretAccessKey: user.secretAccessKey };
}

/** An S3 that cannot answer (nothing listens, or nothing speaks TLS there), reached with a well-formed key. */
export function unreachableS3(port: number): S3Access {
  return { endpoint: `https://127.0.0.1:${port}`, accessKeyId: "AKIAUNREACHABLE00000", secretAccessKey: "never-checked-never-checked-never-check" };
}

export interface Ran {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv, input?: string): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(command, [...args], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    // A child that exits before reading all of its stdin closes the pipe: the write fails with EPIPE, which
    // without a handler is an uncaught error that fails the test. The child's exit status tells what happened.
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
  });
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/**
 * A kit "server" in a temp dir: kit.env, litestream.yml, s3.env and the server scripts rendered from the
 * real templates with every path moved under the temp dir, the current user as the app user, a real
 * `litestream replicate`, and S3 reached as `access` says (the lab S3 with the environment's own key).
 * What runs here is the same text that runs on a server.
 */
export class LocalKit {
  readonly root: string;
  readonly values: Record<string, TemplateValue>;
  readonly kitEnvFile: string;
  readonly dbFile: string;
  readonly env: NodeJS.ProcessEnv;
  /** `s3://<bucket>/<prefix>/litestream`, as the server scripts name the replica. */
  readonly replicaUrl: string;
  private replicator?: ChildProcess;
  private replicatorSaid = "";

  readonly access: S3Access;
  readonly environment: ResolvedEnvironment;
  constructor(access: S3Access, environment: ResolvedEnvironment, extra: Record<string, TemplateValue> = {}) {
    this.access = access;
    this.environment = environment;
    this.root = mkdtempSync(join(tmpdir(), "kit-local-"));
    const server = concreteServerValues(environment, { s3Endpoint: access.endpoint, s3Credentials: { accessKeyId: access.accessKeyId, secretAccessKey: access.secretAccessKey } });
    const base = templateValues(environment, server);
    const dir = (name: string) => {
      const path = join(this.root, name);
      mkdirSync(path, { recursive: true });
      return path;
    };
    this.kitEnvFile = join(dir("etc"), "kit.env");
    this.dbFile = join(dir("data/db"), "app.sqlite3");
    this.values = {
      ...base,
      appUser: userInfo().username,
      // The "volume" is this machine's root filesystem: require-volume.sh's mountpoint check passes, as on
      // a server with its volume attached (nothing here mounts, grows or formats it).
      volumeMount: "/",
      volumeEnvFile: join(this.root, "etc/volume.env"),
      dbDir: join(this.root, "data/db"),
      dbFile: this.dbFile,
      backupDir: dir("data/backups"),
      asideDir: dir("data/aside"),
      scratchDir: dir("data/scratch"),
      drillDir: dir("data/drills"),
      releasesDir: dir("srv/releases"),
      slotsDir: dir("srv/slots"),
      stateDir: dir("state"),
      bootstrapDoneFile: join(this.root, "state/bootstrap-done"),
      litestreamConfig: join(this.root, "etc/litestream.yml"),
      s3CredentialsFile: join(this.root, "etc/s3.env"),
      kitEnvFile: this.kitEnvFile,
      libDir: dir("lib"),
      // Each kit's Litestream serves its metrics on a port of its own: kits of parallel test files (and the
      // watcher's check of those metrics) must not read one another's Litestream on the server's 9090.
      metricsPort: freePortSync(),
      ...extra,
    };
    this.replicaUrl = `s3://${this.values.bucket}/${this.values.litestreamPrefix}`;
    // Go (Litestream), aws-sdk-go and curl trust the lab CA as a server trusts a real CA: by its CA file,
    // never by skipping verification. This machine may set all three to the system bundle: override each.
    const trust = access.caFile ? { SSL_CERT_FILE: access.caFile, AWS_CA_BUNDLE: access.caFile, CURL_CA_BUNDLE: access.caFile } : {};
    // Over the loopback sshd the steps source this file (a login gets none of this process's environment):
    // it puts the repo's litestream on PATH and names the lab CA.
    const exports = Object.entries(trust).map(([k, v]) => `export ${k}=${envQuote(v, k)}\n`).join("");
    // As on a server, deno is on PATH (kit-sql.js runs by it): a bin directory of this kit's own, not all of node_modules/.bin.
    const binDir = dir("bin");
    symlinkSync(DENO, join(binDir, "deno"));
    writeFileSync(this.kitEnvFile, `${renderTemplate("config/kit.env", this.values, envQuote)}PATH=${LITESTREAM_DIR}:${binDir}:$PATH\n${exports}`);
    writeFileSync(String(this.values.litestreamConfig), renderTemplate("config/litestream.yml", this.values));
    // s3.env and volume.env exactly as serverFiles builds them for this environment and key.
    const files = serverFiles(environment, server);
    const content = (path: string) => files.find((f) => f.path === path)!.content;
    writeFileSync(String(this.values.s3CredentialsFile), content(String(base.s3CredentialsFile)), { mode: 0o600 });
    writeFileSync(String(this.values.volumeEnvFile), content(String(base.volumeEnvFile)));
    // The server scripts exactly as serverFiles renders them (each from its declared template), with this kit's values.
    for (const file of SERVER_FILES) {
      if (!file.path.startsWith(`${base.libDir}/`) || !("template" in file.source)) continue;
      const path = join(String(this.values.libDir), file.path.split("/").pop()!);
      writeFileSync(path, renderTemplate(file.source.template, this.values));
      chmodSync(path, 0o755);
    }
    // As systemd gives the units their EnvironmentFile (s3.env): the key pair, and the CA.
    this.env = {
      ...process.env,
      PATH: `${LITESTREAM_DIR}:${binDir}:${process.env.PATH}`,
      AWS_ACCESS_KEY_ID: access.accessKeyId,
      AWS_SECRET_ACCESS_KEY: access.secretAccessKey,
      ...trust,
    };
  }

  path(name: string): string {
    return String(this.values[name]);
  }

  sql(db: string, query: string): string {
    return execFileSync("sqlite3", ["-cmd", ".timeout 5000", db, query], { encoding: "utf8" }).trim();
  }

  /** Runs bash text (a builder's script) with this kit's environment; the event loop keeps running. */
  bash(script: string, args: readonly string[] = []): Promise<Ran> {
    return run("bash", ["-s", "--", ...args], this.env, script);
  }

  /** Runs one of the rendered server scripts. */
  script(name: string, args: readonly string[] = []): Promise<Ran> {
    return run(join(this.path("libDir"), name), args, this.env);
  }

  litestream(args: readonly string[]): SpawnSyncReturns<string> {
    return spawnSync("litestream", [...args], { encoding: "utf8", env: this.env, timeout: 60_000 });
  }

  /**
   * Starts `litestream replicate` (as litestream.service runs it) and, unless `wait` is false, waits until
   * the replica holds a snapshot. Its output is kept: replicatorOutput().
   */
  async startReplication({ wait = true }: { wait?: boolean } = {}): Promise<void> {
    this.replicatorSaid = "";
    const child = spawn("litestream", ["replicate", "-config", this.path("litestreamConfig")], { env: this.env, stdio: ["ignore", "pipe", "pipe"] });
    // The last 64 KiB: enough for the errors of a minute of retries.
    const keep = (d: Buffer) => (this.replicatorSaid = (this.replicatorSaid + d.toString()).slice(-65_536));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    this.replicator = child;
    if (!wait) return;
    for (let i = 0; i < 100; i++) {
      const out = this.litestream(["snapshots", "-config", this.path("litestreamConfig"), this.dbFile]).stdout;
      if (out.trim().split("\n").length > 1) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`litestream did not write a snapshot to ${this.replicaUrl} within 10 s; it said:\n${this.replicatorSaid.slice(-3000)}`);
  }

  /** What `litestream replicate` printed (stdout and stderr), newest last. */
  replicatorOutput(): string {
    return this.replicatorSaid;
  }

  /** SIGTERM: Litestream flushes pending WAL, then exits. */
  async stopReplication(): Promise<void> {
    await stopChild(this.replicator);
    this.replicator = undefined;
  }

  async cleanup(): Promise<void> {
    await this.stopReplication();
    rmSync(this.root, { recursive: true, force: true });
  }
}
