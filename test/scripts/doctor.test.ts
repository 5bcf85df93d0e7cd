/**
 * scripts/doctor.ts with things missing: an empty environment and a PATH that holds only node, then each
 * thing given back. The tools it finds are the real ones (terraform, sqlite3, ssh-agent, Litestream);
 * stand-ins only for what cannot be had here (an old terraform, a tofu).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { REPO_ROOT } from "../../app/repo.ts";
import { atLeast, checkCredentials, checkLocalTools, checkNode, checkOutputs, checkSshKey, checkTerraform, onPath } from "../../scripts/lib/doctor.ts";
import { loadEnvironment } from "../../scripts/lib/target.ts";

const TSX = join(REPO_ROOT, "node_modules", "tsx", "dist", "cli.mjs");
const work = mkdtempSync(join(tmpdir(), "kit-doctor-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A directory holding only the named tools (symlinks to the real ones), to use as the whole PATH. */
function pathWith(name: string, tools: Record<string, string>): string {
  const dir = join(work, name);
  execFileSync("mkdir", ["-p", dir]);
  for (const [tool, target] of Object.entries(tools)) symlinkSync(target, join(dir, tool));
  return dir;
}

/** A stand-in executable that prints `output` (for tools whose other versions are not on this machine). */
function standIn(dir: string, tool: string, output: string): void {
  writeFileSync(join(dir, tool), `#!/bin/sh\necho '${output}'\n`); // echo: a shell builtin, PATH may hold nothing else
  chmodSync(join(dir, tool), 0o755);
}

