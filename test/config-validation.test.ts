/**
 * Validation at synth: every problem in one run, each naming the file, the field's path, the bad value
 * and the fix. Tests come in pairs: this input throws with this message; the nearest valid one does not.
 */
import { AGENCY } from "../app/agency";
import { loadEnvironments } from "../app/config/load";
import { FILE, problemsOf } from "./support/problems";
import type { ClientConfig, EnvironmentConfig } from "../app/config/types";
import example from "../app/clients/example";

const validEnv: EnvironmentConfig = example.environments.prod;
const client = (env: Partial<EnvironmentConfig> & Record<string, unknown>, slug = "acme"): ClientConfig => ({
  slug,
  environments: { prod: { ...validEnv, ...env } as EnvironmentConfig },
});


describe("client validation", () => {
  test("the shipped example is valid", () => {
    expect(problemsOf(example)).toEqual([]);
  });

  test("defaults are filled in and documented values used", () => {
    const [env] = loadEnvironments(AGENCY, [{ config: client({}), file: FILE }]);
    expect(env.stackName).toBe("acme-prod");
    expect(env.size).toBe("s-1vcpu-1gb");
    expect(env.image).toBe("debian-12-x64");
    expect(env.app.port).toBe(8000);
    expect(env.app.healthPath).toBe("/healthz");
    expect(env.backups.litestream).toEqual({ syncInterval: "1s", snapshotInterval: "1h", retention: "72h" });
    expect(env.names).toEqual({
      volume: "pixelco-acme-prod-data",
      bucket: "pixelco-acme-prod-backups",
      bucketPrefix: "prod",
      iamUser: "pixelco-acme-prod-backup",
      server: "pixelco-acme-prod",
    });
  });

  test("a client file with three mistakes fails once, naming all three by path, value and fix", () => {
    const problems = problemsOf(
      client({ region: "fra9", sshAllowedCidrs: ["0.0.0.0/0"], volume: { sizeGiB: 0 } }),
    );
    expect(problems).toEqual([
      `${FILE}: environments.prod.region: "fra9" is not a DigitalOcean region (nyc1, nyc3, sfo2, sfo3, tor1, atl1, …)`,
      `${FILE}: environments.prod.sshAllowedCidrs[0]: "0.0.0.0/0" opens SSH to the whole internet; list your office or VPN addresses instead (e.g. "203.0.113.4/32")`,
      `${FILE}: environments.prod.volume.sizeGiB: 0 must be a whole number from 1 to 16384`,
    ]);
  });

  test.each<[string, Record<string, unknown>, Record<string, unknown>, string]>([
    ["region", { region: "fra9" }, { region: "fra1" }, 'environments.prod.region: "fra9" is not a DigitalOcean region'],
    ["size", { size: "s-1vcpu-3gb" }, { size: "s-1vcpu-2gb" }, 'environments.prod.size: "s-1vcpu-3gb" is not a DigitalOcean size'],
    ["image", { image: "ubuntu-24-04-x64" }, { image: "debian-12-x64" }, 'environments.prod.image: "ubuntu-24-04-x64" is not an image the bootstrap is proven on'],
    ["provider", { provider: "aws" }, { provider: "digitalocean" }, 'environments.prod.provider: "aws" is not a supported provider'],
    ["ssh keys", { sshKeys: [] }, { sshKeys: validEnv.sshKeys }, "environments.prod.sshKeys: must list at least one SSH key"],
    ["public key", { sshKeys: [{ name: "jane", publicKey: "AAAA" }] }, { sshKeys: validEnv.sshKeys }, 'environments.prod.sshKeys[0].publicKey: "AAAA" is not an OpenSSH public key line'],
    ["cidr", { sshAllowedCidrs: ["10.0.0.300/8"] }, { sshAllowedCidrs: ["10.0.0.0/8"] }, 'environments.prod.sshAllowedCidrs[0]: "10.0.0.300/8" is not a CIDR'],
    ["ipv6 world", { sshAllowedCidrs: ["::/0"] }, { sshAllowedCidrs: ["2001:db8::/32"] }, 'environments.prod.sshAllowedCidrs[0]: "::/0" opens SSH to the whole internet'],
    ["unknown field", { regoin: "fra1" }, {}, 'environments.prod.regoin: unknown field "regoin" — a typo?'],
    ["domain zone", { domain: { name: "app.acme.com", digitalOceanZone: "other.com" } }, { domain: { name: "app.acme.com", digitalOceanZone: "acme.com" } }, 'environments.prod.domain.digitalOceanZone: "other.com" does not contain the domain "app.acme.com"'],
    ["volume size", { volume: { sizeGiB: 2.5 } }, { volume: { sizeGiB: 3 } }, "environments.prod.volume.sizeGiB: 2.5 must be a whole number"],
    ["backup region", { backups: { region: "eu-middle-1" } }, { backups: { region: "eu-west-1" } }, 'environments.prod.backups.region: "eu-middle-1" is not an AWS region'],
    ["retention < snapshot", { backups: { litestream: { snapshotInterval: "24h", retention: "12h" } } }, { backups: { litestream: { snapshotInterval: "24h", retention: "24h" } } }, 'environments.prod.backups.litestream.retention: "12h" is shorter than snapshotInterval "24h"'],
    ["duration", { backups: { litestream: { syncInterval: "1 second" } } }, { backups: { litestream: { syncInterval: "10s" } } }, 'environments.prod.backups.litestream.syncInterval: "1 second" must be a duration'],
    ["fallback keepDays", { backups: { fallback: { keepDays: 0 } } }, { backups: { fallback: { keepDays: 1 } } }, "environments.prod.backups.fallback.keepDays: 0 must be a whole number from 1 to 365"],
    ["drill ping", { drill: { pingUrl: "http://hc-ping.com/x" } }, { drill: { pingUrl: "https://hc-ping.com/x" } }, 'environments.prod.drill.pingUrl: "http://hc-ping.com/x" must be an https:// URL'],
  ])("%s: rejected with its path and fix; the nearest valid value passes", (_name, bad, good, message) => {
    const problems = problemsOf(client(bad));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`${FILE}: ${message}`);
    expect(problemsOf(client(good))).toEqual([]);
  });

  const app = validEnv.app;
  test.each<[string, Record<string, unknown>, string]>([
    ["repo", { repo: "ftp://example.com/app" }, 'environments.prod.app.repo: "ftp://example.com/app" must be a git URL over https or ssh'],
    ["ref", { ref: "--upload-pack=x" }, 'environments.prod.app.ref: "--upload-pack=x" must be a branch, tag or commit'],
    ["port reserved", { port: 9089 }, "environments.prod.app.port: \"9089\" is reserved"],
    ["port range", { port: 80 }, "environments.prod.app.port: 80 must be a whole number from 1024 to 65000"],
    ["health path", { healthPath: "healthz" }, 'environments.prod.app.healthPath: "healthz" must be a URL path starting with /'],
    ["env name", { env: { "log-level": "x" } }, 'environments.prod.app.env.log-level: "log-level" is not an environment variable name'],
    ["env reserved", { env: { DATABASE_URL: "x" } }, 'environments.prod.app.env.DATABASE_URL: "DATABASE_URL" is reserved: the kit sets it'],
    ["secret also in env", { env: { TOKEN: "x" }, secrets: ["TOKEN"] }, 'environments.prod.app.secrets[0]: "TOKEN" is reserved: it is also in app.env'],
  ])("app.%s: rejected with its path and fix", (_name, bad, message) => {
    const problems = problemsOf(client({ app: { ...app, ...bad } as EnvironmentConfig["app"] }));
    expect(problems).toEqual([expect.stringContaining(`${FILE}: ${message}`)]);
    expect(problemsOf(client({ app }))).toEqual([]);
  });

  test("slug: rejected when invalid, too long for a bucket name, or duplicated across files", () => {
    expect(problemsOf(client({}, "Acme"))).toEqual([expect.stringContaining(`${FILE}: slug: "Acme" must be 2–20 lowercase letters`)]);
    expect(problemsOf(client({}, "acme-holdings-group1"))).toEqual([]);
    const longEnv: ClientConfig = { slug: "acme-holdings-group1", environments: { production1: validEnv } };
    expect(problemsOf(longEnv)).toEqual([expect.stringContaining('environments.production1: "production1" as an environment name must be 1–10')]);
    expect(() => loadEnvironments(AGENCY, [{ config: client({}), file: "a.ts" }, { config: client({}), file: "b.ts" }])).toThrow(
      'b.ts: slug: "acme" is already used by a.ts; slugs must be unique',
    );
  });

  test("agency settings are validated too", () => {
    expect(() => loadEnvironments({ namePrefix: "Pixel Co" }, [])).toThrow('app/agency.ts: namePrefix: "Pixel Co" must be 2–12 lowercase letters');
    expect(loadEnvironments({ namePrefix: "pixelco" }, [])).toEqual([]);
  });
});
