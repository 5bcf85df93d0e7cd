/**
 * What `scripts/doctor.ts` checks: the things a deploy (`npx cdktf deploy`) or an operation (deploy.ts,
 * restore.ts, drill.ts) needs on the operator's machine. Each check says what it found and, when something
 * is missing, the fix. Checks look only at the environment and PATH they are given, so tests can take
 * things away.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import { AGENCY } from "../../app/agency.ts";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { localStateFile } from "../../app/repo.ts";
import { localLitestream } from "./restore-run.ts";
import { REPO_ROOT } from "./target.ts";

export interface Check {
  readonly name: string;
  /** "warn": works, but worth knowing (it does not fail the doctor). */
  readonly status: "ok" | "missing" | "warn";
  readonly detail: string;
  readonly fix?: string;
}

/** Terraform and OpenTofu releases the kit is known to work with: S3-native state locking (`use_lockfile`) needs 1.10. */
export const TERRAFORM_MIN = { terraform: "1.10.0", tofu: "1.10.0" } as const;

const ok = (name: string, detail: string): Check => ({ name, status: "ok", detail });
const missing = (name: string, detail: string, fix: string): Check => ({ name, status: "missing", detail, fix });

/** The first executable called `name` on the PATH of `env`, as a shell would find it. */
export function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** true when version a ≥ b (dotted numbers; a pre-release suffix is ignored). */
export function atLeast(a: string, b: string): boolean {
  const parse = (v: string) => [0, 1, 2].map((i) => Number.parseInt(v.replace(/^v/, "").split(/[.-]/)[i] ?? "0", 10) || 0);
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] > y[i];
  return true;
}

export function checkNode(version: string, engines: string): Check {
  const needed = engines.replace(/^>=\s*/, "");
  return atLeast(version, needed)
    ? ok("node", `${version} (the kit needs ${engines})`)
    : missing("node", `${version} is older than the kit needs (${engines})`, "install Node 22, 24 or 26 (README, Requirements), e.g. from nodejs.org or your package manager");
}

/** terraform, or tofu with TERRAFORM_BINARY_NAME=tofu (what cdktf runs), on PATH and recent enough. */
export function checkTerraform(env: NodeJS.ProcessEnv): Check[] {
  const wanted = env.TERRAFORM_BINARY_NAME || "terraform";
  const found = onPath(wanted, env);
  const install =
    "install Terraform ≥ " + TERRAFORM_MIN.terraform + " (developer.hashicorp.com/terraform/install) or OpenTofu ≥ " + TERRAFORM_MIN.tofu +
    " (opentofu.org/docs/intro/install) and put it on PATH";
  if (!found) {
    const tofu = wanted !== "tofu" ? onPath("tofu", env) : undefined;
    const fix = tofu ? `${tofu} is on PATH: export TERRAFORM_BINARY_NAME=tofu so cdktf runs it` : install;
    return [missing("terraform", `${wanted} is not on PATH${env.TERRAFORM_BINARY_NAME ? ` (TERRAFORM_BINARY_NAME=${wanted})` : ""}`, fix)];
  }
  const result = spawnSync(found, ["version", "-json"], { env, encoding: "utf8", timeout: 30_000 });
  let version: string | undefined;
  try {
    version = (JSON.parse(result.stdout) as { terraform_version?: string }).terraform_version;
  } catch {
    version = undefined;
  }
  if (!version) return [missing("terraform", `${found} version -json did not answer with a version (${(result.stderr || String(result.error ?? "")).trim().split("\n")[0]})`, install)];
  const min = wanted === "tofu" ? TERRAFORM_MIN.tofu : TERRAFORM_MIN.terraform;
  const checks = [atLeast(version, min) ? ok("terraform", `${found} ${version}`) : missing("terraform", `${found} ${version} is older than ${min}`, install)];
  // A TF_CLI_CONFIG_FILE that does not exist makes every terraform command warn, and cdktf prints it as [ERROR].
  if (env.TF_CLI_CONFIG_FILE && !existsSync(env.TF_CLI_CONFIG_FILE)) {
    checks.push({ name: "terraform config", status: "warn", detail: `TF_CLI_CONFIG_FILE=${env.TF_CLI_CONFIG_FILE} does not exist (every command warns about it)`, fix: "unset TF_CLI_CONFIG_FILE, or create that file" });
  }
  return checks;
}

