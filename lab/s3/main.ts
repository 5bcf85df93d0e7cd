/**
 * The kit's lab S3 (kit.ts) as a process of its own, for tests and benchmarks whose own process blocks
 * (spawnSync of sqlite3, litestream, ssh) or must not share its event loop with hashing and policy
 * evaluation of hundreds of MiB. Started by process.ts; runnable by hand too:
 *
 *   node --import tsx lab/s3/main.ts --stack example-prod [--stack …] [--environments envs.json]
 *        [--host 10.213.0.1] [--cert-ip IP …] [--cert-name NAME …] [--plain-http] [--log-dir DIR]
 *        [--options options.json]
 *
 * When listening it prints one JSON line: {endpoint, httpEndpoint?, caFile, users, decisionsFile,
 * errorsFile}. Decisions and errors are appended to those files as JSON lines. Control requests come as
 * JSON lines on stdin ({id, op, stack, accessKeyId?}; op: createAccessKey, deleteAccessKey, accessKeys,
 * flush) and are answered as JSON lines on stdout ({id, result} or {id, error}). It stops on SIGTERM or
 * SIGINT, when stdin closes (so run it by hand with stdin open, not `< /dev/null`), and when its parent
 * process is gone.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { shippedEnvironments } from "../environments.ts";
import { startKitLabS3, type KitLabS3 } from "./kit.ts";
import type { LabS3Options } from "./server.ts";

/** What the options file holds; argv flags add to it (lists) or override it. */
export interface LabS3ProcessOptions extends Pick<LabS3Options, "host" | "certIps" | "certNames" | "plainHttp"> {
  /** Shipped environments by stack name (app/clients/). */
  readonly stacks?: readonly string[];
  /** Resolved environments (e.g. a test's own), as JSON. */
  readonly environments?: readonly ResolvedEnvironment[];
  /**
   * Where decisions.jsonl and errors.jsonl are written (and left at exit).
   * @default a fresh directory under the OS tmpdir, removed at exit
   */
  readonly logDir?: string;
}

/** A control request on stdin. */
export interface ControlRequest {
  readonly id: number;
  readonly op: "createAccessKey" | "deleteAccessKey" | "accessKeys" | "flush";
  readonly stack?: string;
  readonly accessKeyId?: string;
}

const USAGE = "usage: node --import tsx lab/s3/main.ts (--stack NAME … | --environments FILE | --options FILE) [--host ADDR] [--cert-ip IP …] [--cert-name NAME …] [--plain-http] [--log-dir DIR]";

class UsageError extends Error {}

