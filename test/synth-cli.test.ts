/**
 * The real commands, as an agency developer runs them: `cdktf synth` with no cloud credentials writes every
 * shipped stack; an invalid client file fails synth once, listing every problem, and writes no stack.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { REPO_ROOT, shippedEnvironments } from "../lab/environments.ts";
import { parseHcl } from "./support/hcl.ts";
import { synthesize } from "./support/synth.ts";

/** The environment without any cloud credential, so a passing synth proves it needs none. */
function withoutCredentials(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(AWS_|DIGITALOCEAN_|HCLOUD_|TF_VAR_)/.test(k)),
  );
  return { ...env, CHECKPOINT_DISABLE: "1", ...extra };
}

// Each test is mostly cdktf's own start-up (about 10 s alone, over 60 s on a loaded machine): generous, so
// that only a hang fails, never slowness.
jest.setTimeout(300_000);

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "kit-synth-"));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs the real cdktf CLI (from the repo, as a developer does) and resolves with its exit status and output. */
function cdktf(args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(join(REPO_ROOT, "node_modules", ".bin", "cdktf"), args, { cwd: REPO_ROOT, env: withoutCredentials() });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("close", (status) => resolve({ status, output }));
  });
}

test("`cdktf synth` writes every shipped stack without cloud credentials, and `--hcl` writes valid HCL", async () => {
  const out = join(scratch, "out");
  const hclOut = join(scratch, "hcl");
  // Both at once: each is mostly the CLI's own start-up.
  const [json, hcl] = await Promise.all([cdktf(["synth", "--output", out]), cdktf(["synth", "--hcl", "--output", hclOut])]);
  expect(json).toMatchObject({ status: 0 });
  expect(hcl).toMatchObject({ status: 0 });
  for (const env of shippedEnvironments()) {
    const stack = JSON.parse(readFileSync(join(out, "stacks", env.stackName, "cdk.tf.json"), "utf8"));
    expect(Object.keys(stack.resource)).toEqual(expect.arrayContaining(["aws_s3_bucket", "aws_iam_user_policy"]));
  }
  const tf = readFileSync(join(hclOut, "stacks", "example-prod", "cdk.tf"), "utf8");
  expect(tf).toMatch(/resource "aws_s3_bucket" "[^"]+" \{[\s\S]*?prevent_destroy = true/);
  // Every stack's HCL parses with HashiCorp's parser: the exit path really is plain Terraform.
  for (const env of shippedEnvironments()) {
    await expect(parseHcl(readFileSync(join(hclOut, "stacks", env.stackName, "cdk.tf"), "utf8"))).resolves.toHaveProperty("resource");
  }
});

test("local Terraform state lands at the repository's root, outside cdktf.out (which `cdktf synth` prunes)", () => {
  // cdktf runs Terraform in <output>/stacks/<stack>/; the kit's projects keep the default output, cdktf.out.
  expect(JSON.parse(readFileSync(join(REPO_ROOT, "cdktf.json"), "utf8")).output).toBeUndefined();
  for (const env of shippedEnvironments()) {
    const backend = synthesize(env).json.terraform.backend.local.path as string;
    const where = resolve(REPO_ROOT, "cdktf.out", "stacks", env.stackName, backend);
    expect(where).toBe(join(REPO_ROOT, `terraform.${env.stackName}.tfstate`));
  }
});

test("a client file with three mistakes fails synth once, naming all three by path; no stack is written", () => {
  const clients = join(scratch, "clients");
  const out = join(scratch, "bad-out");
  mkdirSync(clients);
  // A client file as a developer would write it, with three mistakes.
  const acme = `import type { ClientConfig } from ${JSON.stringify(join(REPO_ROOT, "app", "config", "types"))};
const acme: ClientConfig = {
  slug: "acme",
  environments: {
    prod: {
      provider: "digitalocean",
      region: "fra9",
      sshKeys: [{ name: "jane", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1Pi+dxBgCDQeTMNkDZHlzCeyiA/We8fipfGJLSxRve jane" }],
      sshAllowedCidrs: ["0.0.0.0/0"],
      app: { repo: "https://github.com/pixelco/acme.git" },
      volume: { sizeGiB: 0 },
    },
  },
};
export default acme;
`;
  writeFileSync(join(clients, "acme.ts"), acme);

  const result = spawnSync(join(REPO_ROOT, "node_modules", ".bin", "tsx"), [join(REPO_ROOT, "app", "main.ts")], {
    cwd: scratch,
    env: withoutCredentials({ KIT_CLIENTS_DIR: clients, CDKTF_OUTDIR: out }),
    encoding: "utf8",
  });
  expect(result.status).toBe(1);
  const file = join(clients, "acme.ts");
  expect(result.stderr).toContain("3 problems in the client configuration (no stack was written)");
  expect(result.stderr).toContain(`\n  - ${file}: environments.prod.region: "fra9" is not a DigitalOcean region (nyc1, nyc3, sfo2, sfo3, tor1, atl1, …)`);
  expect(result.stderr).toContain(`\n  - ${file}: environments.prod.sshAllowedCidrs[0]: "0.0.0.0/0" opens SSH to the whole internet`);
  expect(result.stderr).toContain(`\n  - ${file}: environments.prod.volume.sizeGiB: 0 must be a whole number from 1 to 16384`);
  expect(existsSync(out)).toBe(false);
});
