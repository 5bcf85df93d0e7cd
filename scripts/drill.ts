#!/usr/bin/env node
/**
 * Restore drill, safe on production at any time: npx zx scripts/drill.ts <stack> [--report FILE]. See --help.
 */
import { COMMON_HELP, main, oneStack, parseArgs, scriptArgs, say } from "./lib/cli.ts";
import { drillRemote } from "./lib/drill-run.ts";
import { SshRunner } from "./lib/ssh.ts";
import { loadEnvironment, resolveTarget } from "./lib/target.ts";

const HELP = `Usage: npx zx scripts/drill.ts <stack> [--report FILE]

Proves the backups of <stack> restore. Runs the server's restore-drill.service — the same unit its monthly
timer runs — which writes a sentinel row into the kit's table _kit_drill, waits until the S3 replica holds
it, restores the replica into /mnt/data/scratch (never over the live database), and checks
PRAGMA integrity_check, the sentinel and row counts per table against live. Reports RPO (time until the
sentinel was restorable) and RTO (restore wall time). Exits non-zero when a check fails.

  --report FILE   where to keep the JSON report here (default outputs/drills/<stack>-<stamp>.json);
                  the server keeps its own in /mnt/data/drills
${COMMON_HELP}`;

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { string: ["report"] });
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  const stack = oneStack(args, "npx zx scripts/drill.ts <stack>");
  const target = resolveTarget(loadEnvironment(stack, args.clientsDir), args.target);
  const runner = new SshRunner(target.ssh, target.sshSettings);
  try {
    const { report } = await drillRemote(runner, stack, { reportFile: args.flags.report as string | undefined, dryRun: args.dryRun });
    if (!report) return void say("dry run: nothing was changed. The drill itself only adds a row to _kit_drill.");
    return report.ok ? 0 : 1;
  } finally {
    await runner.close();
  }
});
