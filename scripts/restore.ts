#!/usr/bin/env node
/**
 * Disaster recovery: npx zx scripts/restore.ts <stack> --list | --latest | --timestamp T | --from-fallback |
 * --from-file PATH [--local FILE]. See --help.
 */
import { COMMON_HELP, integerFlag, main, notBoth, oneStack, onlyWith, parseArgs, scriptArgs, restorableTime, say } from "./lib/cli.ts";
import { durationSeconds } from "../app/config/checker.ts";
import { OpsError } from "./lib/errors.ts";
import { listLocal, listRemote, restoreLocal, restoreRemote, summarizeListing } from "./lib/restore-run.ts";
import type { RestoreSource } from "./lib/server-steps.ts";
import { SshRunner } from "./lib/ssh.ts";
import { loadEnvironment, resolveTarget } from "./lib/target.ts";

const HELP = `Usage: npx zx scripts/restore.ts <stack> (--list | --latest | --timestamp T | --from-fallback | --from-file PATH) [options]

Restores the database of <stack>. Always into a scratch file first (/mnt/data/scratch), then PRAGMA
integrity_check and row counts per table beside the live database's; asks before it replaces anything
(--yes to skip). Then: stop the app and Litestream, move the live database and its -wal/-shm into
/mnt/data/aside/before-restore-<stamp>/ (never deleted), put the restored copy in place, start, health-check,
and print how to undo.

  --list                what can be restored: generations, snapshots, the time range, fallback copies
  --latest              the newest state of the S3 replica
  --timestamp T         the replica as of T (RFC 3339, e.g. 2026-03-14T14:04:00Z): a past time within the
                        client file's backups.litestream.retention
  --from-fallback       the newest daily fallback copy on the volume (when S3 cannot be reached)
  --from-file PATH      a database file on the server (a pre-deploy snapshot, or an aside copy: undo)
  --local FILE          restore the replica onto THIS machine into FILE (inspection; the server is not
                        touched). Needs the key pair: sensitive outputs, or LITESTREAM_ACCESS_KEY_ID /
                        LITESTREAM_SECRET_ACCESS_KEY. Uses node_modules' litestream (or --litestream PATH).
  --health-seconds N    after the swap, 1-3600 (default 60)
${COMMON_HELP}`;

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), {
    string: ["timestamp", "from-file", "local", "litestream", "health-seconds"],
    boolean: ["list", "latest", "from-fallback"],
  });
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  const stack = oneStack(args, "npx zx scripts/restore.ts <stack> --list");
  const f = args.flags;
  const chosen = ["list", "latest", "timestamp", "from-fallback", "from-file"].filter((k) => f[k] !== undefined && f[k] !== false);
  if (chosen.length !== 1) throw new OpsError(`choose one of --list, --latest, --timestamp, --from-fallback, --from-file (got ${chosen.length ? chosen.join(", ") : "none"})`, "see --help");
  // Every flag checked before anything connects.
  const healthSeconds = integerFlag(args, "health-seconds", 1, 3600);
  onlyWith(args, "litestream", "local", "list");
  for (const mode of ["list", "local"]) notBoth(args, "health-seconds", mode, `--${mode} replaces nothing on the server, so there is no health check to wait for`);
  notBoth(args, "dry-run", "local", "--local changes nothing on the server; it only writes FILE here (there is nothing to preview)");
  const local = f.local as string | undefined;
  const env = loadEnvironment(stack, args.clientsDir);
  const retention = env.backups.litestream.retention;
  const timestamp = f.timestamp === undefined ? undefined : restorableTime(String(f.timestamp), durationSeconds(retention) ?? 0, retention);
  const target = resolveTarget(env, args.target, process.env, { needHost: local === undefined });

  if (local !== undefined || (f.list && !target.ssh.host)) {
    if (f["from-fallback"] || f["from-file"]) throw new OpsError("--local restores from the S3 replica only", "use --latest or --timestamp with --local");
    if (f.list) {
      const text = await listLocal(target, f.litestream as string | undefined);
      process.stdout.write(text);
      say(`\n${summarizeListing(text)}`);
      return;
    }
    await restoreLocal(target, local!, timestamp, f.litestream as string | undefined);
    say(`✓ restored into ${local} (this machine). Open it with: sqlite3 ${local}`);
    return;
  }

  const runner = new SshRunner(target.ssh, target.sshSettings);
  try {
    if (f.list) {
      const text = await listRemote(runner);
      process.stdout.write(text);
      say(`\n${summarizeListing(text)}`);
      return;
    }
    const from: RestoreSource = f["from-fallback"]
      ? { kind: "fallback" }
      : f["from-file"]
        ? { kind: "file", path: String(f["from-file"]) }
        : { kind: "replica", timestamp };
    const result = await restoreRemote({
      target,
      runner,
      from,
      yes: args.yes,
      dryRun: args.dryRun,
      healthSeconds,
    });
    if (args.dryRun) return void say("dry run: nothing was changed.");
    return result.replaced ? 0 : 2;
  } finally {
    await runner.close();
  }
});
