#!/usr/bin/env node
/**
 * Upgrades running servers to what the kit ships now: npx zx scripts/upgrade.ts <stack>…|--all. See --help
 * and scripts/lib/upgrade-run.ts.
 */
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { AGENCY } from "../app/agency.ts";
import { loadClientsDir } from "../app/config/load.ts";
import { COMMON_HELP, given, integerFlag, main, parseArgs, scriptArgs, say } from "./lib/cli.ts";
import { errors, OpsError } from "./lib/errors.ts";
import { SshRunner } from "./lib/ssh.ts";
import { loadEnvironment, REPO_ROOT, resolveTarget } from "./lib/target.ts";
import { type FleetItem, formatUpgradeTable, upgradeFleet, upgradeServer } from "./lib/upgrade-run.ts";

const USAGE = "npx zx scripts/upgrade.ts <stack>… | --all";
const HELP = `Usage: ${USAGE} [options]

Brings running servers to what this checkout of the kit ships: the Deno and Litestream binaries pinned in
cloud-init/artifacts.ts (downloaded, sha256-checked and run before anything changes, then swapped in by a
rename; the previous ones stay as /usr/local/bin/<name>.kit-previous), the server files of
cloud-init/server-files.ts (units, scripts, configuration: pushed as deploy.ts pushes them, each change with
its declared effect), and OS security updates (unattended-upgrade). Under the deploy lock, per server:

  stage the new binaries → OS security updates → keep a copy of the server files → swap the binaries →
  push the files → restart Litestream on a new binary (SIGTERM: it uploads its pending WAL first) →
  restart the app blue/green on the other slot (as a deploy: health-checked before Caddy switches) when
  Deno or what the app reads at start changed → prove replication current (a watcher run whose heartbeat
  row is found in the bucket) → release the lock.

On any failure the server goes back to what it ran before (binaries, files and their effects, Litestream,
the app's slot) and the command says what failed and what it left; OS packages stay upgraded.

  <stack>…              the environments to upgrade (app/clients/*.ts names them)
  --all                 every environment of every client file
  --concurrency N       servers upgraded at once, 1-16 (default 2)
  --keep-going          go on with the other servers after one fails (default: start no further server)
  --skip-os-updates     leave the OS packages alone (no apt-get update, no unattended-upgrade)
  --health-seconds N    how long the app on its new slot has to become healthy, 1-3600 (default 30)
  --outputs-dir DIR     each stack's outputs file is DIR/<stack>.json (default outputs/)
  --render-overrides F  JSON RenderOverrides used when the servers were rendered (mirrors, tests)
  --dry-run             per server: versions from → to, the files that differ, what restarts; changes nothing
${COMMON_HELP.replace(/\n {2}--(yes|dry-run) [^\n]*/g, "")}

--host, --user, --port and --outputs name one server: with one stack only. Ends with a table: server,
from → to, result, duration. Exit status 1 when a server failed.`;

/** Flags that name one server's address: meaningless for several. */
const ONE_SERVER_FLAGS = ["host", "user", "port", "outputs"];

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { string: ["concurrency", "health-seconds", "outputs-dir"], boolean: ["all", "keep-going", "skip-os-updates"] });
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  // Every flag is checked before a client file is read or a server contacted.
  if (args.yes) throw new OpsError("--yes: upgrade.ts asks nothing (it rolls back by itself)", "drop --yes");
  const all = Boolean(args.flags.all);
  const stacks = [...new Set(args.positional)];
  if (all && stacks.length) throw new OpsError(`--all and a stack (${stacks.join(", ")}) together: --all already upgrades every environment`, "drop --all, or the stacks");
  if (!all && !stacks.length) throw new OpsError("which environments?", `${USAGE} (see --help)`);
  const several = all || stacks.length > 1;
  if (several) {
    const one = ONE_SERVER_FLAGS.find((flag) => given(args, flag));
    if (one) throw new OpsError(`--${one} names one server, and this upgrades ${all ? "all environments" : stacks.length}`, `drop --${one}, or upgrade one stack: npx zx scripts/upgrade.ts <stack> --${one} …`);
  } else if (given(args, "keep-going")) {
    throw errors.ignoredFlag("keep-going", "with several stacks or --all");
  }
  const concurrency = integerFlag(args, "concurrency", 1, 16) ?? 2;
  const healthSeconds = integerFlag(args, "health-seconds", 1, 3600);
  if (given(args, "outputs-dir") && given(args, "outputs")) throw new OpsError("--outputs and --outputs-dir together: both say where the outputs file is", "drop one of them (see --help)");
  const outputsDir = given(args, "outputs-dir") ? directory("--outputs-dir", String(args.flags["outputs-dir"])) : undefined;

  const envs = all ? loadClientsDir(AGENCY, args.clientsDir === undefined ? join(REPO_ROOT, "app", "clients") : resolve(args.clientsDir), REPO_ROOT) : stacks.map((s) => loadEnvironment(s, args.clientsDir));
  const items: FleetItem[] = envs.map((env) => {
    try {
      return { stack: env.stackName, target: resolveTarget(env, outputsDir ? { ...args.target, outputs: join(outputsDir, `${env.stackName}.json`) } : args.target) };
    } catch (error) {
      if (!(error instanceof OpsError) || !several) throw error;
      return { stack: env.stackName, problem: error };
    }
  });
  const runners: SshRunner[] = [];
  say(`${args.dryRun ? "dry run: " : ""}upgrading ${items.length} server${items.length === 1 ? "" : "s"}, ${Math.min(concurrency, items.length)} at a time`);
  try {
    const rows = await upgradeFleet(items, {
      concurrency,
      keepGoing: Boolean(args.flags["keep-going"]),
      dryRun: args.dryRun,
      upgrade: (target) => {
        const runner = new SshRunner(target.ssh, target.sshSettings);
        runners.push(runner);
        return upgradeServer({ target, runner, dryRun: args.dryRun, healthSeconds, osUpdates: !args.flags["skip-os-updates"] });
      },
    });
    process.stdout.write(`${formatUpgradeTable(rows)}\n`);
    if (args.dryRun) say("dry run: nothing was changed.");
    const failed = rows.filter((r) => r.result.startsWith("FAILED"));
    if (failed.length) {
      throw new OpsError(
        `${failed.length} of ${rows.length} server${rows.length === 1 ? "" : "s"} failed: ${failed.map((r) => `${r.stack} (${r.result})`).join(", ")}`,
        `each failure is above with what it left; fix the cause and run the upgrade again for ${failed.map((r) => r.stack).join(" ")}`,
      );
    }
  } finally {
    await Promise.all(runners.map((r) => r.close()));
  }
});

/** A directory flag's value: it exists. */
function directory(flag: string, value: string): string {
  const dir = resolve(value);
  if (value === "" || !existsSync(dir) || !statSync(dir).isDirectory()) throw new OpsError(`${flag} ${JSON.stringify(value)} is not a directory`, "pass the directory that holds the <stack>.json outputs files");
  return dir;
}