/** The cloud tokens and AWS keys `cdktf deploy <stack>` needs, and the TF_VAR_secret_* of the app's secrets. */
export function checkCredentials(stack: ResolvedEnvironment, env: NodeJS.ProcessEnv): Check[] {
  const set = (name: string) => Boolean(env[name]);
  const checks: Check[] = [];
  const needsDigitalOcean = stack.provider === "digitalocean" || Boolean(stack.domain?.digitalOceanZone);
  if (stack.provider === "hetzner") {
    checks.push(set("HCLOUD_TOKEN") ? ok("Hetzner token", "HCLOUD_TOKEN is set") : missing("Hetzner token", "HCLOUD_TOKEN is not set", "export HCLOUD_TOKEN=… (Hetzner Cloud console → the client's project → Security → API tokens, read & write)"));
  }
  if (needsDigitalOcean) {
    const why = stack.provider === "digitalocean" ? "" : " (the DNS zone is on DigitalOcean)";
    checks.push(
      set("DIGITALOCEAN_TOKEN") || set("DIGITALOCEAN_ACCESS_TOKEN")
        ? ok("DigitalOcean token", `DIGITALOCEAN_TOKEN is set${why}`)
        : missing("DigitalOcean token", `DIGITALOCEAN_TOKEN is not set${why}`, "export DIGITALOCEAN_TOKEN=… (DigitalOcean control panel → API → Tokens, write scope)"),
    );
  }
  const awsKeys = set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY");
  checks.push(
    awsKeys || set("AWS_PROFILE")
      ? ok("AWS credentials", awsKeys ? "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set" : `AWS_PROFILE=${env.AWS_PROFILE}`)
      : missing("AWS credentials", "neither AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY nor AWS_PROFILE is set", "export AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… (an AWS admin able to create S3 buckets and IAM users)"),
  );
  const unset = stack.app.secrets.filter((name) => !set(`TF_VAR_secret_${name}`));
  if (stack.app.secrets.length > 0) {
    checks.push(
      unset.length === 0
        ? ok("app secrets", stack.app.secrets.map((n) => `TF_VAR_secret_${n}`).join(", ") + " set")
        : missing("app secrets", `${unset.map((n) => `TF_VAR_secret_${n}`).join(", ")} not set (app.secrets of ${stack.stackName})`, unset.map((n) => `export TF_VAR_secret_${n}=…`).join(" ")),
    );
  }
  return checks;
}

/** An SSH key in ssh-agent (or --identity), and whether it is one the client file lets in. */
export function checkSshKey(stack: ResolvedEnvironment | undefined, env: NodeJS.ProcessEnv, identity?: string): Check {
  const allowed = new Map((stack?.sshKeys ?? []).map((k) => [k.publicKey.trim().split(/\s+/)[1], k.name]));
  if (identity) {
    if (!existsSync(identity)) return missing("ssh key", `--identity ${identity}: no such file`, "pass the private key file whose public key is in the client file's sshKeys");
    return ok("ssh key", `--identity ${identity}`);
  }
  const addFix = 'eval "$(ssh-agent)" && ssh-add ~/.ssh/id_ed25519   (the key whose public half is in the client file\'s sshKeys), or pass --identity FILE';
  const sshAdd = onPath("ssh-add", env);
  if (!sshAdd) return missing("ssh key", "ssh-add is not on PATH (OpenSSH client)", "install the OpenSSH client (macOS has it; Debian/Ubuntu: apt-get install openssh-client)");
  if (!env.SSH_AUTH_SOCK) return missing("ssh key", "no ssh-agent (SSH_AUTH_SOCK is not set)", addFix);
  const listed = spawnSync(sshAdd, ["-L"], { env, encoding: "utf8", timeout: 10_000 });
  if (listed.status === 2 || listed.error) return missing("ssh key", `cannot reach ssh-agent at SSH_AUTH_SOCK=${env.SSH_AUTH_SOCK}`, addFix);
  const blobs = listed.status === 0 ? listed.stdout.split("\n").map((l) => l.trim().split(/\s+/)[1]).filter(Boolean) : [];
  if (blobs.length === 0) return missing("ssh key", "ssh-agent holds no key", addFix);
  if (!stack) return ok("ssh key", `ssh-agent holds ${blobs.length} key(s)`);
  const names = blobs.map((b) => allowed.get(b)).filter((n): n is string => n !== undefined);
  if (names.length === 0) {
    return missing("ssh key", `ssh-agent holds ${blobs.length} key(s), none of them in ${stack.stackName}'s sshKeys (${[...allowed.values()].join(", ")})`, "ssh-add the key listed in the client file, or add your public key to sshKeys and deploy with --config-only from a machine that has access");
  }
  return ok("ssh key", `ssh-agent holds ${names.join(", ")}'s key (in ${stack.stackName}'s sshKeys)`);
}

