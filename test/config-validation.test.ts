/**
 * Validation at synth: every problem in one run, each naming the file, the field's path, the bad value
 * and the fix. Tests come in pairs: this input throws with this message; the nearest valid one does not.
 */
import { AGENCY } from "../app/agency.ts";
import { loadEnvironments } from "../app/config/load.ts";
import { FILE, problemsOf } from "./support/problems.ts";
import type { ClientConfig, EnvironmentConfig } from "../app/config/types.ts";
import example from "../app/clients/example.ts";
import { spawnSync } from "node:child_process";
import { serverFiles } from "../cloud-init/server-files.ts";
import { concreteServerValues, shippedEnvironments } from "../lab/environments.ts";

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
    expect(env.image).toBe("debian-13-x64");
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
    ["key slots: unknown", { backups: { accessKeys: ["c"] } }, { backups: { accessKeys: ["b"] } }, 'environments.prod.backups.accessKeys: ["c"] must list one or two access-key slots, "a" and/or "b", oldest first'],
    ["key slots: twice", { backups: { accessKeys: ["a", "a"] } }, { backups: { accessKeys: ["b", "a"] } }, 'environments.prod.backups.accessKeys: ["a","a"] must list one or two access-key slots'],
    ["key slots: none", { backups: { accessKeys: [] } }, { backups: { accessKeys: ["a", "b"] } }, "environments.prod.backups.accessKeys: [] must list one or two access-key slots"],
    ["drill ping", { drill: { pingUrl: "http://hc-ping.com/x" } }, { drill: { pingUrl: "https://hc-ping.com/x" } }, 'environments.prod.drill.pingUrl: "http://hc-ping.com/x" must be an https:// URL'],
    ["section not an object", { backups: "daily" }, { backups: {} }, 'environments.prod.backups: "daily" must be an object with the fields region, noncurrentVersionDays, litestream, fallback, accessKeys; see app/clients/example.ts'],
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
    ["port + 1 is the deploy switch's", { port: 7998 }, "environments.prod.app.port: \"7998\" is reserved: the server uses 2019, 7999, 9090"],
    ["port range", { port: 80 }, "environments.prod.app.port: 80 must be a whole number from 1024 to 65000"],
    ["health path", { healthPath: "healthz" }, 'environments.prod.app.healthPath: "healthz" must be a URL path starting with /'],
    ["env name", { env: { "log-level": "x" } }, 'environments.prod.app.env.log-level: "log-level" is not an environment variable name'],
    ["env reserved", { env: { DATABASE_URL: "x" } }, 'environments.prod.app.env.DATABASE_URL: "DATABASE_URL" is reserved: the kit sets it'],
    ["secret also in env", { env: { TOKEN: "x" }, secrets: ["TOKEN"] }, 'environments.prod.app.secrets[0]: "TOKEN" is reserved: it is also in app.env'],
    ["privateRepo", { privateRepo: "yes" }, 'environments.prod.app.privateRepo: "yes" must be true or false'],
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

