/**
 * Running host commands from the harness: argv arrays only (never a shell string), output captured, and
 * failures that name the command, its exit code and the tail of its stderr.
 */
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { join } from "node:path";

export interface RunOptions {
  /** Written to the command's stdin (then closed). */
  readonly input?: string | Buffer;
  readonly cwd?: string;
  /** Replaces the environment when set (merge with process.env yourself if you need both). */
  readonly env?: NodeJS.ProcessEnv;
  /** Kills the command (SIGKILL) after this long. @default no limit */
  readonly timeoutMs?: number;
  /** Resolve with the result instead of throwing on a non-zero exit. @default false */
  readonly allowFailure?: boolean;
  /** Stream the command's output to ours as it runs (long builds). @default false */
  readonly echo?: boolean;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export class CommandError extends Error {
  readonly argv: readonly string[];
  readonly result: RunResult;
  constructor(
    argv: readonly string[],
    result: RunResult,
    reason: string,
  ) {
    super(`command failed (${reason}): ${formatArgv(argv)}\n${tail(result.stderr || result.stdout, 30)}`);
    this.argv = argv;
    this.result = result;
    this.name = "CommandError";
  }
}

/** Runs `argv` and resolves with its output; throws a CommandError on a non-zero exit unless allowFailure. */
export function run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => {
      stdout.push(chunk);
      if (options.echo) process.stdout.write(chunk);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr.push(chunk);
      if (options.echo) process.stderr.write(chunk);
    });
    let timedOut = false;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill("SIGKILL");
          }, options.timeoutMs);
    child.on("error", (error) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`cannot start ${argv[0]}: ${error.message} (is it installed and on PATH?)`));
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      const result: RunResult = {
        code: code ?? 128,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
      };
      if (timedOut) return reject(new CommandError(argv, result, `timed out after ${options.timeoutMs} ms`));
      if (result.code !== 0 && !options.allowFailure) {
        return reject(new CommandError(argv, result, signal ? `killed by ${signal}` : `exit ${result.code}`));
      }
      resolve(result);
    });
    child.stdin.on("error", () => undefined); // the command may exit without reading its stdin
    child.stdin.end(options.input ?? "");
  });
}

/** Synchronous variant for teardown paths that must not yield (process exit handlers). Never throws. */
export function runSyncQuiet(argv: readonly string[]): RunResult {
  const result = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
  return { code: result.status ?? 128, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}

/** Fails once, naming every missing tool (by PATH lookup) and the Debian package that provides it. */
export function requireTools(tools: Record<string, string>): void {
  const dirs = (process.env.PATH ?? "").split(":").filter(Boolean);
  const onPath = (tool: string) =>
    dirs.some((dir) => {
      try {
        accessSync(join(dir, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  const missing = Object.entries(tools).filter(([tool]) => !onPath(tool));
  if (missing.length > 0) {
    const list = missing.map(([tool, pkg]) => `${tool} (apt-get install ${pkg})`).join(", ");
    throw new Error(`the e2e harness needs these host tools: ${list}`);
  }
}

/** Fails unless we are root: debootstrap, nspawn, losetup and netns all need it. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error("the e2e boot tests must run as root (debootstrap, systemd-nspawn, losetup, ip netns)");
  }
}

export function formatArgv(argv: readonly string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(" ");
}

export function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Formats a duration for the timing lines the suite prints. */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Progress lines for humans: written straight to stderr so Jest shows them while the suite runs. */
export function log(message: string): void {
  process.stderr.write(`kit-e2e: ${message}\n`);
}

/** Resolves true when `promise` settles within `ms`, false otherwise; never leaves a timer behind. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
