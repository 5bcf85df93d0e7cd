/**
 * SSH from the host to a machine, as an operator (or scripts/deploy.ts) reaches a droplet: a throwaway
 * ed25519 key for the user data's ssh_authorized_keys, host keys accepted on first use and pinned in the
 * run's own known_hosts (never the user's ~/.ssh).
 */
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import { formatArgv, run, type RunResult } from "./process.ts";
import { type Teardown } from "./teardown.ts";

export interface SshKey {
  /** Path of the private key (in the run's scratch dir). */
  readonly privateKeyPath: string;
  /** The public key line, for ssh_authorized_keys. */
  readonly publicKey: string;
}

export async function createSshKey(teardown: Teardown, name = "id_ed25519"): Promise<SshKey> {
  const privateKeyPath = join(teardown.workDir, name);
  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kit-e2e", "-f", privateKeyPath]);
  return { privateKeyPath, publicKey: (await readFile(`${privateKeyPath}.pub`, "utf8")).trim() };
}

export interface SshOptions {
  readonly key: SshKey;
  readonly user: string;
  readonly host: string;
  /** Pinned host keys; use one file per run. */
  readonly knownHostsFile: string;
  readonly input?: string;
  /** @default 60 s */
  readonly timeoutMs?: number;
  readonly allowFailure?: boolean;
}

/** The ssh argv for running `command` (quoted for the remote shell) on host as user. */
export function sshArgv(options: SshOptions, command: readonly string[]): string[] {
  return [
    "ssh",
    "-i", options.key.privateKeyPath,
    "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5",
    "-o", "StrictHostKeyChecking=accept-new",
    "-o", `UserKnownHostsFile=${options.knownHostsFile}`,
    "-o", "LogLevel=ERROR",
    `${options.user}@${options.host}`,
    "--",
    formatArgv(command),
  ];
}

/** Runs `command` over SSH; throws with ssh's stderr on failure unless allowFailure. */
export function ssh(options: SshOptions, command: readonly string[]): Promise<RunResult> {
  return run(sshArgv(options, command), {
    input: options.input,
    timeoutMs: options.timeoutMs ?? 60_000,
    allowFailure: options.allowFailure,
  });
}
