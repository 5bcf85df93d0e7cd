#!/usr/bin/env node
/**
 * The fleet view: npx zx scripts/status.ts [<stack>…|--all] [--json] [--html FILE]. See --help.
 */
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { AGENCY } from "../app/agency.ts";
import { loadClientsDir } from "../app/config/load.ts";
import { WATCH_STALE_SECONDS } from "../cloud-init/watch-verdict.ts";
import { COMMON_HELP, given, main, parseArgs, scriptArgs, say } from "./lib/cli.ts";
import { OpsError } from "./lib/errors.ts";
import { SshRunner } from "./lib/ssh.ts";
import { fleetStatus, readStatusStep, type StatusTarget } from "./lib/status.ts";
import { formatHtml, formatTable, HTML_GENERATOR, useColor } from "./lib/status-render.ts";
import { loadEnvironment, REPO_ROOT, resolveTarget, serverLabel, serverTargets } from "./lib/target.ts";

const USAGE = "npx zx scripts/status.ts <stack>… | --all";
const HELP = `Usage: ${USAGE} [--json] [--html FILE]

One row per environment (per server when it has several: "<stack> #2") from each server's watcher (kit-watch.timer, every minute): health, release,
replication lag, last fallback copy, last restore drill (its RPO/RTO), disk use, Deno and Litestream
against the kit's pins, pending updates or reboot, certificate days left, backup key age. Reads over SSH,
4 servers at a time, 30 s each at most; changes nothing. A server that cannot be read, or whose verdict is
older than ${WATCH_STALE_SECONDS} s (the watcher stopped), is red. Exits 1 when anything is red.

  <stack>…        the environments to show (app/clients/*.ts names them)
  --all           every environment of every client file
  --json          the report as JSON on stdout (README, "Status of the fleet")
  --html FILE     also write one self-contained page: the table and each environment's replication lag
                  over the last day (overwrites only a page this command wrote)
  --outputs-dir DIR   each stack's outputs file is DIR/<stack>.json (default outputs/)
  --dry-run       list the servers and the read step; connect to none
${COMMON_HELP.replace(/\n {2}--(yes|dry-run|s3-endpoint) [^\n]*/g, "").replace(/; the SSH keys a deploy\n\s+pushes come from the client file found there/, "")}

--host, --user, --port and --outputs name one server: with one stack only. Each stack's own outputs file
(outputs/<stack>.json) gives its address, SSH user and backup keys (access_keys: the key's age).`;

/** Flags that name one server's address: meaningless for several. */
const ONE_SERVER_FLAGS = ["host", "user", "port", "outputs"];

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { string: ["html", "outputs-dir"], boolean: ["all", "json"] });
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  // Every flag is checked before a client file is read or a server contacted.
  for (const flag of ["yes", "s3-endpoint", "render-overrides"]) {
    if (given(args, flag)) throw new OpsError(`--${flag} is not used by status.ts (it only reads)`, `drop --${flag}`);
  }
  const all = Boolean(args.flags.all);
  const stacks = [...new Set(args.positional)];
  if (all && stacks.length) throw new OpsError(`--all and a stack (${stacks.join(", ")}) together: --all already shows every environment`, "drop --all, or the stacks");
  if (!all && !stacks.length) throw new OpsError("which environments?", `${USAGE} (see --help)`);
  if (all || stacks.length > 1) {
    const one = ONE_SERVER_FLAGS.find((flag) => given(args, flag));
    if (one) throw new OpsError(`--${one} names one server, and this shows ${all ? "all environments" : stacks.length}`, `drop --${one}, or show one stack: npx zx scripts/status.ts <stack> --${one} …`);
  }
  const html = given(args, "html") ? htmlFile(String(args.flags.html)) : undefined;
  if (given(args, "outputs-dir") && given(args, "outputs")) throw new OpsError("--outputs and --outputs-dir together: both say where the outputs file is", "drop one of them (see --help)");
  const outputsDir = given(args, "outputs-dir") ? directory("--outputs-dir", String(args.flags["outputs-dir"])) : undefined;

  const envs = all ? loadClientsDir(AGENCY, args.clientsDir === undefined ? join(REPO_ROOT, "app", "clients") : resolve(args.clientsDir), REPO_ROOT) : stacks.map((s) => loadEnvironment(s, args.clientsDir));
  const targets: StatusTarget[] = envs.flatMap((env): StatusTarget[] => {
    try {
      const target = resolveTarget(env, outputsDir ? { ...args.target, outputs: join(outputsDir, `${env.stackName}.json`) } : args.target);
      // Several app servers (server_ipv4s): a row each, unless --server/--host chose one.
      return (target.chosen ? [target] : serverTargets(target)).map((t) => ({ target: t }));
    } catch (error) {
      if (!(error instanceof OpsError)) throw error;
      return [{ stack: env.stackName, client: env.client, environment: env.environment, problem: error }];
    }
  });
  if (args.dryRun) {
    say(`status (dry run: nothing is contacted) would read ${targets.length} server${targets.length === 1 ? "" : "s"}, 4 at a time:`);
    for (const t of targets) say(t.problem ? `  ${t.stack}: ${t.problem.message}` : `  ${serverLabel(t.target)}: ${t.target.ssh.user}@${t.target.ssh.host}`);
    say(`each with this read-only step:\n${readStatusStep().script.display.replace(/^/gm, "    ")}`);
    return 0;
  }

  const runners: SshRunner[] = [];
  say(`reading ${targets.length} server${targets.length === 1 ? "" : "s"}…`);
  try {
    const report = await fleetStatus(targets, {
      runnerFor: (target) => {
        const runner = new SshRunner(target.ssh, target.sshSettings);
        runners.push(runner);
        return runner;
      },
    });
    if (args.flags.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else process.stdout.write(`${formatTable(report, useColor(process.stdout))}\n`);
    if (html) {
      writeFileSync(`${html}.tmp`, formatHtml(report));
      renameSync(`${html}.tmp`, html);
      say(`wrote ${html}`);
    }
    return report.red ? 1 : 0;
  } finally {
    await Promise.all(runners.map((r) => r.close()));
  }
});

/** A directory flag's value: it exists. */
function directory(flag: string, value: string): string {
  const dir = resolve(value);
  if (value === "" || !existsSync(dir) || !statSync(dir).isDirectory()) throw new OpsError(`${flag} ${JSON.stringify(value)} is not a directory`, `pass the directory that holds the <stack>.json outputs files`);
  return dir;
}

/** The --html file: its directory exists, and it is new or a page this command wrote (nothing else is overwritten). */
function htmlFile(value: string): string {
  if (value === "") throw new OpsError("--html needs a file name", "pass e.g. --html status.html");
  const file = resolve(value);
  if (!existsSync(dirname(file)) || !statSync(dirname(file)).isDirectory()) throw new OpsError(`--html ${value}: ${dirname(file)} is not a directory`, "create it, or name a file in an existing directory");
  if (existsSync(file)) {
    const isPage = statSync(file).isFile() && readFileSync(file, "utf8").slice(0, 400).includes(HTML_GENERATOR);
    if (!isPage) throw new OpsError(`--html ${value} exists and is not a page status.ts wrote: it would be overwritten`, "name another file, or move that one aside");
  }
  return file;
}
