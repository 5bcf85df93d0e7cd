/**
 * Validation of Hetzner client environments. Pairs: this input throws with this message; the nearest
 * valid input does not. The usual mistake — a DigitalOcean client file copied and switched to
 * `provider: "hetzner"` — fails synth naming each field that still holds a DigitalOcean value.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AGENCY } from "../app/agency.ts";
import example from "../app/clients/example.ts";
import exampleHetzner from "../app/clients/example-hetzner.ts";
import { loadEnvironments } from "../app/config/load.ts";
import { FILE, problemsOf } from "./support/problems.ts";
import type { ClientConfig, EnvironmentConfig } from "../app/config/types.ts";
import { REPO_ROOT } from "../lab/environments.ts";

const hetznerEnv: EnvironmentConfig = exampleHetzner.environments.prod;
const client = (env: EnvironmentConfig): ClientConfig => ({ slug: "acme", environments: { prod: env } });
const hetzner = (overrides: Partial<EnvironmentConfig> & Record<string, unknown>) => client({ ...hetznerEnv, ...overrides } as EnvironmentConfig);


describe("Hetzner environments", () => {
  test("the shipped Hetzner example is valid", () => {
    expect(problemsOf(exampleHetzner)).toEqual([]);
  });

  test("defaults: server type cx23 (CX22 is retired), image debian-13", () => {
    const [env] = loadEnvironments(AGENCY, [{ config: hetzner({ size: undefined, image: undefined }), file: FILE }]);
    expect(env).toMatchObject({ provider: "hetzner", region: "fsn1", size: "cx23", image: "debian-13" });
  });

  test("DigitalOcean region, size and image on a Hetzner environment: one problem per field, naming both providers", () => {
    expect(problemsOf(hetzner({ region: "fra1", size: "s-1vcpu-1gb", image: "debian-12-x64" }))).toEqual([
      `${FILE}: environments.prod.region: "fra1" is a DigitalOcean region, but this environment's provider is Hetzner Cloud; use one of fsn1, nbg1, hel1, ash, hil, sin`,
      `${FILE}: environments.prod.size: "s-1vcpu-1gb" is a DigitalOcean size, but this environment's provider is Hetzner Cloud; use one of cx23, cx33, cx43, cpx22, cpx32`,
      `${FILE}: environments.prod.image: "debian-12-x64" is a DigitalOcean image, but this environment's provider is Hetzner Cloud; use one of debian-13, debian-12`,
    ]);
    expect(problemsOf(hetzner({ region: "fsn1", size: "cx23", image: "debian-12" }))).toEqual([]);
  });

  test("Hetzner values on a DigitalOcean environment name Hetzner Cloud the same way", () => {
    const problems = problemsOf(client({ ...example.environments.prod, region: "fsn1", size: "cx23", image: "debian-12" }));
    expect(problems).toEqual([
      expect.stringContaining(`environments.prod.region: "fsn1" is a Hetzner Cloud region, but this environment's provider is DigitalOcean`),
      expect.stringContaining(`environments.prod.size: "cx23" is a Hetzner Cloud size, but this environment's provider is DigitalOcean`),
      expect.stringContaining(`environments.prod.image: "debian-12" is a Hetzner Cloud image, but this environment's provider is DigitalOcean`),
    ]);
    expect(problemsOf(client({ ...example.environments.prod, region: "fra1", size: "s-1vcpu-1gb", image: "debian-12-x64" }))).toEqual([]);
  });

  test.each<[string, Record<string, unknown>, Record<string, unknown>, string]>([
    ["retired type", { size: "cx22" }, { size: "cx23" }, 'environments.prod.size: "cx22" is not a Hetzner Cloud size (cx23, cx33, cx43, cpx22, cpx32)'],
    ["Arm type (the bootstrap installs x86 builds)", { size: "cax11" }, { size: "cx33" }, 'environments.prod.size: "cax11" is not a Hetzner Cloud size'],
    ["CX outside the EU", { region: "ash" }, { region: "ash", size: "cpx22" }, 'environments.prod.size: "cx23" is not a Hetzner Cloud size offered in ash (cpx22, cpx32)'],
    ["CX outside the EU, explicit", { region: "sin", size: "cx43" }, { region: "hel1", size: "cx43" }, 'environments.prod.size: "cx43" is not a Hetzner Cloud size offered in sin (cpx22, cpx32)'],
    ["unknown location", { region: "fsn2" }, { region: "nbg1" }, 'environments.prod.region: "fsn2" is not a Hetzner Cloud region (fsn1, nbg1, hel1, ash, hil, sin)'],
    ["image", { image: "ubuntu-24.04" }, { image: "debian-12" }, 'environments.prod.image: "ubuntu-24.04" is not an image the bootstrap is proven on (Hetzner Cloud)'],
    ["volume below Hetzner's 10 GB", { volume: { sizeGiB: 5 } }, { volume: { sizeGiB: 10 } }, "environments.prod.volume.sizeGiB: 5 must be a whole number from 10 to 10240"],
    ["volume above Hetzner's 10 TB", { volume: { sizeGiB: 10241 } }, { volume: { sizeGiB: 10240 } }, "environments.prod.volume.sizeGiB: 10241 must be a whole number from 10 to 10240"],
  ])("%s: rejected with its path and fix; the nearest valid value passes", (_name, bad, good, message) => {
    expect(problemsOf(hetzner(bad))).toEqual([expect.stringContaining(`${FILE}: ${message}`)]);
    expect(problemsOf(hetzner(good))).toEqual([]);
  });
});

describe("`cdktf synth` with a Hetzner client holding DigitalOcean values", () => {
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), "kit-hetzner-synth-"));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  test("fails once, naming region, size and image; no stack is written", () => {
    const clients = join(scratch, "clients");
    const out = join(scratch, "out");
    mkdirSync(clients);
    const file = join(clients, "acme.ts");
    writeFileSync(
      file,
      `import type { ClientConfig } from ${JSON.stringify(join(REPO_ROOT, "app", "config", "types"))};
const acme: ClientConfig = {
  slug: "acme",
  environments: {
    prod: {
      provider: "hetzner",
      region: "fra1",
      size: "s-1vcpu-1gb",
      image: "debian-12-x64",
      sshKeys: [{ name: "jane", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1Pi+dxBgCDQeTMNkDZHlzCeyiA/We8fipfGJLSxRve jane" }],
      sshAllowedCidrs: ["203.0.113.10/32"],
      app: { repo: "https://github.com/pixelco/acme.git" },
    },
  },
};
export default acme;
`,
    );
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS_|DIGITALOCEAN_|HCLOUD_|TF_VAR_)/.test(k)));
    const result = spawnSync(join(REPO_ROOT, "node_modules", ".bin", "tsx"), [join(REPO_ROOT, "app", "main.ts")], {
      cwd: scratch,
      env: { ...env, CHECKPOINT_DISABLE: "1", KIT_CLIENTS_DIR: clients, CDKTF_OUTDIR: out },
      encoding: "utf8",
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("3 problems in the client configuration (no stack was written)");
    expect(result.stderr).toContain(`  - ${file}: environments.prod.region: "fra1" is a DigitalOcean region, but this environment's provider is Hetzner Cloud`);
    expect(result.stderr).toContain(`  - ${file}: environments.prod.size: "s-1vcpu-1gb" is a DigitalOcean size, but this environment's provider is Hetzner Cloud`);
    expect(result.stderr).toContain(`  - ${file}: environments.prod.image: "debian-12-x64" is a DigitalOcean image, but this environment's provider is Hetzner Cloud`);
    expect(existsSync(out)).toBe(false);
  });
});
