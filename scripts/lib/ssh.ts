import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { $ } from "zx";
import { OpsError } from "./errors.ts";
import type { Step } from "./shell.ts";

/** Where and as whom to log in. */
export interface SshTarget {
  readonly host: string;
  readonly user: string;
  /** @default 22 */
  readonly port?: number;
  /** Private key file. @default - ssh's own defaults and agent */
  readonly identity?: string;
}

export interface SshSettings {
  /**
   * The kit's own known_hosts: a server's key is accepted on first contact, then pinned; a changed key is
   * refused. @default ~/.config/agency-kit/known_hosts
   */
  readonly knownHostsFile?: string;
  /** Directory of ControlMaster sockets (short path: sockets are limited to ~100 bytes). @default /tmp/kit-ssh-<uid> */
  readonly controlDir?: string;
  /** @default 10 */
  readonly connectTimeoutSeconds?: number;
  /** Run remote scripts with `sudo -n` (the deploy user has passwordless sudo). @default true unless user is root */
  readonly sudo?: boolean;
}

export const DEFAULT_KNOWN_HOSTS = join(process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "agency-kit", "known_hosts");

/** The ssh options the kit always uses (pure; unit-tested as text). */
export function sshOptions(target: SshTarget, settings: SshSettings = {}): string[] {
  const uid = typeof process.getuid === "function" ? process.getuid() : 0;
  const controlDir = settings.controlDir ?? `/tmp/kit-ssh-${uid}`;
  return [
    "-o", "BatchMode=yes",
    "-o", `ConnectTimeout=${settings.connectTimeoutSeconds ?? 10}`,
    "-o", "ServerAliveInterval=15",
    "-o", "ServerAliveCountMax=4",
    "-o", "StrictHostKeyChecking=accept-new",
    "-o", "HashKnownHosts=no",
    "-o", `UserKnownHostsFile=${settings.knownHostsFile ?? DEFAULT_KNOWN_HOSTS}`,
    "-o", "ControlMaster=auto",
    "-o", `ControlPath=${controlDir}/%C`,
    "-o", "ControlPersist=60",
    "-o", "LogLevel=ERROR",
    ...(target.identity ? ["-i", target.identity, "-o", "IdentitiesOnly=yes"] : []),
    "-p", String(target.port ?? 22),
    "-l", target.user,
  ];
}

