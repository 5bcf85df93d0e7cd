#!/usr/bin/env node
/**
 * Deploys a client environment's app: npx zx scripts/deploy.ts <stack> [--ref REF] [--rollback] …
 * (or directly: scripts/deploy.ts <stack>; npx tsx works too). See --help.
 */
import { COMMON_HELP, integerFlag, main, notBoth, oneStack, onlyWith, parseArgs, scriptArgs, say } from "./lib/cli.ts";
import { deploy, pushConfiguration, rollbackOne } from "./lib/deploy-run.ts";
import { OpsError } from "./lib/errors.ts";
import { SshRunner } from "./lib/ssh.ts";
import { loadEnvironment, resolveTarget } from "./lib/target.ts";

const HELP = `Usage: npx zx scripts/deploy.ts <stack> [options]

Deploys the app of <stack> (e.g. example-prod): takes the server's deploy lock, pushes the configuration
that changed (rendered from the client file, exactly as the bootstrap renders it), fetches the app at --ref
into a new release, snapshots the database (sqlite3 .backup into /mnt/data/aside), runs the migrate task,
starts the release on the other slot (port ↔ port+1), health-checks it, switches Caddy to it and stops the
old one. On any failure: back to the previous release, and to the snapshot if the migration failed or
changed the schema (schema_version/user_version).

  --ref REF             branch, tag or commit (default: app.ref in the client file)
  --config-only         push only the configuration that changed (SSH keys, Litestream, Caddy, units, env
                        files): no release, no migration; the app keeps running. Revokes a removed key now.
  --rollback            go back one release (code only; the database is not changed)
  --to RELEASE          with --rollback: this release directory instead of the previous one
  --keep N              releases kept on the server, 2-100 (default 5; the previous one is what --rollback needs)
  --health-seconds N    how long the new release has to become healthy, 1-3600 (default 30)
  --render-overrides F  JSON RenderOverrides used when the server was rendered (mirrors, tests)

Secrets: /etc/kit/s3.env is pushed only when the outputs file holds the sensitive key pair;
/etc/app/secrets.env only when every TF_VAR_secret_<NAME> is set. Otherwise the server's files stay.
${COMMON_HELP}`;

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { string: ["ref", "to", "keep", "health-seconds"], boolean: ["rollback", "config-only"] });
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  const stack = oneStack(args, "npx zx scripts/deploy.ts <stack>, e.g. example-prod");
  // Every flag checked before anything connects.
  const keep = integerFlag(args, "keep", 2, 100);
  const healthSeconds = integerFlag(args, "health-seconds", 1, 3600);
  onlyWith(args, "to", "rollback");
  notBoth(args, "rollback", "ref", "a rollback goes back to the previous release (or --to RELEASE); it fetches no ref");
  if (args.flags["config-only"]) {
    const clash = ["rollback", "ref", "to"].filter((flag) => args.flags[flag] !== undefined && args.flags[flag] !== false);
    if (clash.length) throw new OpsError(`--config-only deploys no release, so --${clash.join(" and --")} would be ignored`, "drop them, or deploy without --config-only");
  }
  const target = resolveTarget(loadEnvironment(stack, args.clientsDir), args.target);
  const runner = new SshRunner(target.ssh, target.sshSettings);
  const options = {
    target,
    runner,
    ref: args.flags.ref as string | undefined,
    keep,
    healthSeconds,
    dryRun: args.dryRun,
  };
  try {
    if (args.flags.rollback) await rollbackOne({ ...options, to: args.flags.to as string | undefined });
    else if (args.flags["config-only"]) await pushConfiguration(options);
    else await deploy(options);
  } finally {
    await runner.close();
  }
  if (args.dryRun) say("dry run: nothing was changed.");
});
