#!/usr/bin/env node
/**
 * Checks this machine before a deploy or an operation: npx zx scripts/doctor.ts [<stack>] [--local]. See --help.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { main, parseArgs, scriptArgs } from "./lib/cli.ts";
import { type Check, checkCredentials, checkLocalTools, checkNode, checkOutputs, checkSshKey, checkTerraform, formatChecks } from "./lib/doctor.ts";
import { loadEnvironment, REPO_ROOT } from "./lib/target.ts";

const HELP = `Usage: npx zx scripts/doctor.ts [<stack>] [--local] [--outputs FILE] [--identity FILE] [--clients-dir DIR]

Checks what a deploy (npx cdktf deploy <stack>) or an operation (deploy.ts, restore.ts, drill.ts) needs on
this machine and names each missing thing with its fix. Exits 1 when something is missing.

  always        Node (package.json engines), terraform — or tofu with TERRAFORM_BINARY_NAME=tofu — on PATH
                and recent enough, an SSH key in ssh-agent
  <stack>       also: the cloud credentials its providers need (DIGITALOCEAN_TOKEN / HCLOUD_TOKEN, AWS keys),
                TF_VAR_secret_<NAME> for each of its app.secrets, the key in ssh-agent being one of its
                sshKeys, and outputs/<stack>.json present and newer than terraform.<stack>.tfstate
  --local       also: sqlite3 and litestream, which restore.ts --local runs on this machine
  --litestream PATH   the litestream binary restore.ts --local would be given`;

void main(async () => {
  const args = parseArgs(scriptArgs(import.meta.url), { boolean: ["local"], string: ["litestream"] });
  if (args.help) return void process.stdout.write(`${HELP}\n`);
  const [stackName] = args.positional;
  const stack = stackName === undefined ? undefined : loadEnvironment(stackName, args.clientsDir);
  const env = process.env;
  const { engines } = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { engines: { node: string } };
  const checks: Check[] = [checkNode(process.versions.node, engines.node), ...checkTerraform(env), checkSshKey(stack, env, args.target.identity)];
  if (stack) checks.push(...checkCredentials(stack, env), checkOutputs(stack, args.target.outputs ?? join(REPO_ROOT, "outputs", `${stack.stackName}.json`)));
  if (args.flags.local) checks.push(...checkLocalTools(env, args.flags.litestream as string | undefined));
  process.stdout.write(`${formatChecks(checks)}\n`);
  const failed = checks.filter((c) => c.status === "missing");
  process.stdout.write(failed.length === 0 ? `\nready${stack ? ` for ${stack.stackName}` : ""}\n` : `\n${failed.length} thing(s) missing: ${failed.map((c) => c.name).join(", ")}\n`);
  return failed.length === 0 ? 0 : 1;
});
