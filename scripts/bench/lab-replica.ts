/**
 * What the replica benchmarks share: the lab S3 in this process with the example environment's bucket,
 * backup user and policies (lab/s3/kit.ts), Litestream 0.3.13 with the kit's own litestream.yml rendered
 * by the same template the servers get, and databases of a realistic size made with sqlite3.
 *
 * The lab answers from this process, so every child here is spawned asynchronously: a synchronous child
 * would wait on a server that cannot answer.
 */
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { templateValues } from "../../cloud-init/server-files.ts";
import { renderTemplate } from "../../cloud-init/template.ts";
import { shippedEnvironment } from "../../lab/environments.ts";
import { LITESTREAM_DIR } from "../../lab/local/local-kit.ts";
import { startKitLabS3, type KitLabS3 } from "../../lab/s3/kit.ts";

export const LITESTREAM = join(LITESTREAM_DIR, "litestream");
export const MiB = 1024 * 1024;

export interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs a command to its end (asynchronously), with its output and wall time. */
export function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env, cwd?: string): Promise<Ran> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

/** Runs a command that must succeed; its output is returned, trimmed. */
export async function must(command: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await run(command, args, env);
  if (r.code !== 0) throw new Error(`${command} ${args.join(" ").slice(0, 200)} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-2000)}`);
  return r.stdout.trim();
}

export const sql = (db: string, query: string) => must("sqlite3", ["-cmd", ".timeout 10000", db, query]);

/**
 * A database of about `mib` MiB: one table of 4 KiB random blobs (incompressible: the upload's worst case;
 * text compresses several times under Litestream's lz4), in WAL mode, checkpointed into the main file.
 */
export async function seedDatabase(file: string, mib: number): Promise<void> {
  const rows = Math.round((mib * MiB) / 4096);
  await sql(file, [
    "PRAGMA journal_mode=WAL;",
    "CREATE TABLE rows(id INTEGER PRIMARY KEY, body BLOB);",
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows}) INSERT INTO rows(body) SELECT randomblob(4000) FROM n;`,
    "PRAGMA wal_checkpoint(TRUNCATE);",
  ].join(" "));
}

/** A free loopback port (for Litestream's metrics address, which the kit's config always sets). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface LabReplica {
  readonly env: ResolvedEnvironment;
  readonly lab: KitLabS3;
  /** Litestream's environment: the backup user's keys, and the lab CA trusted (never skip-verify). */
  readonly litestreamEnv: NodeJS.ProcessEnv;
  /** The kit's litestream.yml for `db`, as a server gets it (endpoint: the lab), written into `dir`. */
  writeConfig(dir: string, db: string, edit?: (yaml: string) => string): Promise<string>;
  /** Bytes of the replica's objects in the lab (current versions). */
  replicaBytes(): number;
  /** The newest upload time of the replica's objects, in ms since the epoch (0 when there is none). */
  newestUpload(): number;
  stop(): Promise<void>;
}

export async function startLabReplica(stack = "example-prod", labOptions: Parameters<typeof startKitLabS3>[1] = {}): Promise<LabReplica> {
  const env = shippedEnvironment(stack);
  const lab = await startKitLabS3([env], labOptions);
  const user = lab.users.get(stack)!;
  const values = templateValues(env, {
    volumeDevice: "",
    bucket: env.names.bucket,
    region: env.backups.region,
    s3Endpoint: lab.endpoint,
    s3Credentials: { accessKeyId: "", secretAccessKey: "" },
    appSecrets: {},
  });
  const prefix = `${String(values.litestreamPrefix)}/`;
  const objects = () => [...lab.store.bucket(env.names.bucket).keys.entries()]
    .filter(([key]) => key.startsWith(prefix))
    .map(([, versions]) => versions.at(-1)!)
    .filter((v) => !v.deleteMarker);
  return {
    env,
    lab,
    litestreamEnv: {
      ...process.env,
      AWS_ACCESS_KEY_ID: user.accessKeyId,
      AWS_SECRET_ACCESS_KEY: user.secretAccessKey,
      LITESTREAM_ACCESS_KEY_ID: user.accessKeyId,
      LITESTREAM_SECRET_ACCESS_KEY: user.secretAccessKey,
      // Go reads SSL_CERT_FILE; aws-sdk-go v1 replaces its roots with AWS_CA_BUNDLE when that is set.
      SSL_CERT_FILE: lab.caFile,
      AWS_CA_BUNDLE: lab.caFile,
    },
    async writeConfig(dir, db, edit = (yaml) => yaml) {
      mkdirSync(dir, { recursive: true });
      const config = join(dir, "litestream.yml");
      writeFileSync(config, edit(renderTemplate("config/litestream.yml", { ...values, dbFile: db, metricsPort: await freePort() })));
      return config;
    },
    replicaBytes: () => objects().reduce((n, v) => n + v.size, 0),
    newestUpload: () => Math.max(0, ...objects().map((v) => v.lastModified.getTime())),
    stop: () => lab.stop(),
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
