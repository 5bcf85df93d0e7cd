/**
 * The kit's lab S3 in a child process (main.ts), with the calls of kit.ts's KitLabS3 over its control
 * channel. A test that blocks its own event loop (spawnSync of sqlite3, litestream, ssh) would deadlock
 * against an in-process server, and hashing plus policy evaluation of hundreds of MiB must not share the
 * loop of a test that times the writes it acknowledges.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { REPO_ROOT } from "../../app/repo.ts";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import type { ControlRequest, LabS3ProcessOptions } from "./main.ts";
import type { Decision, LabUser } from "./policy.ts";
import type { LabS3, LabS3Options } from "./server.ts";

export type LabS3Error = LabS3["errors"][number];

export interface LabS3Process {
  /** https://<host>:<port> */
  readonly endpoint: string;
  /** http://<host>:<port>, with `plainHttp` */
  readonly httpEndpoint?: string;
  /** The lab CA's PEM (it lives as long as the process). */
  readonly caFile: string;
  /** The child's pid (a harness journals it, to kill it after a crash of the test process). */
  readonly pid: number;
  /** The backup user of each environment, by stack name, with its first key. */
  readonly users: ReadonlyMap<string, LabUser>;
  /** Every authorization decision so far, in order (kept after stop()). */
  decisions(): Promise<Decision[]>;
  /** Requests answered with an error so far (kept after stop()). */
  errors(): Promise<LabS3Error[]>;
  /** IAM CreateAccessKey for the stack's backup user (two keys at most, as AWS). */
  createAccessKey(stackName: string): Promise<LabUser>;
  /** IAM DeleteAccessKey: the key is refused (InvalidAccessKeyId) from then on. */
  deleteAccessKey(stackName: string, accessKeyId: string): Promise<void>;
  /** The stack's backup user's keys now, oldest first. */
  accessKeys(stackName: string): Promise<LabUser[]>;
  /** Stops the child and waits until it is gone; idempotent. */
  stop(): Promise<void>;
}

/** The server's own listen and certificate options (lab/s3/server.ts). */
export type LabS3ProcessStartOptions = Pick<LabS3Options, "host" | "certIps" | "plainHttp">;

const MAIN = join(import.meta.dirname, "main.ts");
const STARTUP_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

interface Ready {
  endpoint: string;
  httpEndpoint?: string;
  caFile: string;
  users: Record<string, LabUser>;
  decisionsFile: string;
  errorsFile: string;
}

export async function startKitLabS3Process(envs: readonly ResolvedEnvironment[], options: LabS3ProcessStartOptions = {}): Promise<LabS3Process> {
  const dir = mkdtempSync(join(tmpdir(), "lab-s3-process-"));
  const optionsFile = join(dir, "options.json");
  const childOptions: LabS3ProcessOptions = { environments: envs, host: options.host, certIps: options.certIps, plainHttp: options.plainHttp, logDir: join(dir, "log") };
  writeFileSync(optionsFile, JSON.stringify(childOptions));

  // The repo's tsx as a loader of this very Node (one process: its pid is the server's).
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, "--options", optionsFile], { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const running = () => child.exitCode === null && child.signalCode === null;
  // A child that died is reported by the exit handlers below, not by an EPIPE thrown here.
  child.stdin.on("error", () => {});

  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const lines = createInterface({ input: child.stdout });
  const ready = new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => fail(`did not report listening within ${STARTUP_TIMEOUT_MS / 1000} s`), STARTUP_TIMEOUT_MS);
    const fail = (why: string) => {
      clearTimeout(timer);
      if (running()) child.kill("SIGKILL");
      reject(new Error(`the lab S3 process (${MAIN}) ${why}. Its stderr:\n${stderr}`));
    };
    child.once("exit", (code, signal) => fail(`exited (${signal ?? `code ${code}`}) before listening`));
    child.once("error", (error) => fail(`could not be started: ${error.message}`));
    let first = true;
    lines.on("line", (line) => {
      let message: { id?: number; result?: unknown; error?: string } & Partial<Ready>;
      try {
        message = JSON.parse(line);
      } catch {
        return void (stderr += `\n(stdout) ${line}`);
      }
      if (first) {
        first = false;
        clearTimeout(timer);
        return resolve(message as Ready);
      }
      const waiter = pending.get(message.id ?? -1);
      if (!waiter) return;
      pending.delete(message.id!);
      if (message.error !== undefined) waiter.reject(new Error(`lab S3: ${message.error}`));
      else waiter.resolve(message.result);
    });
  });
  child.once("exit", () => {
    for (const waiter of pending.values()) waiter.reject(new Error(`the lab S3 process exited before answering. Its stderr:\n${stderr}`));
    pending.clear();
  });
  let info: Ready;
  try {
    info = await ready;
  } catch (error) {
    await exited;
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  const call = <T>(op: ControlRequest["op"], fields: Omit<ControlRequest, "id" | "op"> = {}): Promise<T> => {
    if (!running()) return Promise.reject(new Error(`the lab S3 process is stopped; ${op} needs it running`));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.stdin.write(JSON.stringify({ id, op, ...fields }) + "\n");
    });
  };
  const readLines = <T>(file: string): T[] => readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as T);
  // After stop() the logs are read once more (the child flushed them on SIGTERM) and kept here.
  let final: { decisions: Decision[]; errors: LabS3Error[] } | undefined;
  const logs = async () => {
    if (final) return final;
    await call("flush");
    return { decisions: readLines<Decision>(info.decisionsFile), errors: readLines<LabS3Error>(info.errorsFile) };
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (running()) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => running() && child.kill("SIGKILL"), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      try {
        final = { decisions: readLines<Decision>(info.decisionsFile), errors: readLines<LabS3Error>(info.errorsFile) };
      } catch {
        final = { decisions: [], errors: [] };
      }
      rmSync(dir, { recursive: true, force: true });
    })());

  return {
    endpoint: info.endpoint,
    httpEndpoint: info.httpEndpoint,
    caFile: info.caFile,
    pid: child.pid!,
    users: new Map(Object.entries(info.users)),
    decisions: async () => (await logs()).decisions,
    errors: async () => (await logs()).errors,
    createAccessKey: (stackName) => call<LabUser>("createAccessKey", { stack: stackName }),
    deleteAccessKey: (stackName, accessKeyId) => call<void>("deleteAccessKey", { stack: stackName, accessKeyId }),
    accessKeys: (stackName) => call<LabUser[]>("accessKeys", { stack: stackName }),
    stop,
  };
}
