/**
 * Every failure an operator can meet, with what happened and what to do. The scripts print `error:` and
 * `fix:` lines and set a non-zero exit code; nothing else is printed for an OpsError (no stack trace).
 */
export class OpsError extends Error {
  /** What the operator should do next: commands to run, flags to pass. */
  readonly fix: string;
  constructor(
    message: string,
    fix: string,
  ) {
    super(message);
    this.fix = fix;
    this.name = "OpsError";
  }
}

export const errors = {
  noClientsDir: (dir: string) => new OpsError(`--clients-dir ${dir}: no such directory`, "pass the directory that holds the client files (default app/clients)"),
  unknownStack: (stack: string, known: readonly string[]) =>
    new OpsError(`no client environment named "${stack}"`, `use one of: ${known.join(", ")} (stacks come from app/clients/*.ts)`),
  noHost: (stack: string, outputsFile: string) =>
    new OpsError(
      `no server address for ${stack}: ${outputsFile} is missing or has no ipv4 output`,
      `write the stack's outputs once: npx cdktf output ${stack} --outputs-file ${outputsFile} --outputs-file-include-sensitive-outputs\n` +
        `     or pass the address: --host <ip>`,
    ),
  badOutputs: (file: string, reason: string) =>
    new OpsError(`cannot read the stack outputs in ${file}: ${reason}`, `rewrite it: npx cdktf output <stack> --outputs-file ${file} --outputs-file-include-sensitive-outputs`),
  noCredentials: (stack: string, outputsFile: string) =>
    new OpsError(
      `no S3 credentials for ${stack}: this needs the backup user's key pair on this machine`,
      `include sensitive outputs: npx cdktf output ${stack} --outputs-file ${outputsFile} --outputs-file-include-sensitive-outputs\n` +
        `     or export LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY`,
    ),
  badTimestamp: (value: string) =>
    new OpsError(`--timestamp ${value} is not an RFC 3339 time`, `write it like 2026-03-14T14:04:00Z (UTC) or 2026-03-14T15:04:00+01:00`),
  futureTimestamp: (value: string, now: Date) =>
    new OpsError(`--timestamp ${value} is in the future (it is now ${now.toISOString().slice(0, 19)}Z)`, "for the newest state use --latest; see what exists with --list"),
  beyondRetention: (value: string, retention: string, oldest: Date) =>
    new OpsError(
      `--timestamp ${value} is older than the replica's retention (${retention}): nothing before about ${oldest.toISOString().slice(0, 19)}Z is kept`,
      "pick a time after that (--list shows the restorable range), or an older fallback copy: --list, then --from-file",
    ),
  oneStack: (stacks: readonly string[], usage: string) => new OpsError(`one stack at a time (got ${stacks.join(", ")})`, usage),
  badNumber: (flag: string, value: string, min: number, max: number) =>
    new OpsError(`--${flag} ${JSON.stringify(value)} is not a whole number from ${min} to ${max}`, `pass e.g. --${flag} ${min === max ? min : Math.max(min, Math.min(max, 5))}`),
  ignoredFlag: (flag: string, when: string) => new OpsError(`--${flag} is used ${when}; here it would be ignored`, `drop --${flag}, or add what it goes with (see --help)`),
  conflictingFlags: (flag: string, other: string, why: string) => new OpsError(`--${flag} and --${other} together: ${why}`, `drop one of them (see --help)`),
  partialSecrets: (missing: readonly string[]) =>
    new OpsError(
      `some app secrets are set in the environment but not ${missing.map((m) => `TF_VAR_secret_${m}`).join(", ")}`,
      `set all of them to push /etc/app/secrets.env, or none to leave the server's file as it is`,
    ),
};