/** The outputs file the scripts read, and that it is not older than the last apply (the local state file). */
export function checkOutputs(stack: ResolvedEnvironment, outputsFile: string, state = join(REPO_ROOT, localStateFile(stack.stackName))): Check {
  const write = `npx cdktf output ${stack.stackName} --outputs-file ${outputsFile} --outputs-file-include-sensitive-outputs`;
  if (!existsSync(outputsFile)) return missing("outputs file", `${outputsFile} does not exist (the scripts read the server's address and keys from it)`, write);
  const backend = AGENCY.stateBackend ?? { type: "local" };
  if (backend.type !== "local") return ok("outputs file", `${outputsFile} present (state is in S3: its age is not compared)`);
  if (!existsSync(state)) return { name: "outputs file", status: "warn", detail: `${outputsFile} present; no local state ${state} (not deployed from this machine)`, fix: "if the stack was applied elsewhere, make sure the outputs file is the current one" };
  const [outputsAt, stateAt] = [statSync(outputsFile).mtimeMs, statSync(state).mtimeMs];
  if (outputsAt < stateAt) return missing("outputs file", `${outputsFile} is older than ${state}: the last apply may have changed the outputs`, write);
  return ok("outputs file", `${outputsFile} newer than ${state}`);
}

/** sqlite3 and litestream on this machine, for restore.ts --local and --list without a server. */
export function checkLocalTools(env: NodeJS.ProcessEnv, litestream?: string): Check[] {
  const checks: Check[] = [];
  const sqlite3 = onPath("sqlite3", env);
  const version = sqlite3 ? spawnSync(sqlite3, ["--version"], { env, encoding: "utf8" }).stdout.trim().split(" ")[0] : "";
  checks.push(
    sqlite3 && version
      ? ok("sqlite3", `${sqlite3} ${version}`)
      : missing("sqlite3", "sqlite3 is not on PATH (restore.ts --local checks the restored file with it)", "macOS: it ships with the system (or brew install sqlite); Debian/Ubuntu: apt-get install sqlite3"),
  );
  const binary = localLitestream(litestream);
  const path = binary.includes("/") ? binary : onPath(binary, env);
  const answer = path ? spawnSync(path, ["version"], { env, encoding: "utf8" }) : undefined;
  checks.push(
    path && answer?.status === 0
      ? ok("litestream", `${path} ${answer.stdout.trim()}`)
      : missing("litestream", path ? `${path} does not run (${String(answer?.error ?? answer?.stderr).trim()})` : "litestream is not on PATH and npm install did not ship it for this platform", "npm install ships it on linux-x64; elsewhere install Litestream 0.3.13 (litestream.io/install) or pass --litestream PATH"),
  );
  return checks;
}

/** The report as printed: one line per check, its fix under it. */
export function formatChecks(checks: readonly Check[]): string {
  const mark = { ok: "✓", missing: "✗", warn: "!" } as const;
  return checks.map((c) => `${mark[c.status]} ${c.name}: ${c.detail}${c.fix && c.status !== "ok" ? `\n    fix: ${c.fix}` : ""}`).join("\n");
}