/** The remote command: bash reading the script from stdin, as root through sudo unless already root. */
export function remoteCommand(target: SshTarget, settings: SshSettings = {}): string[] {
  const sudo = settings.sudo ?? target.user !== "root";
  return sudo ? ["sudo", "-n", "--", "bash", "-s"] : ["bash", "-s"];
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export interface RunOptions {
  /** Each line the remote step writes to stderr (its progress), as it arrives. @default - printed with a `  │ ` prefix */
  readonly onProgress?: (line: string) => void;
  /** Give up after this long. @default 15 minutes */
  readonly timeoutMs?: number;
  /** Return the result of a non-zero exit instead of throwing. */
  readonly allowFailure?: boolean;
}

/** A step that exited non-zero (its output is kept for the caller's message). */
export class StepFailed extends OpsError {
  readonly title: string;
  readonly result: RunResult;
  constructor(title: string, result: RunResult, fix: string) {
    const tail = result.stderr.trim().split("\n").slice(-8).join("\n    ");
    super(`step "${title}" failed (exit ${result.exitCode})${tail ? `:\n    ${tail}` : ""}`, fix);
    this.title = title;
    this.result = result;
  }
}

/**
 * zx writes `input` to the child's stdin without an error handler: an ssh that exits before reading it all
 * (server unreachable, login refused) closes the pipe, and the write's EPIPE would crash the operator's
 * script. ssh's exit status and stderr say what happened (connectionError).
 */
const spawnIgnoringStdinErrors: typeof spawn = ((...args: Parameters<typeof spawn>) => {
  const child = spawn(...args);
  child.stdin?.on("error", () => undefined);
  return child;
}) as typeof spawn;

/**
 * The one SSH runner: runs Steps on a server over one reused connection. Each script goes to the remote
 * bash on stdin, so neither its text nor any secret in it appears on a command line on either machine.
 */
export class SshRunner {
  readonly destination: string;

  readonly target: SshTarget;
  readonly settings: SshSettings;
  constructor(target: SshTarget, settings: SshSettings = {}) {
    this.target = target;
    this.settings = settings;
    this.destination = `${target.user}@${target.host}${target.port && target.port !== 22 ? `:${target.port}` : ""}`;
  }

  private args(): string[] {
    return sshOptions(this.target, this.settings);
  }

  private prepare(): void {
    const uid = typeof process.getuid === "function" ? process.getuid() : 0;
    mkdirSync(this.settings.controlDir ?? `/tmp/kit-ssh-${uid}`, { recursive: true, mode: 0o700 });
    mkdirSync(dirname(this.settings.knownHostsFile ?? DEFAULT_KNOWN_HOSTS), { recursive: true, mode: 0o700 });
  }

  async run(step: Step, options: RunOptions = {}): Promise<RunResult> {
    this.prepare();
    const progress = options.onProgress ?? ((line: string) => process.stderr.write(`  │ ${line}\n`));
    const p = $({ input: step.script.text, spawn: spawnIgnoringStdinErrors, nothrow: true, quiet: true, timeout: options.timeoutMs ?? 15 * 60_000 })`ssh ${this.args()} ${this.target.host} -- ${remoteCommand(this.target, this.settings)}`;
    let pending = "";
    p.stderr.on("data", (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      lines.filter((l) => l.trim() !== "").forEach(progress);
    });
    const out = await p;
    if (pending.trim() !== "") progress(pending);
    const result: RunResult = { stdout: out.stdout, stderr: out.stderr, exitCode: out.exitCode ?? 124 };
    if (result.exitCode === 255) throw this.connectionError(result);
    if (out.signal) throw new OpsError(`step "${step.title}" timed out on ${this.destination}`, "check the server (ssh in, look at journalctl) and rerun");
    if (result.exitCode !== 0 && !options.allowFailure) {
      throw new StepFailed(step.title, result, `see the lines above; the server's logs: ssh ${this.destination} journalctl -xe`);
    }
    return result;
  }

  /** Turns ssh's own failures (exit 255) into what happened and what to do. */
  private connectionError(result: RunResult): OpsError {
    const err = result.stderr;
    const known = this.settings.knownHostsFile ?? DEFAULT_KNOWN_HOSTS;
    const hostSpec = this.target.port && this.target.port !== 22 ? `[${this.target.host}]:${this.target.port}` : this.target.host;
    if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/.test(err)) {
      return new OpsError(
        `the host key of ${this.destination} is not the one pinned in ${known}: either the server was rebuilt, or someone is in between`,
        `if the server was rebuilt (e.g. "the server is dead" in docs/runbook.md), forget the old key and connect again:\n` +
          `     ssh-keygen -R '${hostSpec}' -f ${known}\n     otherwise do not connect: find out who answers at ${this.target.host}`,
      );
    }
    if (/Permission denied/.test(err)) {
      return new OpsError(`${this.destination} refused the login (${err.trim().split("\n").pop()})`, `use a key that is in the client file's sshKeys: --identity <private key>, or load it into ssh-agent`);
    }
    if (/timed out|Connection refused|No route to host|Could not resolve|Network is unreachable/.test(err)) {
      return new OpsError(
        `cannot reach ${this.destination}: ${err.trim().split("\n").pop()}`,
        `check the address (--host, or the ipv4 output), that your IP is in sshAllowedCidrs, and that the server is up (provider console)`,
      );
    }
    return new OpsError(`ssh to ${this.destination} failed: ${err.trim().split("\n").slice(-3).join(" ")}`, `try by hand: ssh ${this.args().join(" ")} ${this.target.host}`);
  }

  /** Closes the shared connection (ControlMaster). Safe to call when none is open. */
  async close(): Promise<void> {
    await $({ nothrow: true, quiet: true, timeout: 10_000 })`ssh ${this.args()} -O exit ${this.target.host}`;
  }
}
