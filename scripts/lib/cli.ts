/** What the three scripts share: flags, help, confirmation, progress lines and the error/exit convention. */
import { realpathSync } from "node:fs";
import { createInterface } from "node:readline/promises";
import { fileURLToPath } from "node:url";
import { minimist } from "zx";
import { ConfigError } from "../../app/config/errors.ts";
import { errors, OpsError } from "./errors.ts";
import type { Step } from "./shell.ts";
import type { RunOptions, RunResult } from "./ssh.ts";
import type { Runner } from "./state.ts";
import type { TargetFlags } from "./target.ts";

export const COMMON_HELP = `
Where the server is (flags win over the stack's outputs):
  --outputs FILE        stack outputs JSON (default outputs/<stack>.json), written by:
                          npx cdktf output <stack> --outputs-file outputs/<stack>.json --outputs-file-include-sensitive-outputs
  --host ADDR           server address (default: the ipv4 output)
  --server N|ADDR       one of several app servers (servers > 1): its number in the server_ipv4s output
                          (1 = the first) or its address; the scripts that act on every server act on it only
  --user NAME           SSH user (default: the ssh_user output, "deploy")
  --port N              SSH port (default 22)
  --identity FILE       SSH private key (default: ssh-agent / ~/.ssh)
  --known-hosts FILE    pinned host keys (default ~/.config/agency-kit/known_hosts; first contact pins the key)
  --s3-endpoint URL     S3-compatible endpoint instead of AWS (path-style)
  --clients-dir DIR     where the client files are (default app/clients); the SSH keys a deploy
                          pushes come from the client file found there

  --dry-run             print the plan, change nothing
  --yes                 do not ask before destructive steps
  --help                this text`;

export interface ParsedArgs {
  readonly positional: string[];
  readonly flags: Record<string, unknown>;
  readonly target: TargetFlags;
  /** --clients-dir: the directory of client files (undefined: app/clients). */
  readonly clientsDir?: string;
  readonly dryRun: boolean;
  readonly yes: boolean;
  readonly help: boolean;
}

/**
 * The arguments after the script's own path (pass the script's import.meta.url). node, tsx and a direct run
 * put the script in argv[1]; `npx zx script.ts` keeps zx's own CLI there and the script in argv[2].
 */
export function scriptArgs(scriptUrl: string, argv: readonly string[] = process.argv): string[] {
  const script = fileURLToPath(scriptUrl);
  const real = (path: string) => {
    try {
      return realpathSync(path);
    } catch {
      return path;
    }
  };
  const at = argv.findIndex((arg, i) => i > 0 && real(arg) === script);
  return argv.slice(at === -1 ? 2 : at + 1);
}

/** Parses argv; unknown flags are an error (a typo must not run a default). */
export function parseArgs(argv: readonly string[], spec: { string?: string[]; boolean?: string[] }): ParsedArgs {
  const strings = ["outputs", "host", "server", "user", "port", "identity", "known-hosts", "s3-endpoint", "render-overrides", "clients-dir", ...(spec.string ?? [])];
  const booleans = ["dry-run", "yes", "help", ...(spec.boolean ?? [])];
  const unknown: string[] = [];
  const flags = minimist([...argv], {
    string: strings,
    boolean: booleans,
    alias: { h: "help", y: "yes" },
    unknown: (arg: string) => {
      if (arg.startsWith("-")) unknown.push(arg);
      return !arg.startsWith("-");
    },
  });
  if (unknown.length > 0) throw new OpsError(`unknown option ${unknown.join(", ")}`, "see --help");
  const port = flags.port === undefined ? undefined : Number(flags.port);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) throw new OpsError(`--port ${flags.port} is not a port`, "pass a number 1-65535");
  return {
    positional: flags._.map(String),
    flags,
    target: {
      outputs: flags.outputs,
      host: flags.host,
      server: flags.server,
      user: flags.user,
      port,
      identity: flags.identity,
      knownHosts: flags["known-hosts"],
      s3Endpoint: flags["s3-endpoint"],
      renderOverrides: flags["render-overrides"],
    },
    clientsDir: flags["clients-dir"],
    dryRun: Boolean(flags["dry-run"]),
    yes: Boolean(flags.yes),
    help: Boolean(flags.help),
  };
}

/*
 * Flag checks, run before anything reads the outputs or connects: a typo, a NaN or a flag the chosen mode
 * ignores is refused with the fix, never sent to a server or silently dropped.
 */

/** Whether a flag was given (a boolean as true, a string flag with any value, even empty). */
export const given = (args: ParsedArgs, name: string): boolean => args.flags[name] !== undefined && args.flags[name] !== false;

