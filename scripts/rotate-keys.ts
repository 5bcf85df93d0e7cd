#!/usr/bin/env node
/**
 * Rotates the backup user's access key without a gap: npx zx scripts/rotate-keys.ts <stack>. See --help and
 * scripts/lib/rotate-keys-run.ts.
 */
import { COMMON_HELP, main, oneStack, parseArgs, scriptArgs, say } from "./lib/cli.ts";
import { OpsError } from "./lib/errors.ts";
import { rotateKeys } from "./lib/rotate-keys-run.ts";
import { SshRunner } from "./lib/ssh.ts";
import { loadEnvironment, resolveTarget } from "./lib/target.ts";

const HELP = `Usage: npx zx scripts/rotate-keys.ts <stack> [options]

Rotates the access key of <stack>'s backup IAM user, so that the server always replicates with a key that
exists. Each run reads where the rotation stands (the client file's backups.accessKeys, the outputs file's
access_keys, the key in the server's /etc/kit/s3.env and the one Litestream runs with) and does what is
left, up to the next step that is yours:

  1. new key in the free slot     you: backups.accessKeys ["a", "b"], then cdktf deploy (printed)
  2. push it to /etc/kit/s3.env   under the deploy lock
  3. restart Litestream with it   it uploads its pending WAL before it stops
  4. prove replication with it    the restore drill: a row written now is restored from the bucket
  5. retire the old key           you: backups.accessKeys ["b"], then cdktf deploy (printed)

Run it again after each of your steps; a run that stopped anywhere continues where it stopped. It refuses
a client file that drops the key the server still uses.

Exit status: 0 at rest (one key, the server uses it) or done; 2 when the rotation waits for your step.
${COMMON_HELP}`;

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), {});
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  const stack = oneStack(args, "npx zx scripts/rotate-keys.ts <stack>, e.g. example-prod");
  if (args.yes) throw new OpsError("--yes: rotate-keys asks nothing (your steps are printed, not confirmed)", "drop --yes");
  const target = resolveTarget(loadEnvironment(stack, args.clientsDir), args.target);
  const runner = new SshRunner(target.ssh, target.sshSettings);
  try {
    const result = await rotateKeys({ target, runner, dryRun: args.dryRun });
    if (args.dryRun) return void say("dry run: nothing was changed.");
    return result.rotating ? 2 : 0;
  } finally {
    await runner.close();
  }
});