describe("values that would only fail later, on the server or in a raw stack trace", () => {
  const app = validEnv.app;
  const withApp = (over: Record<string, unknown>) => client({ app: { ...app, ...over } as EnvironmentConfig["app"] });
  /** Validation passes, and the files that quote these values for bash and systemd render (no stack trace). */
  const rendersCleanly = (config: ClientConfig) => {
    expect(problemsOf(config)).toEqual([]);
    const [env] = loadEnvironments(AGENCY, [{ config, file: FILE }]);
    expect(() => serverFiles(env, concreteServerValues(env))).not.toThrow();
  };

  // Every config string that reaches envQuote (kit.env, app.env): app.env values, app.repo, drill.pingUrl.
  test.each<[string, ClientConfig, string, ClientConfig]>([
    ["app.env value", withApp({ env: { GREETING: "it's" } }), `environments.prod.app.env.GREETING: "it's" contains a single quote (')`, withApp({ env: { GREETING: "it’s" } })],
    ["app.repo", withApp({ repo: "https://github.com/pixelco/o'app.git" }), `environments.prod.app.repo: "https://github.com/pixelco/o'app.git" contains a single quote (')`, withApp({ repo: "https://github.com/pixelco/o%27app.git" })],
    ["drill.pingUrl", client({ drill: { pingUrl: "https://hc-ping.com/a'b" } }), `environments.prod.drill.pingUrl: "https://hc-ping.com/a'b" contains a single quote (')`, client({ drill: { pingUrl: "https://hc-ping.com/a%27b" } })],
  ])("a single quote in %s is rejected with its path and fix, not a stack trace at render", (_name, bad, message, good) => {
    const problems = problemsOf(bad);
    expect(problems).toEqual([expect.stringContaining(`${FILE}: ${message}`)]);
    expect(problems[0]).toMatch(/Fix: /);
    rendersCleanly(good);
  });

  test.each<[string, string, string]>([
    ["user and token", "https://x-access-token:ghp_s3cr3tT0ken@github.com/pixelco/app.git", "https://***@github.com/pixelco/app.git"],
    ["token as user name", "https://ghp_s3cr3tT0ken@github.com/pixelco/app.git", "https://***@github.com/pixelco/app.git"],
    ["password in an ssh:// URL", "ssh://git:ghp_s3cr3tT0ken@github.com/pixelco/app.git", "ssh://git:***@github.com/pixelco/app.git"],
  ])("app.repo with credentials (%s) is rejected without printing them, pointing at privateRepo", (_name, repo, shown) => {
    const problems = problemsOf(withApp({ repo }));
    expect(problems).toEqual([expect.stringContaining(`${FILE}: environments.prod.app.repo: ${JSON.stringify(shown)} has credentials in it`)]);
    expect(problems[0]).toContain('"git@github.com:pixelco/app.git" with privateRepo: true');
    expect(problems.join("\n")).not.toContain("s3cr3t");
  });

  test.each(["https://github.com/pixelco/app.git", "git@github.com:pixelco/app.git", "ssh://git@github.com/pixelco/app.git", "ssh://git@github.com:2222/pixelco/app.git"])(
    "app.repo %s stays valid",
    (repo) => rendersCleanly(withApp({ repo, privateRepo: !repo.startsWith("https") })),
  );

  test.each<[string, string[], string[], string[]]>([
    ["IPv4 world with a zero-padded prefix", ["0.0.0.0/00"], ['"0.0.0.0/00" is not a CIDR'], ["203.0.113.4/32"]],
    ["IPv6 world with a zero-padded prefix", ["::/000"], ['"::/000" is not a CIDR'], ["2001:db8::1/128"]],
    ["a zero-padded prefix length", ["10.0.0.0/08"], ['"10.0.0.0/08" is not a CIDR'], ["10.0.0.0/8"]],
    ["an IPv6 zone id", ["fe80::1%eth0/128"], ['"fe80::1%eth0/128" is not a CIDR'], ["fe80::1/128"]],
    [
      "the two IPv4 halves",
      ["0.0.0.0/1", "128.0.0.0/1"],
      ['[0]: "0.0.0.0/1" is far wider than an office or VPN', '[1]: "128.0.0.0/1" is far wider than an office or VPN'],
      ["10.0.0.0/8", "198.51.100.0/24"],
    ],
    ["a wide IPv6 range", ["2000::/3"], ['"2000::/3" is far wider than an office or VPN (at most /16); list the addresses you connect from, e.g. "2001:db8::1/128"'], ["2001::/16"]],
  ])("sshAllowedCidrs: %s is rejected; the nearest valid value passes", (_name, bad, messages, good) => {
    const problems = problemsOf(client({ sshAllowedCidrs: bad }));
    expect(problems).toEqual(messages.map((m) => expect.stringContaining(`${FILE}: environments.prod.sshAllowedCidrs${m.startsWith("[") ? "" : "[0]: "}${m}`)));
    expect(problemsOf(client({ sshAllowedCidrs: good }))).toEqual([]);
  });

  test("sshAllowedCidrs: the whole internet is refused as a number, with the /0 message; a wide IPv4 range suggests a /32", () => {
    expect(problemsOf(client({ sshAllowedCidrs: ["0.0.0.0/0", "::/0"] }))).toEqual(
      ["0.0.0.0/0", "::/0"].map((cidr, i) =>
        `${FILE}: environments.prod.sshAllowedCidrs[${i}]: "${cidr}" opens SSH to the whole internet; list your office or VPN addresses instead (e.g. "203.0.113.4/32")`,
      ),
    );
    expect(problemsOf(client({ sshAllowedCidrs: ["64.0.0.0/2"] }))).toEqual([
      `${FILE}: environments.prod.sshAllowedCidrs[0]: "64.0.0.0/2" is far wider than an office or VPN (at most /8); list the addresses you connect from, e.g. "203.0.113.4/32"`,
    ]);
  });

  /** Accepted OnCalendar values; every one is also checked by systemd-analyze below. */
  const CALENDARS_ACCEPTED = [
    "minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually", "Daily", "daily UTC",
    "*-*-* 03:30:00", "*-*-* 03:30", "03:30", "3:5", "*-*-*", "*-*", "01-01", "2024-01-01 00:00:00", "*-*-* 03:30:00 UTC",
    "Mon", "mon 03:30", "MONDAY 03:30", "Mon..Fri *-*-* 03:30", "Mon,Wed,Fri 10:00", "Sat,Thu,Mon..Wed,Sat..Sun", "Mon..Mon 00:00",
    "Mon *-*-* 03:30 UTC", "*-*-01,15 03:30", "*-1..12/3-01 03:30", "*-*-1/30", "*-1/11-01", "*-*-* 0/23:00", "*-*-* 1..5/2:00",
    "*:0/15", "00:0/59", "00:00:0/59", "*-*-* 03:30:00,30", "*-*-* 23:59:59", "*-*-* 00:00:10..20", "*-*~01", "*-02~01..03", "*~28", "2024-*~07",
    "2024..2026-01-01", "1970-01-01", "2199-12-31", "2..3/20:00", "*-*-30/1", "00:00:58/1",
  ];
  const CALENDARS_REJECTED = [
    "every day", "daily at 3", " daily", "daily ", "*-*-*  03:30", "*-*-* 24:00", "*-*-* 03:60", "*-*-* 00:00:60", "*-00-01", "*-*-00", "*-13-01",
    "1969-01-01", "2200-01-01", "Fri..Mon", "Thurs", "Mon, Wed", "*:*/0", "*:*/15", "*-*-* */2:00", "*/2-*-*", "*-*-* 1/24:00", "*-*-* 0/60:00",
    "*-*-31/40", "*-*-1/31", "*-1/12-01", "*-*~1/2", "*-*-* 5..3:00", "*-*-* 03:30 Mars/Olympus", "*-*-* 03:30 Z", "*-*-* 03:30 Europe/Berlin", "*-*~29", "*-*~24,1,2", "00:00:10..10", "*-12/1-01", "3:00 Mon", "*-*-* 3",
    "UTC", "*-*-* 03:30:00 UTC UTC", "03:30\nExecStartPre=/bin/true", "daily; rm -rf /",
  ];

  test.each(CALENDARS_REJECTED.map((v) => [v]))("OnCalendar %j is rejected for the fallback backup and the drill", (value) => {
    const calendar = (at: string) =>
      `${FILE}: environments.prod.${at}: ${JSON.stringify(value)} is not a systemd OnCalendar expression: use a shorthand (daily, weekly, monthly, …) or`;
    expect(problemsOf(client({ backups: { fallback: { onCalendar: value } } }))).toEqual([expect.stringContaining(calendar("backups.fallback.onCalendar"))]);
    expect(problemsOf(client({ drill: { onCalendar: value } }))).toEqual([expect.stringContaining(calendar("drill.onCalendar"))]);
  });

  test("OnCalendar: the common systemd forms are accepted", () => {
    for (const value of CALENDARS_ACCEPTED) {
      expect([value, problemsOf(client({ backups: { fallback: { onCalendar: value } }, drill: { onCalendar: value } }))]).toEqual([value, []]);
    }
  });

  test("systemd-analyze accepts (and can schedule) every OnCalendar value the validator accepts: the table and the shipped clients", () => {
    // In the server's time zone, so the result does not depend on the machine running the tests.
    const analyze = (values: string[]) => spawnSync("systemd-analyze", ["calendar", ...values], { encoding: "utf8", env: { ...process.env, TZ: "UTC" } });
    const probe = analyze(["daily"]);
    if (probe.error || probe.status !== 0) {
      throw new Error(`systemd-analyze is required for this test (it is on dev machines and in CI): ${probe.error?.message ?? probe.stderr}`);
    }
    const shipped = shippedEnvironments().flatMap((env) => [env.backups.fallback.onCalendar, env.drill.onCalendar]);
    expect(shipped.length).toBeGreaterThan(0);
    const values = [...new Set([...CALENDARS_ACCEPTED, ...shipped])];
    for (const value of values) expect([value, problemsOf(client({ drill: { onCalendar: value } }))]).toEqual([value, []]);
    const result = analyze(values);
    const refused = values.filter((v) => result.stderr.includes(`'${v}'`));
    expect({ status: result.status, refused, stderr: result.stderr }).toEqual({ status: 0, refused: [], stderr: "" });
    // systemd prints one "Next elapse:" per expression it can schedule.
    expect(result.stdout.match(/Next elapse: /g)).toHaveLength(values.length);
  });
});