function readJson(flag: string, file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(`${flag} ${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? error}); give the path of a JSON file`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${flag} ${file}: is not JSON (${(error as Error).message}); fix the file`);
  }
}

function parseArgs(argv: readonly string[]): LabS3ProcessOptions {
  let options: LabS3ProcessOptions = {};
  const stacks: string[] = [];
  const certIps: string[] = [];
  const certNames: string[] = [];
  let environments: ResolvedEnvironment[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new UsageError(`${flag}: needs a value\n${USAGE}`);
      return v;
    };
    switch (flag) {
      case "--options": {
        const read = readJson(flag, argv[i + 1] ?? "");
        if (typeof read !== "object" || read === null || Array.isArray(read)) throw new UsageError(`--options ${argv[i + 1]}: must hold a JSON object with stacks, environments, host, certIps, certNames, plainHttp, logDir`);
        value();
        options = { ...options, ...(read as LabS3ProcessOptions) };
        break;
      }
      case "--environments": {
        const file = value();
        const read = readJson(flag, file);
        if (!Array.isArray(read)) throw new UsageError(`--environments ${file}: must hold a JSON array of resolved environments`);
        environments = read as ResolvedEnvironment[];
        break;
      }
      case "--stack": stacks.push(value()); break;
      case "--host": options = { ...options, host: value() }; break;
      case "--cert-ip": certIps.push(value()); break;
      case "--cert-name": certNames.push(value()); break;
      case "--plain-http": options = { ...options, plainHttp: true }; break;
      case "--log-dir": options = { ...options, logDir: value() }; break;
      default: throw new UsageError(`unknown argument ${JSON.stringify(flag)}\n${USAGE}`);
    }
  }
  return {
    ...options,
    stacks: [...(options.stacks ?? []), ...stacks],
    environments: [...(options.environments ?? []), ...(environments ?? [])],
    certIps: [...(options.certIps ?? []), ...certIps],
    certNames: [...(options.certNames ?? []), ...certNames],
  };
}

/** The environments named, checked: each must have what the lab builds from (bucket, prefix, user). */
function environmentsOf(options: LabS3ProcessOptions): ResolvedEnvironment[] {
  const envs = [...(options.environments ?? [])];
  if (options.stacks?.length) {
    const shipped = shippedEnvironments();
    for (const stack of options.stacks) {
      const env = shipped.find((e) => e.stackName === stack);
      if (!env) throw new UsageError(`--stack ${stack}: no shipped client environment has that stack name (known: ${shipped.map((e) => e.stackName).join(", ")})`);
      envs.push(env);
    }
  }
  if (envs.length === 0) throw new UsageError(`name at least one environment (--stack, --environments or the options file's stacks/environments)\n${USAGE}`);
  envs.forEach((env, i) => {
    const missing = ["stackName", "names.bucket", "names.bucketPrefix", "names.iamUser", "backups.region"].filter((path) =>
      typeof path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], env) !== "string");
    if (missing.length) throw new UsageError(`environments[${i}]: ${missing.join(", ")} missing; pass resolved environments (loadClientsDir's output)`);
  });
  const stacks = envs.map((e) => e.stackName);
  const twice = stacks.find((s, i) => stacks.indexOf(s) !== i);
  if (twice) throw new UsageError(`environment ${twice} is named twice; name each stack once`);
  return envs;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const envs = environmentsOf(options);
  const logDir = options.logDir ? resolve(options.logDir) : mkdtempSync(join(tmpdir(), "lab-s3-log-"));
  mkdirSync(logDir, { recursive: true });
  const decisionsFile = join(logDir, "decisions.jsonl");
  const errorsFile = join(logDir, "errors.jsonl");
  appendFileSync(decisionsFile, "");
  appendFileSync(errorsFile, "");

  const lab: KitLabS3 = await startKitLabS3(envs, { host: options.host, certIps: options.certIps, certNames: options.certNames, plainHttp: options.plainHttp });

  // Append what is new in the lab's in-memory logs; on a timer, on `flush`, and before exiting.
  let decisionsWritten = 0;
  let errorsWritten = 0;
  const flush = () => {
    const decisions = lab.decisions.slice(decisionsWritten);
    const errors = lab.errors.slice(errorsWritten);
    if (decisions.length) appendFileSync(decisionsFile, decisions.map((d) => JSON.stringify(d) + "\n").join(""));
    if (errors.length) appendFileSync(errorsFile, errors.map((e) => JSON.stringify(e) + "\n").join(""));
    decisionsWritten += decisions.length;
    errorsWritten += errors.length;
  };
  const timer = setInterval(flush, 500);

  let stopping: Promise<void> | undefined;
  const stop = (why: string) =>
    (stopping ??= (async () => {
      clearInterval(timer);
      clearInterval(parentWatch);
      flush();
      await lab.stop();
      if (!options.logDir) rmSync(logDir, { recursive: true, force: true });
      if (why !== "SIGTERM" && why !== "SIGINT" && why !== "stdin closed") process.stderr.write(`lab S3 stopped: ${why}\n`);
      process.exit(0);
    })());
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  // A parent killed outright (SIGKILL, OOM) cannot send SIGTERM: its pid goes away and we are re-parented.
  const parent = process.ppid;
  const parentWatch = setInterval(() => {
    if (process.ppid !== parent) void stop(`parent process ${parent} is gone`);
  }, 1000);

  const answer = (line: object): void => void process.stdout.write(JSON.stringify(line) + "\n");
  const users = Object.fromEntries(lab.users);
  answer({ endpoint: lab.endpoint, httpEndpoint: lab.httpEndpoint, caFile: lab.caFile, users, decisionsFile, errorsFile });

  const input = createInterface({ input: process.stdin });
  input.on("line", (line): void => {
    if (!line.trim()) return;
    let request: ControlRequest;
    try {
      request = JSON.parse(line) as ControlRequest;
    } catch {
      return answer({ id: null, error: `control line is not JSON: ${line.slice(0, 200)}` });
    }
    try {
      const stack = () => {
        if (typeof request.stack !== "string") throw new Error(`${request.op}: name the stack ("stack")`);
        return request.stack;
      };
      switch (request.op) {
        case "createAccessKey": return answer({ id: request.id, result: lab.createAccessKey(stack()) });
        case "deleteAccessKey":
          if (typeof request.accessKeyId !== "string") throw new Error(`deleteAccessKey: name the key ("accessKeyId")`);
          lab.deleteAccessKey(stack(), request.accessKeyId);
          return answer({ id: request.id, result: null });
        case "accessKeys": return answer({ id: request.id, result: lab.accessKeys(stack()) });
        case "flush": flush(); return answer({ id: request.id, result: null });
        default: throw new Error(`unknown op ${JSON.stringify(request.op)} (createAccessKey, deleteAccessKey, accessKeys, flush)`);
      }
    } catch (error) {
      answer({ id: request.id, error: (error as Error).message });
    }
  });
  input.on("close", () => void stop("stdin closed"));
}

main().catch((error: unknown) => {
  process.stderr.write(error instanceof UsageError ? `lab S3: ${error.message}\n` : `lab S3 failed to start: ${(error as Error)?.stack ?? error}\n`);
  process.exit(2);
});
