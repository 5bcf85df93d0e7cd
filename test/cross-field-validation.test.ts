/**
 * Rules across fields, across environments and clients, and about the clients directory itself. Pairs: this
 * input fails with this message; the nearest good input passes.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AGENCY } from "../app/agency.ts";
import example from "../app/clients/example.ts";
import { ConfigError } from "../app/config/errors.ts";
import { loadClientsDir, loadEnvironments } from "../app/config/load.ts";
import type { ClientConfig, EnvironmentConfig } from "../app/config/types.ts";
import { REPO_ROOT } from "../lab/environments.ts";
import { FILE, problemsOf } from "./support/problems.ts";

const validEnv: EnvironmentConfig = example.environments.prod;
const client = (env: Partial<EnvironmentConfig> & Record<string, unknown>, slug = "acme"): ClientConfig => ({
  slug,
  environments: { prod: { ...validEnv, ...env } as EnvironmentConfig },
});
const withApp = (over: Record<string, unknown>) => client({ app: { ...validEnv.app, ...over } as EnvironmentConfig["app"] });

describe("sshAllowedCidrs: ranges written as networks, each once", () => {
  test.each<[string, string[], string, string[]]>([
    ["IPv4 host bits", ["203.0.113.4/24"], '[0]: "203.0.113.4/24" has host bits set, so it is not clear what it allows: the network is "203.0.113.0/24". Fix: write "203.0.113.0/24" for the whole range, or "203.0.113.4/32" for that one address', ["203.0.113.0/24"]],
    ["IPv4, one bit past the prefix", ["10.128.0.0/8"], '[0]: "10.128.0.0/8" has host bits set, so it is not clear what it allows: the network is "10.0.0.0/8".', ["10.0.0.0/8"]],
    ["IPv6 host bits", ["2001:db8:1234:5678::1/48"], '[0]: "2001:db8:1234:5678::1/48" has host bits set, so it is not clear what it allows: the network is "2001:db8:1234::/48". Fix: write "2001:db8:1234::/48" for the whole range, or "2001:db8:1234:5678::1/128" for that one address', ["2001:db8:1234::/48"]],
    ["IPv6 with a dotted tail", ["::ffff:203.0.113.4/120"], '[0]: "::ffff:203.0.113.4/120" has host bits set, so it is not clear what it allows: the network is "::ffff:cb00:7100/120".', ["::ffff:203.0.113.0/120"]],
    ["a /16 with host bits (db8 is past the prefix)", ["2001:db8::/16"], '[0]: "2001:db8::/16" has host bits set, so it is not clear what it allows: the network is "2001::/16".', ["2001::/16"]],
    ["the same range twice", ["203.0.113.10/32", "198.51.100.0/24", "203.0.113.10/32"], '[2]: "203.0.113.10/32" is already listed at environments.prod.sshAllowedCidrs[0]; list each range once', ["203.0.113.10/32", "198.51.100.0/24"]],
  ])("%s: refused with the network to write; the network itself passes", (_name, bad, message, good) => {
    expect(problemsOf(client({ sshAllowedCidrs: bad }))).toEqual([expect.stringContaining(`${FILE}: environments.prod.sshAllowedCidrs${message}`)]);
    expect(problemsOf(client({ sshAllowedCidrs: good }))).toEqual([]);
  });

  test("single addresses and the example's ranges stay valid", () => {
    expect(problemsOf(client({ sshAllowedCidrs: ["203.0.113.4/32", "2001:db8::1/128", "2001:db8:1234::/48", "10.0.0.0/8", "2001::/16"] }))).toEqual([]);
  });
});

describe("app.repo and app.privateRepo: a URL the server can clone with the key it has", () => {
  test("a private repository over https: the deploy key is an SSH key; the ssh form of the same URL passes", () => {
    expect(problemsOf(withApp({ repo: "https://github.com/pixelco/app.git", privateRepo: true }))).toEqual([
      `${FILE}: environments.prod.app.privateRepo: true, but app.repo "https://github.com/pixelco/app.git" is an https URL, and the deploy key (TF_VAR_git_deploy_key) is an SSH key, which git uses over ssh only. Fix: repo "git@github.com:pixelco/app.git", or privateRepo: false for a public repository`,
    ]);
    expect(problemsOf(withApp({ repo: "git@github.com:pixelco/app.git", privateRepo: true }))).toEqual([]);
  });

  test.each(["git@github.com:pixelco/app.git", "ssh://git@github.com/pixelco/app.git"])("an ssh URL (%s) without privateRepo: no key to clone with; with privateRepo it passes", (repo) => {
    expect(problemsOf(withApp({ repo }))).toEqual([
      `${FILE}: environments.prod.app.privateRepo: false, but app.repo ${JSON.stringify(repo)} is an ssh URL, and the server has no key to clone over ssh with. Fix: privateRepo: true (the server clones with TF_VAR_git_deploy_key), or the repository's https URL if it is public`,
    ]);
    expect(problemsOf(withApp({ repo, privateRepo: true }))).toEqual([]);
  });

  test("a public repository over https needs nothing (the example)", () => {
    expect(problemsOf(withApp({ repo: "https://github.com/pixelco/app.git" }))).toEqual([]);
  });
});

describe("domains: one server per name, across environments and clients", () => {
  const domain = (name: string) => ({ domain: { name } });

  test("two environments of one client with the same domain: the second is named; distinct names pass", () => {
    const twice: ClientConfig = { slug: "acme", environments: { prod: { ...validEnv, ...domain("app.acme.example") }, staging: { ...validEnv, ...domain("app.acme.example") } } };
    expect(problemsOf(twice)).toEqual([
      `${FILE}: environments.staging.domain.name: "app.acme.example" is already the domain of acme-prod (${FILE}): two servers cannot both answer for it (and Caddy's certificate). Fix: give this environment its own name, e.g. "staging.app.acme.example"`,
    ]);
    expect(problemsOf({ ...twice, environments: { ...twice.environments, staging: { ...validEnv, ...domain("staging.app.acme.example") } } })).toEqual([]);
  });

  test("two clients claiming one domain: named in the second client's file", () => {
    const a = { config: client(domain("shop.example.com"), "acme"), file: "app/clients/acme.ts" };
    const b = { config: client(domain("shop.example.com"), "bolt"), file: "app/clients/bolt.ts" };
    expect(() => loadEnvironments(AGENCY, [a, b])).toThrow('app/clients/bolt.ts: environments.prod.domain.name: "shop.example.com" is already the domain of acme-prod (app/clients/acme.ts)');
    expect(loadEnvironments(AGENCY, [a, { ...b, config: client(domain("shop.bolt.example"), "bolt") }])).toHaveLength(2);
  });
});

describe("the clients directory", () => {
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), "kit-clients-dir-"));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  const GOOD = `import type { ClientConfig } from ${JSON.stringify(join(REPO_ROOT, "app", "config", "types"))};
import example from ${JSON.stringify(join(REPO_ROOT, "app", "clients", "example"))};
const acme: ClientConfig = { slug: "acme", environments: { prod: example.environments.prod } };
export default acme;
`;
  /** A fresh directory holding these files. */
  const dirWith = (files: Record<string, string>) => {
    const dir = mkdtempSync(join(scratch, "clients-"));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  };
  const problemsIn = (dir: string): string[] => {
    try {
      loadClientsDir(AGENCY, dir, REPO_ROOT);
      return [];
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      return error.problems.map(String);
    }
  };

  test("missing: named, with the fix (was a raw ENOENT stack trace)", () => {
    const dir = join(scratch, "nowhere");
    expect(problemsIn(dir)).toEqual([`${dir}: (directory): does not exist. Fix: point KIT_CLIENTS_DIR (or a script's --clients-dir) at the directory of client files, or leave it unset for app/clients`]);
  });

  test("a file instead of a directory: named", () => {
    const dir = dirWith({ "acme.ts": GOOD });
    expect(problemsIn(join(dir, "acme.ts"))).toEqual([expect.stringContaining(`${join(dir, "acme.ts")}: (directory): is not a directory. Fix:`)]);
  });

  test("empty, or only helpers: nothing to synthesize is an error (was: nothing written, exit 0); one client file passes", () => {
    expect(problemsIn(dirWith({}))).toEqual([expect.stringMatching(/: \(directory\): holds no client file \(<slug>\.ts\), so there is nothing to synthesize\. Fix: copy app\/clients\/example\.ts to .*\/<slug>\.ts and edit it$/)]);
    expect(problemsIn(dirWith({ "_shared.ts": "export const x = 1;\n", "types.d.ts": "" }))).toEqual([expect.stringContaining("holds no client file")]);
    expect(problemsIn(dirWith({ "acme.ts": GOOD, "_shared.ts": "export const x = 1;\n" }))).toEqual([]);
  });

  test.each(["acme.js", "acme.json", "acme.yaml", "acme.tsx"])("a client written as %s is named, not skipped; as acme.ts it is read", (name) => {
    const dir = dirWith({ [name]: "{}" });
    expect(problemsIn(dir)).toEqual([
      `${join(dir, name)}: (directory): ${JSON.stringify(name)} is not read: client files are TypeScript modules, <slug>.ts, exporting a ClientConfig as default. Fix: rewrite it as "acme.ts" (see app/clients/example.ts), or prefix its name with _ if it is not a client`,
    ]);
    expect(problemsIn(dirWith({ "acme.ts": GOOD, [`_${name}`]: "{}" }))).toEqual([]);
  });

  test("a file that does not load (a syntax error) is named with the reason, not a stack trace", () => {
    const dir = dirWith({ "acme.ts": GOOD.replace("export default acme;", "export default acme;;\nconst = ;") });
    expect(problemsIn(dir)).toEqual([expect.stringMatching(new RegExp(`^${join(dir, "acme.ts")}: \\(file\\): cannot be loaded: .+\\. Fix: correct the file`))]);
    expect(problemsIn(dirWith({ "acme.ts": GOOD }))).toEqual([]);
  });

  test("a file without a default export is named", () => {
    expect(problemsIn(dirWith({ "acme.ts": "export const acme = {};\n" }))).toEqual([expect.stringContaining("acme.ts: (file): is required: a client object. Fix: export default a ClientConfig object")]);
  });

  test("`cdktf synth`'s app on an empty directory: exit 1 with the message, no stack written", () => {
    const dir = dirWith({});
    const out = join(scratch, "out");
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS_|DIGITALOCEAN_|HCLOUD_|TF_VAR_)/.test(k)));
    const result = spawnSync(join(REPO_ROOT, "node_modules", ".bin", "tsx"), [join(REPO_ROOT, "app", "main.ts")], {
      cwd: scratch,
      env: { ...env, CHECKPOINT_DISABLE: "1", KIT_CLIENTS_DIR: dir, CDKTF_OUTDIR: out },
      encoding: "utf8",
    });
    expect({ status: result.status, stderr: result.stderr.trim() }).toEqual({
      status: 1,
      stderr: `1 problem in the client configuration (no stack was written):\n  - ${dir}: (directory): holds no client file (<slug>.ts), so there is nothing to synthesize. Fix: copy app/clients/example.ts to ${dir}/<slug>.ts and edit it`,
    });
    expect(existsSync(out)).toBe(false);
  });
});
