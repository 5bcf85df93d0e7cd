/** What the three scripts share: flags, help, confirmation, progress lines and the error/exit convention. */
import { createInterface } from "node:readline/promises";
import { minimist } from "zx";
import { OpsError } from "./errors";
import type { TargetFlags } from "./target";

export const COMMON_HELP = `
Where the server is (flags win over the stack's outputs):
  --outputs FILE        stack outputs JSON (default outputs/<stack>.json), written by:
                          npx cdktf output <stack> --outputs-file outputs/<stack>.json --outputs-file-include-sensitive-outputs
  --host ADDR           server address (default: the ipv4 output)
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

/** Parses argv; unknown flags are an error (a typo must not run a default). */
export function parseArgs(argv: readonly string[], spec: { string?: string[]; boolean?: string[] }): ParsedArgs {
  const strings = ["outputs", "host", "user", "port", "identity", "known-hosts", "s3-endpoint", "render-overrides", "clients-dir", ...(spec.string ?? [])];
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

/** Progress output: one line per step on stderr, so stdout stays clean for data. */
export const say = (line: string) => process.stderr.write(`${line}\n`);
export const stepLine = (title: string) => say(`▸ ${title}`);

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
    } else {
      say(`\nerror: ${(error as Error).stack ?? String(error)}\nfix:   this is a bug in the kit's scripts; report it with the lines above`);
    }
    process.exitCode = 1;
  }
}
