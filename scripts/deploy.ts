#!/usr/bin/env node
/**
 * Deploys a client environment's app: npx zx scripts/deploy.ts <stack> [--ref REF] [--rollback] …
 * (or directly: scripts/deploy.ts <stack>; npx tsx works too). See --help.
 */
import { COMMON_HELP, integerFlag, main, notBoth, oneStack, onlyWith, parseArgs, scriptArgs, say, stepLine } from "./lib/cli.ts";
import { deploy, inspectServer, pushConfiguration, rollbackOne } from "./lib/deploy-run.ts";
import { OpsError } from "./lib/errors.ts";
import { databaseEnvStep, rollout, type RolloutServer } from "./lib/rollout.ts";
import { SshRunner } from "./lib/ssh.ts";
import { loadEnvironment, resolveTarget, serverTargets } from "./lib/target.ts";

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

Several app servers (servers > 1, the server_ipv4s output): a deploy or --rollback goes server by server.
Each is drained first (/run/kit-drain: its Caddy answers 503 on the load balancer's health path only),
changed once the LB's health check has taken it out of rotation, put back, and the next waits until the LB
sends to it again; the migration runs on the first server only (they share PostgreSQL). A failure stops
the rollout there, that server rolled back, the others untouched. --config-only pushes to each in turn.
--server N deploys (or rolls back) that one server only, drained the same way; --host ADDR skips the drain.
On PostgreSQL (the outputs hold database_url): /etc/kit/database.env and the CA are written first on every
server that already runs on it, and on servers 2..N (a new one's first boot waits for them); server 1 gets
them from migrate-to-postgres.ts only.

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
  const common = { ref: args.flags.ref as string | undefined, keep, healthSeconds, dryRun: args.dryRun };
  const to = args.flags.to as string | undefined;
  if (to !== undefined && !target.chosen && (target.servers?.length ?? 1) > 1) {
    throw new OpsError(`--to ${to} names a release directory of one server; ${stack} has ${target.servers?.length} servers`, "add --server N to roll that one back to it, or drop --to to roll every server back one release");
  }
  const runners = (target.chosen ? [target] : serverTargets(target)).map((t) => ({ target: t, runner: new SshRunner(t.ssh, t.sshSettings) }));
  try {
    // On PostgreSQL: the cluster's connection on every server that runs on it, or will (rollout.ts databaseEnvStep).
    if (target.database) {
      for (const r of runners) {
        const put = databaseEnvStep(target.database);
        if (args.dryRun) say(`${r.runner.destination}: would run: ${put.title} (not in a dry run)`);
        else {
          stepLine(`${r.runner.destination}: ${put.title}`);
          await r.runner.run(put);
        }
      }
    }
    const all = target.servers ?? [target.ssh.host];
    if (all.length === 1 || (runners.length === 1 && args.flags["config-only"])) {
      const options = { ...common, ...runners[0] };
      if (args.flags.rollback) await rollbackOne({ ...options, to });
      else if (args.flags["config-only"]) await pushConfiguration(options);
      else await deploy(options);
    } else if (args.flags["config-only"]) {
      // The app keeps running on every server: no drain needed, one server after the other.
      for (const [i, r] of runners.entries()) {
        say(`\n── server ${i + 1} of ${runners.length}: ${r.runner.destination} ──`);
        await pushConfiguration({ ...common, ...r });
      }
    } else {
      const servers: RolloutServer[] = runners.map((r) => ({ number: all.indexOf(r.target.ssh.host) + 1, ...r }));
      const one = (s: RolloutServer, first: boolean, dryRun: boolean) => {
        const options = { ...common, target: s.target, runner: s.runner, dryRun, migrate: first };
        return args.flags.rollback ? rollbackOne({ ...options, to }) : deploy(options);
      };
      await rollout({
        env: target.env,
        servers,
        loadBalancer: target.loadBalancer,
        dryRun: args.dryRun,
        change: {
          what: args.flags.rollback ? `rollback${to ? ` to ${to}` : ""}` : `deploy of ${common.ref ?? target.env.app.ref}`,
          current: async (s) => {
            const state = await inspectServer(s.runner, target.env.app.port);
            return state.slots[state.activePort] ?? "";
          },
          apply: async (s, first) => (await one(s, first, false)).release,
          plan: async (s, first) => void (await one(s, first, true)),
        },
      });
    }
  } finally {
    await Promise.all(runners.map((r) => r.runner.close()));
  }
  if (args.dryRun) say("dry run: nothing was changed.");
});