/** The one stack the script acts on: none, or more than one, is refused. */
export function oneStack(args: ParsedArgs, usage: string): string {
  const [stack, ...extra] = args.positional;
  if (!stack) throw new OpsError("which stack?", `${usage} (see --help)`);
  if (extra.length) throw errors.oneStack(args.positional, usage.replace("<stack>", stack));
  return stack;
}

/** A whole-number flag from `min` to `max`; undefined when not given. */
export function integerFlag(args: ParsedArgs, name: string, min: number, max: number): number | undefined {
  if (!given(args, name)) return undefined;
  const text = String(args.flags[name]);
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min && value <= max)) throw errors.badNumber(name, text, min, max);
  return value;
}

/** Refuses a flag the chosen mode would ignore: `flag` only together with one of `with`. */
export function onlyWith(args: ParsedArgs, flag: string, ...others: string[]): void {
  if (given(args, flag) && !others.some((other) => given(args, other))) throw errors.ignoredFlag(flag, `only with --${others.join(" or --")}`);
}

/** Refuses two flags that contradict each other. */
export function notBoth(args: ParsedArgs, flag: string, other: string, why: string): void {
  if (given(args, flag) && given(args, other)) throw errors.conflictingFlags(flag, other, why);
}

/**
 * An RFC 3339 time with a zone (what `litestream restore -timestamp` accepts) that exists on the calendar
 * (Date.parse would roll 2026-02-30 over into March and take hour 24; Litestream refuses both).
 */
export function checkTimestamp(value: string): string {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}):\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(value);
  const dayExists = match !== null && new Date(`${match[1]}T00:00:00Z`).toISOString().startsWith(match[1]);
  if (!match || Number.isNaN(Date.parse(value)) || !dayExists || Number(match[2]) > 23) throw errors.badTimestamp(value);
  return value;
}

/** A restore time (checkTimestamp) that lies in the past and within the replica's retention: older WAL and snapshots are gone. */
export function restorableTime(value: string, retentionSeconds: number, retention: string, now = Date.now()): string {
  const time = Date.parse(checkTimestamp(value));
  if (time > now) throw errors.futureTimestamp(value, new Date(now));
  if (time < now - retentionSeconds * 1000) throw errors.beyondRetention(value, retention, new Date(now - retentionSeconds * 1000));
  return value;
}

/** Progress output: one line per step on stderr, so stdout stays clean for data. */
export const say = (line: string) => process.stderr.write(`${line}\n`);
export const stepLine = (title: string) => say(`▸ ${title}`);

/**
 * A value a planned step needs that an earlier step produces at run time (a release path, a scratch file).
 * Until that step ran it reads as its description in angle brackets, which is how a dry run shows it.
 */
export class Later {
  private value?: string;
  description: string;
  constructor(description: string) {
    this.description = description;
  }
  set(value: string): void {
    this.value = value;
  }
  /** The value, or `<description>` before the step that produces it has run. */
  get text(): string {
    return this.value ?? `<${this.description}>`;
  }
  get known(): boolean {
    return this.value !== undefined;
  }
}

/** One step of a plan: its title (what --dry-run prints and the run logs) and what it does. */
export interface PlanStep {
  readonly title: string;
  /** Does the step; "stop" ends the plan there (the operator said no), later steps do not run. */
  readonly run: () => Promise<void | "stop">;
  /** Runs at the end of the plan once this step has succeeded, also after a later step failed or stopped (releasing a lock). */
  readonly cleanup?: { readonly title: string; readonly run: () => Promise<void> };
}

interface Guard {
  readonly from: number;
  readonly to: number;
  readonly description: string;
  readonly handler: (error: unknown) => Promise<unknown>;
}

/**
 * The plan is the steps. A script first runs its read-only inspection (`read`, also in a dry run), then adds
 * every other step; `execute` either prints the numbered list (--dry-run: nothing else runs) or runs exactly
 * that list, logging each step as `▸ N. title` on stderr before it runs. Cleanups (the lock's release) come
 * last, in reverse order, and run whenever the step that registered them succeeded.
 */
export class Plan {
  private readonly steps: PlanStep[] = [];
  private readonly guards: Guard[] = [];
  private reads = 0;

  readonly heading: string;
  readonly dryRun: boolean;
  constructor(heading: string, dryRun: boolean) {
    this.heading = heading;
    this.dryRun = dryRun;
  }

  /** A read-only step that runs now, in a dry run too; what it returns shapes the rest of the plan. */
  async read<T>(title: string, body: () => Promise<T>): Promise<T> {
    if (this.reads !== this.steps.length) throw new Error(`plan: read step "${title}" after a step that writes`);
    this.steps.push({ title, run: async () => undefined });
    this.reads++;
    stepLine(`${this.steps.length}. ${title}`);
    return body();
  }

