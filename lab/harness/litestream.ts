/**
 * Litestream 0.3.13 from the host (the same build the servers install), against the lab S3 with one
 * environment's key pair: to seed a bucket with a replica before a machine boots, and to check what a
 * machine replicated (restore to a scratch file, then integrity_check and compare rows, as Litestream's
 * authors do). It trusts the lab CA by SSL_CERT_FILE, never by skipping verification.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { LITESTREAM_BIN } from "./paths.ts";
import { run, type RunResult, settlesWithin, tail } from "./process.ts";
import { type S3Access } from "./s3.ts";
import { processIdentity, type Teardown } from "./teardown.ts";

export interface ReplicaOptions {
  /** The lab S3 and the key pair to use (an environment's backup user: the policy decides what it may do). */
  readonly s3: S3Access;
  /** Key prefix of the replica in the bucket, e.g. "acme/prod/litestream" (one per database). */
  readonly replicaPath: string;
  /** @default "1s" */
  readonly syncInterval?: string;
}

/** A litestream.yml for one database replicated to the lab S3 (path-style endpoint). */
export function litestreamConfig(dbPath: string, replica: ReplicaOptions): string {
  const { s3 } = replica;
  return [
    `access-key-id: ${s3.accessKeyId}`,
    `secret-access-key: ${s3.secretAccessKey}`,
    `dbs:`,
    `  - path: ${dbPath}`,
    `    replicas:`,
    `      - type: s3`,
    `        bucket: ${s3.bucket}`,
    `        path: ${replica.replicaPath}`,
    `        endpoint: ${s3.endpoint}`,
    `        region: ${s3.region}`,
    `        force-path-style: true`,
    `        sync-interval: ${replica.syncInterval ?? "1s"}`,
    ``,
  ].join("\n");
}

export interface Replication {
  /** Stops with SIGTERM (Litestream flushes pending WAL first) and waits for the exit. */
  stop(): Promise<void>;
  /** What Litestream printed so far. */
  output(): string;
}

/** Runs `litestream replicate` for `dbPath` until stopped (or teardown). */
export function startReplication(teardown: Teardown, dbPath: string, replica: ReplicaOptions): Replication {
  const config = writeConfig(teardown, dbPath, replica);
  const child = spawn(LITESTREAM_BIN, ["replicate", "-config", config], { stdio: ["ignore", "pipe", "pipe"], env: litestreamEnv(replica.s3) });
  const identity = processIdentity(child.pid!);
  if (identity) teardown.track({ kind: "process", ...identity });
  let output = "";
  const collect = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000));
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    if (!(await settlesWithin(exited, 30_000))) child.kill("SIGKILL");
  };
  teardown.defer("litestream replicate", stop);
  return { stop, output: () => output };
}

/**
 * Restores the replica's latest state (or the state at `timestamp`, RFC 3339) into `outPath`, which must
 * not exist. Returns Litestream's result; throws with its output when it fails.
 */
export async function restoreReplica(
  teardown: Teardown,
  outPath: string,
  replica: ReplicaOptions & { readonly timestamp?: string },
): Promise<RunResult> {
  // The config names the database by path; restore looks the replica up by that path (it need not exist).
  const dbPath = join(teardown.workDir, "litestream-restore-source.sqlite3");
  const config = writeConfig(teardown, dbPath, replica);
  const argv = [LITESTREAM_BIN, "restore", "-config", config, "-o", outPath];
  if (replica.timestamp) argv.push("-timestamp", replica.timestamp);
  argv.push(dbPath);
  return run(argv, { timeoutMs: 5 * 60_000, env: litestreamEnv(replica.s3) }).catch((error: Error) => {
    throw new Error(`litestream restore of s3://${replica.s3.bucket}/${replica.replicaPath} failed: ${tail(error.message, 20)}`);
  });
}

/**
 * Go reads its trusted roots from SSL_CERT_FILE, and aws-sdk-go from AWS_CA_BUNDLE before that: both name
 * the lab CA (a host may set both to its system bundle).
 */
export const trustLabCa = (caFile: string): NodeJS.ProcessEnv => ({ SSL_CERT_FILE: caFile, AWS_CA_BUNDLE: caFile });
const litestreamEnv = (s3: S3Access): NodeJS.ProcessEnv => ({ ...process.env, ...trustLabCa(s3.caFile) });

let configCount = 0;
function writeConfig(teardown: Teardown, dbPath: string, replica: ReplicaOptions): string {
  const path = join(teardown.workDir, `litestream-${++configCount}.yml`);
  writeFileSync(path, litestreamConfig(dbPath, replica), { mode: 0o600 });
  return path;
}
