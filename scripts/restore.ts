/**
 * Disaster recovery: npx tsx scripts/restore.ts <stack> --list | --latest | --timestamp T | --from-fallback |
 * --from-file PATH [--local FILE]. See --help.
 */
import { COMMON_HELP, main, parseArgs, say } from "./lib/cli";
import { OpsError } from "./lib/errors";
import { checkTimestamp, listLocal, listRemote, restoreLocal, restoreRemote, summarizeListing } from "./lib/restore-run";
import type { RestoreSource } from "./lib/server-steps";
import { SshRunner } from "./lib/ssh";
import { loadEnvironment, resolveTarget } from "./lib/target";

const HELP = `Usage: npx tsx scripts/restore.ts <stack> (--list | --latest | --timestamp T | --from-fallback | --from-file PATH) [options]

Restores the database of <stack>. Always into a scratch file first (/mnt/data/scratch), then PRAGMA
integrity_check and row counts per table beside the live database's; asks before it replaces anything
(--yes to skip). Then: stop the app and Litestream, move the live database and its -wal/-shm into
/mnt/data/aside/before-restore-<stamp>/ (never deleted), put the restored copy in place, start, health-check,
and print how to undo.

  --list                what can be restored: generations, snapshots, the time range, fallback copies
  --latest              the newest state of the S3 replica
  --timestamp T         the replica as of T (RFC 3339, e.g. 2026-03-14T14:04:00Z), within retention
  --from-fallback       the newest daily fallback copy on the volume (when S3 cannot be reached)
  --from-file PATH      a database file on the server (a pre-deploy snapshot, or an aside copy: undo)
  --local FILE          restore the replica onto THIS machine into FILE (inspection; the server is not
                        touched). Needs the key pair: sensitive outputs, or LITESTREAM_ACCESS_KEY_ID /
                        LITESTREAM_SECRET_ACCESS_KEY. Uses node_modules' litestream (or --litestream PATH).
  --health-seconds N    after the swap (default 60)
${COMMON_HELP}`;

void main(async () => {
  const args = parseArgs(process.argv.slice(2), {
    string: ["timestamp", "from-file", "local", "litestream", "health-seconds"],
    boolean: ["list", "latest", "from-fallback"],
  });
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  const [stack] = args.positional;
  if (!stack) throw new OpsError("which stack?", "npx tsx scripts/restore.ts <stack> --list (see --help)");
  const f = args.flags;
  const chosen = ["list", "latest", "timestamp", "from-fallback", "from-file"].filter((k) => f[k] !== undefined && f[k] !== false);
  if (chosen.length !== 1) throw new OpsError(`choose one of --list, --latest, --timestamp, --from-fallback, --from-file (got ${chosen.length ? chosen.join(", ") : "none"})`, "see --help");
  const timestamp = f.timestamp === undefined ? undefined : checkTimestamp(String(f.timestamp));
  const local = f.local as string | undefined;
  const target = resolveTarget(loadEnvironment(stack, args.clientsDir), args.target, process.env, { needHost: local === undefined });

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
      healthSeconds: f["health-seconds"] === undefined ? undefined : Number(f["health-seconds"]),
    });
    if (args.dryRun) return void say("dry run: nothing was changed.");
    return result.replaced ? 0 : 2;
  } finally {
    await runner.close();
  }
});