  /** Adds a step (it runs in `execute`, never in a dry run). */
  add(step: PlanStep): this {
    this.steps.push(step);
    return this;
  }

  /**
   * Adds a server step. `build` is called now, with the Later values still unknown, for its title; and again
   * when the step runs, with the values earlier steps produced. `then` gets the result.
   */
  remote(runner: Runner, build: () => Step, options: RunOptions & { readonly then?: (result: RunResult) => void | "stop" | Promise<void | "stop"> } = {}): this {
    const { then, ...runOptions } = options;
    return this.add({
      title: build().title,
      run: async () => {
        const result = await runner.run(build(), runOptions);
        return then?.(result);
      },
    });
  }

  /** The steps `add` adds inside `body` are covered by `handler` (a rollback): it gets a failure first and returns the error to report. */
  guard(description: string, handler: (error: unknown) => Promise<unknown>, body: () => void): this {
    const from = this.steps.length;
    body();
    this.guards.push({ from, to: this.steps.length, description, handler });
    return this;
  }

  /** The number the next added step gets. */
  get next(): number {
    return this.steps.length + 1;
  }

  /** Every title, numbered as the run logs them: the steps in order, then the cleanups in reverse. */
  titles(): string[] {
    return [...this.steps.map((s) => s.title), ...this.steps.filter((s) => s.cleanup).reverse().map((s) => s.cleanup!.title)];
  }

  async execute(): Promise<void> {
    const titles = this.titles();
    if (this.dryRun) {
      say(`${this.heading} (dry run: ${this.reads ? `step${this.reads > 1 ? "s" : ""} 1${this.reads > 1 ? `–${this.reads}` : ""} only read and ran; ` : ""}nothing else runs, nothing is changed):`);
      titles.forEach((title, i) => say(`  ${i + 1}. ${title}`));
      for (const g of this.guards) say(`  if step ${g.from + 1}${g.to - g.from > 1 ? `–${g.to}` : ""} fails: ${g.description}`);
      return;
    }
    const cleanups: { n: number; title: string; run: () => Promise<void> }[] = [];
    const cleanupNumber = (i: number) => this.steps.length + this.steps.slice(i + 1).filter((s) => s.cleanup).length + 1;
    try {
      for (let i = this.reads; i < this.steps.length; i++) {
        const step = this.steps[i];
        stepLine(`${i + 1}. ${step.title}`);
        let outcome: void | "stop";
        try {
          outcome = await step.run();
        } catch (error) {
          const guard = this.guards.find((g) => i >= g.from && i < g.to);
          throw guard ? await guard.handler(error) : error;
        }
        if (step.cleanup) cleanups.unshift({ n: cleanupNumber(i), ...step.cleanup });
        if (outcome === "stop") break;
      }
    } finally {
      for (const cleanup of cleanups) {
        stepLine(`${cleanup.n}. ${cleanup.title}`);
        await cleanup.run().catch((error) => say(`warning: ${cleanup.title} failed: ${(error as Error).message}`));
      }
    }
  }
}

/** The titles a run logged (`▸ N. title` lines), in order. */
export const executedTitles = (stderr: string): string[] => [...stderr.matchAll(/^▸ \d+\. (.*)$/gm)].map((m) => m[1]);
/** The titles a dry run listed (`  N. title` lines), in order. */
export const plannedTitles = (stderr: string): string[] => [...stderr.matchAll(/^ {2}\d+\. (.*)$/gm)].map((m) => m[1]);

/** Asks y/N on the terminal; `--yes` answers yes; without a terminal the answer is no. */
export async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes) return true;
  if (!process.stdin.isTTY) {
    say(`${question} [y/N] no (no terminal: pass --yes to confirm)`);
    return false;
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

/** Runs a script's main: an OpsError prints `error:`/`fix:` and sets exit code 1; anything else too, with its stack. */
export async function main(fn: () => Promise<number | void>): Promise<void> {
  try {
    const code = await fn();
    if (typeof code === "number") process.exitCode = code;
  } catch (error) {
    if (error instanceof OpsError) {
      say(`\nerror: ${error.message}\nfix:   ${error.fix}`);
    } else if (error instanceof ConfigError) {
      // The client files are read before anything connects; each problem names its file, field and fix.
      say(`\nerror: ${error.message}\nfix:   correct the client files as listed (npx cdktf synth lists the same problems)`);
    } else {
      say(`\nerror: ${(error as Error).stack ?? String(error)}\nfix:   this is a bug in the kit's scripts; report it with the lines above`);
    }
    process.exitCode = 1;
  }
}