function doctor(args: string[], env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [TSX, join(REPO_ROOT, "scripts", "doctor.ts"), ...args], { cwd: REPO_ROOT, env, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const real = (tool: string) => {
  const found = onPath(tool, process.env);
  if (!found) throw new Error(`${tool} is not on this machine's PATH: run npm run setup (the test needs the real one)`);
  return found;
};

test("an empty environment with only node on PATH: every missing thing is named with its fix, exit 1, no stack trace", () => {
  const path = pathWith("only-node", { node: process.execPath });
  const r = doctor(["example-prod", "--local"], { PATH: path });
  expect(r.status).toBe(1);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stdout;
  expect(lines).toMatch(/^✗ terraform: terraform is not on PATH\n {4}fix: install Terraform ≥ 1\.10\.0 .* or OpenTofu ≥ 1\.10\.0 /m);
  expect(lines).toMatch(/^✗ ssh key: ssh-add is not on PATH \(OpenSSH client\)\n {4}fix: install the OpenSSH client/m);
  expect(lines).toMatch(/^✗ DigitalOcean token: DIGITALOCEAN_TOKEN is not set\n {4}fix: export DIGITALOCEAN_TOKEN=/m);
  expect(lines).toMatch(/^✗ AWS credentials: neither AWS_ACCESS_KEY_ID \+ AWS_SECRET_ACCESS_KEY nor AWS_PROFILE is set\n {4}fix: export AWS_ACCESS_KEY_ID=/m);
  expect(lines).toMatch(/^✗ app secrets: TF_VAR_secret_SESSION_SECRET not set \(app.secrets of example-prod\)\n {4}fix: export TF_VAR_secret_SESSION_SECRET=…/m);
  expect(lines).toMatch(/^✗ sqlite3: sqlite3 is not on PATH .*\n {4}fix: .*apt-get install sqlite3/m);
  // Litestream ships in node_modules on linux-x64, so it is found without PATH.
  expect(lines).toMatch(/^✓ litestream: .*litestream-linux-x64\/litestream v0\.3\.13$/m);
  expect(lines).toMatch(/^✓ node: /m);
  expect(lines).toMatch(/thing\(s\) missing: terraform, ssh key, DigitalOcean token, AWS credentials, app secrets, outputs file, sqlite3$/m);
});

test("with the tools on PATH and the credentials set, only the SSH key and outputs file are left", () => {
  const path = pathWith("tools", { node: process.execPath, terraform: real("terraform"), sqlite3: real("sqlite3"), "ssh-add": real("ssh-add") });
  const env = { PATH: path, DIGITALOCEAN_TOKEN: "x", AWS_ACCESS_KEY_ID: "x", AWS_SECRET_ACCESS_KEY: "x", TF_VAR_secret_SESSION_SECRET: "x" };
  const r = doctor(["example-prod", "--local"], env);
  expect(r.status).toBe(1);
  expect(r.stdout).toMatch(/^✓ terraform: .*terraform \d+\.\d+\.\d+$/m);
  expect(r.stdout).toMatch(/^✓ sqlite3: .*sqlite3 3\.\d+\.\d+$/m);
  expect(r.stdout).toMatch(/^✓ DigitalOcean token: DIGITALOCEAN_TOKEN is set$/m);
  expect(r.stdout).toMatch(/^✓ app secrets: TF_VAR_secret_SESSION_SECRET set$/m);
  expect(r.stdout).toMatch(/^✗ ssh key: no ssh-agent \(SSH_AUTH_SOCK is not set\)\n {4}fix: eval "\$\(ssh-agent\)" && ssh-add/m);
  expect(r.stdout).toMatch(/thing\(s\) missing: ssh key, outputs file$/m);
});

test("a stack name that does not exist is an error naming the known ones", () => {
  const r = doctor(["nope-prod"], { PATH: pathWith("only-node-2", { node: process.execPath }) });
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('error: no client environment named "nope-prod"');
  expect(r.stderr).toMatch(/fix: {3}use one of: .*example-prod/);
  expect(r.stderr).not.toMatch(/^\s+at /m);
});

test("Node older than package.json's engines is refused; the pinned CI versions pass", () => {
  const { engines } = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8"));
  expect(checkNode("20.20.2", engines.node)).toMatchObject({ status: "missing", fix: expect.stringContaining("install Node 22, 24 or 26") });
  for (const v of ["22.23.5", "24.22.3", "26.12.1"]) expect(checkNode(v, engines.node).status).toBe("ok");
  expect([atLeast("1.10.0", "1.10.0"), atLeast("1.9.8", "1.10.0"), atLeast("v2.0", "1.10.0"), atLeast("1.11.0-beta1", "1.10.0")]).toEqual([true, false, true, true]);
});

test("terraform: too old is named, tofu alone points at TERRAFORM_BINARY_NAME, tofu chosen is checked", () => {
  const old = pathWith("old-terraform", {});
  standIn(old, "terraform", '{"terraform_version": "1.5.7"}');
  expect(checkTerraform({ PATH: old })).toEqual([expect.objectContaining({ status: "missing", detail: `${old}/terraform 1.5.7 is older than 1.10.0` })]);

  const tofuOnly = pathWith("tofu-only", {});
  standIn(tofuOnly, "tofu", '{"terraform_version": "1.10.6"}');
  expect(checkTerraform({ PATH: tofuOnly })).toEqual([expect.objectContaining({ status: "missing", fix: `${tofuOnly}/tofu is on PATH: export TERRAFORM_BINARY_NAME=tofu so cdktf runs it` })]);
  expect(checkTerraform({ PATH: tofuOnly, TERRAFORM_BINARY_NAME: "tofu" })).toEqual([expect.objectContaining({ status: "ok", detail: `${tofuOnly}/tofu 1.10.6` })]);

  const warned = checkTerraform({ PATH: dirname(real("terraform")), TF_CLI_CONFIG_FILE: join(work, "no-such.terraformrc") });
  expect(warned.map((c) => c.status)).toEqual(["ok", "warn"]);
});

test("Hetzner stacks need HCLOUD_TOKEN; AWS_PROFILE stands for the keys", () => {
  const hz = loadEnvironment("examplehz-prod");
  const checks = checkCredentials(hz, { AWS_PROFILE: "agency" });
  expect(checks.find((c) => c.name === "Hetzner token")).toMatchObject({ status: "missing", detail: "HCLOUD_TOKEN is not set" });
  expect(checks.find((c) => c.name === "AWS credentials")).toMatchObject({ status: "ok", detail: "AWS_PROFILE=agency" });
  expect(checks.some((c) => c.name === "DigitalOcean token")).toBe(hz.domain?.digitalOceanZone !== undefined);
});

describe("ssh-agent (the real one)", () => {
  let agentEnv: NodeJS.ProcessEnv;
  let publicKey: string;
  beforeAll(() => {
    const key = join(work, "id_ed25519");
    execFileSync(real("ssh-keygen"), ["-q", "-t", "ed25519", "-N", "", "-C", "doctor-test", "-f", key]);
    publicKey = readFileSync(`${key}.pub`, "utf8").trim();
    const sock = join(work, "agent.sock");
    const out = execFileSync(real("ssh-agent"), ["-a", sock], { encoding: "utf8" });
    agentEnv = { PATH: dirname(real("ssh-add")), SSH_AUTH_SOCK: sock, SSH_AGENT_PID: /SSH_AGENT_PID=(\d+)/.exec(out)![1] };
  });
  afterAll(() => {
    if (agentEnv?.SSH_AGENT_PID) process.kill(Number(agentEnv.SSH_AGENT_PID));
  });

  test("an empty agent, a key the client file does not list, then one it does", () => {
    const stack = loadEnvironment("example-prod");
    expect(checkSshKey(stack, agentEnv)).toMatchObject({ status: "missing", detail: "ssh-agent holds no key" });
    execFileSync(real("ssh-add"), ["-q", join(work, "id_ed25519")], { env: agentEnv });
    expect(checkSshKey(stack, agentEnv)).toMatchObject({ status: "missing", detail: "ssh-agent holds 1 key(s), none of them in example-prod's sshKeys (jane)" });
    const withMine = { ...stack, sshKeys: [...stack.sshKeys, { name: "tester", publicKey }] };
    expect(checkSshKey(withMine, agentEnv)).toMatchObject({ status: "ok", detail: "ssh-agent holds tester's key (in example-prod's sshKeys)" });
    expect(checkSshKey(stack, { ...agentEnv, SSH_AUTH_SOCK: join(work, "no-agent.sock") })).toMatchObject({ status: "missing", detail: expect.stringContaining("cannot reach ssh-agent") });
  });
});

test("outputs file: missing, older than the state, newer than the state", () => {
  const stack = loadEnvironment("example-prod");
  const outputs = join(work, "example-prod.json");
  const state = join(work, "terraform.example-prod.tfstate");
  expect(checkOutputs(stack, outputs, state)).toMatchObject({ status: "missing", fix: `npx cdktf output example-prod --outputs-file ${outputs} --outputs-file-include-sensitive-outputs` });
  writeFileSync(outputs, "{}");
  expect(checkOutputs(stack, outputs, state).status).toBe("warn"); // not deployed from here
  writeFileSync(state, "{}");
  utimesSync(outputs, new Date(2026, 0, 1), new Date(2026, 0, 1));
  expect(checkOutputs(stack, outputs, state)).toMatchObject({ status: "missing", detail: expect.stringContaining("is older than") });
  utimesSync(outputs, new Date(), new Date(Date.now() + 1000));
  expect(checkOutputs(stack, outputs, state).status).toBe("ok");
});

test("--local tools: a litestream that does not run is named", () => {
  const broken = join(work, "litestream-broken");
  writeFileSync(broken, "not a program");
  chmodSync(broken, 0o755);
  const [, litestream] = checkLocalTools({ PATH: dirname(real("sqlite3")) }, broken);
  expect(litestream).toMatchObject({ status: "missing", detail: expect.stringContaining(`${broken} does not run`) });
});
