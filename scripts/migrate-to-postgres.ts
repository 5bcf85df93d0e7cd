#!/usr/bin/env node
/**
 * The SQLite → PostgreSQL move of one environment, and its rollback: npx zx scripts/migrate-to-postgres.ts
 * <stack> [--dry-run] [--rollback]. See --help and the runbook's "A client outgrew SQLite".
 */
import { join } from "node:path";
import { COMMON_HELP, integerFlag, main, notBoth, oneStack, parseArgs, scriptArgs, say } from "./lib/cli.ts";
import { OpsError } from "./lib/errors.ts";
import { migrate, rollback, targetDatabase } from "./lib/migrate-run.ts";
import { SshRunner } from "./lib/ssh.ts";
import { loadEnvironment, resolveTarget } from "./lib/target.ts";

const HELP = `Usage: npx zx scripts/migrate-to-postgres.ts <stack> [--dry-run] [--rollback] [options]

Moves <stack>'s database from SQLite to the managed PostgreSQL its stack provisions (client file:
database: { engine: "postgres" }, then cdktf deploy and the outputs with the sensitive ones). pgloader and psql
run on the server (the database firewall admits only it; apt-get installs them when missing).

Checks first (refused, with the fix, before anything changes): the database URL and CA; psql's major version
against the server's; the target reachable over TLS and holding none of the app's tables; room on the volume
for the snapshot; PRAGMA quick_check of the SQLite file (read-only). Then: maintenance page on (Caddy: 503
with Retry-After on every path), the app stopped, Litestream's final sync, a read-only snapshot, pgloader,
every row compared (counts and sha256 of canonical rows, both sides), identities past max(id),
${"/etc/kit/database.env"} written, the app started and health-checked on PostgreSQL, maintenance off,
Litestream and the SQLite fallback stopped (kit-pg-dump.timer instead). Any failure before the switch puts the
server back on SQLite; nothing moves. The SQLite file is never changed or deleted.

  --rollback            after a move: back on the SQLite file as it was at the switch. Lists the writes made on
                        PostgreSQL since (per table added/changed/deleted, from the change log the move
                        installed) into --report; database.env and PostgreSQL's tables are moved aside.
  --report FILE         where --rollback writes those writes (JSON lines; default
                        ./<stack>-postgres-writes-<UTC stamp>.jsonl)
  --database-url-file FILE  the app user's postgresql://… URL (default: the database_url output)
  --database-ca FILE    the cluster's CA, PEM (default: the database_ca_certificate output)
  --drill-url-file FILE the drill database's URL (default: the database_drill_url output)
  --database-admin-url-file FILE  the cluster admin's URL (default: the database_admin_url output): grants
                        the app user CREATE on schema public (PostgreSQL 15+ gives it only to the owner)
  --health-seconds N    how long the app may take to answer its health path, 1-3600 (default 60)
${COMMON_HELP}`;

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), {
    string: ["report", "database-url-file", "database-ca", "drill-url-file", "database-admin-url-file", "health-seconds"],
    boolean: ["rollback"],
  });
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  const stack = oneStack(args, "npx zx scripts/migrate-to-postgres.ts <stack>");
  const f = args.flags;
  // Every flag checked before anything connects.
  const healthSeconds = integerFlag(args, "health-seconds", 1, 3600);
  if (f.report !== undefined && !f.rollback) throw new OpsError("--report is used only with --rollback; here it would be ignored", "drop --report, or add --rollback");
  notBoth(args, "report", "dry-run", "a dry run writes no report");
  for (const flag of ["report", "database-url-file", "database-ca", "drill-url-file", "database-admin-url-file"]) {
    if (f[flag] !== undefined && String(f[flag]).trim() === "") throw new OpsError(`--${flag} needs a file`, `pass --${flag} FILE (see --help)`);
  }
  const env = loadEnvironment(stack, args.clientsDir);
  if (env.database.engine !== "postgres") {
    throw new OpsError(`${stack} is on engine "${env.database.engine}" in its client file`, `set database: { engine: "postgres" } for ${env.environment} in the client file, npx cdktf deploy ${stack}, write the outputs, then run this again`);
  }
  const target = resolveTarget(env, args.target);
  const db = targetDatabase(target, { urlFile: f["database-url-file"] as string | undefined, caFile: f["database-ca"] as string | undefined, drillUrlFile: f["drill-url-file"] as string | undefined, adminUrlFile: f["database-admin-url-file"] as string | undefined });
  const runner = new SshRunner(target.ssh, target.sshSettings);
  try {
    if (f.rollback) {
      const reportFile = (f.report as string | undefined) ?? join(process.cwd(), `${stack}-postgres-writes-${new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}.jsonl`);
      const result = await rollback({ target, runner, db, dryRun: args.dryRun, healthSeconds, reportFile });
      if (args.dryRun) return void say("dry run: nothing was changed.");
      return result.rolledBack ? 0 : 1;
    }
    const result = await migrate({ target, runner, db, dryRun: args.dryRun, healthSeconds });
    if (args.dryRun) return void say("dry run: nothing was changed.");
    return result.switched ? 0 : 1;
  } finally {
    await runner.close();
  }
});
