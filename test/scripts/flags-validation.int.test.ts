/**
 * Every script's flags are checked before anything reads a server: the real scripts, run as an operator
 * runs them, against an address where nothing listens (198.51.100.1, TEST-NET-2), so that a refusal can only
 * come from the flag check. Pairs: the bad flags exit 1 with `error:`/`fix:` and no stack trace; the nearest
 * good flags pass the check (and get as far as the dry run or the missing server).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../../lab/environments.ts";
import { restorableTime } from "../../scripts/lib/cli.ts";
import { OpsError } from "../../scripts/lib/errors.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kit-flags-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs scripts/<script> with a missing outputs file: without --host it stops at "no server address". */
function run(script: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(REPO_ROOT, "node_modules", ".bin", "tsx"), [join(REPO_ROOT, "scripts", script), ...args, "--outputs", join(dir, "none.json")], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 }, (error, _stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stderr }),
    );
  });
}

const refused = async (script: string, args: string[], error: string, fix: string) => {
  const { code, stderr } = await run(script, args);
  expect({ code, error: /^error: (.*)$/m.exec(stderr)?.[1], fix: /^fix: {3}(.*)$/m.exec(stderr)?.[1] }).toEqual({ code: 1, error, fix });
  expect(stderr).not.toMatch(/\n\s+at /);
};
/** The good flags get past the check: no flag error (a dry run without a server ends at "no server address"). */
const passesCheck = async (script: string, args: string[]) => {
  const { stderr } = await run(script, args);
  expect(stderr).not.toMatch(/^error: (--|one stack|which stack)/m);
};

describe("numbers in range", () => {
  test.each<[string, string[], string, string, string[]]>([
    ["deploy.ts", ["--keep", "abc"], '--keep "abc" is not a whole number from 2 to 100', "pass e.g. --keep 5", ["--keep", "3"]],
    ["deploy.ts", ["--keep", "1"], '--keep "1" is not a whole number from 2 to 100', "pass e.g. --keep 5", ["--keep", "2"]],
    ["deploy.ts", ["--health-seconds", "2.5"], '--health-seconds "2.5" is not a whole number from 1 to 3600', "pass e.g. --health-seconds 5", ["--health-seconds", "3"]],
    ["deploy.ts", ["--health-seconds", ""], '--health-seconds "" is not a whole number from 1 to 3600', "pass e.g. --health-seconds 5", ["--health-seconds", "30"]],
    ["restore.ts", ["--latest", "--health-seconds", "0"], '--health-seconds "0" is not a whole number from 1 to 3600', "pass e.g. --health-seconds 5", ["--latest", "--health-seconds", "60"]],
    ["deploy.ts", ["--port", "70000"], "--port 70000 is not a port", "pass a number 1-65535", ["--port", "2222"]],
  ])("%s %j: refused (a NaN never reaches the server); the nearest good value passes", async (script, bad, error, fix, good) => {
    await Promise.all([refused(script, ["example-prod", ...bad, "--dry-run", "--host", "198.51.100.1"], error, fix), passesCheck(script, ["example-prod", ...good, "--dry-run"])]);
  });
});

describe("exactly one stack", () => {
  test.each(["deploy.ts", "drill.ts", "restore.ts", "rotate-keys.ts"])("%s: two stacks refused, none asked for; one passes", async (script) => {
    const mode = script === "restore.ts" ? ["--list"] : [];
    const usage = `npx zx scripts/${script} example-prod`;
    const [two, none] = await Promise.all([run(script, ["example-prod", "example-staging", ...mode, "--dry-run"]), run(script, [...mode, "--dry-run"]), passesCheck(script, ["example-prod", ...mode, "--dry-run"])]);
    expect(two.code).toBe(1);
    expect(two.stderr).toContain("error: one stack at a time (got example-prod, example-staging)");
    expect(two.stderr).toContain(`fix:   ${usage}`);
    expect(none.stderr).toContain("error: which stack?");
  });
});

describe("known combinations only: a flag the mode ignores is refused", () => {
  test.each<[string, string[], string, string[]]>([
    ["deploy.ts", ["--to", "/srv/app/releases/x"], "--to is used only with --rollback; here it would be ignored", ["--rollback", "--to", "/srv/app/releases/x"]],
    ["deploy.ts", ["--rollback", "--ref", "v1.2.0"], "--rollback and --ref together: a rollback goes back to the previous release (or --to RELEASE); it fetches no ref", ["--ref", "v1.2.0"]],
    ["deploy.ts", ["--config-only", "--ref", "v1"], "--config-only deploys no release, so --ref would be ignored", ["--config-only"]],
    ["restore.ts", ["--latest", "--litestream", "/usr/bin/litestream"], "--litestream is used only with --local or --list; here it would be ignored", ["--list", "--litestream", "/usr/bin/litestream"]],
    ["restore.ts", ["--list", "--health-seconds", "30"], "--health-seconds and --list together: --list replaces nothing on the server, so there is no health check to wait for", ["--list"]],
    ["restore.ts", ["--latest", "--local", "x.db", "--health-seconds", "30"], "--health-seconds and --local together: --local replaces nothing on the server, so there is no health check to wait for", ["--latest", "--health-seconds", "30"]],
    ["restore.ts", ["--latest", "--timestamp", "2026-01-01T00:00:00Z"], "choose one of --list, --latest, --timestamp, --from-fallback, --from-file (got latest, timestamp)", ["--latest"]],
  ])("%s %j: refused with the fix; the nearest good combination passes", async (script, bad, error, good) => {
    const [{ code, stderr }] = await Promise.all([run(script, ["example-prod", ...bad, "--dry-run"]), passesCheck(script, ["example-prod", ...good, "--dry-run"])]);
    expect(code).toBe(1);
    expect(stderr).toContain(`error: ${error}`);
    expect(stderr).toMatch(/^fix: {3}\S/m);
  });

  test("restore --local with --dry-run is refused: --local writes a file here and has nothing to preview (it used to run for real)", async () => {
    const out = join(dir, "local.db");
    await refused("restore.ts", ["example-prod", "--latest", "--local", out, "--dry-run"], "--dry-run and --local together: --local changes nothing on the server; it only writes FILE here (there is nothing to preview)", "drop one of them (see --help)");
  });
});

describe("restore --timestamp: a time that exists, in the past, within retention (example-prod keeps 72h)", () => {
  const now = Date.parse("2026-12-03T12:00:00Z");
  const check = (value: string) => restorableTime(value, 72 * 3600, "72h", now);
  test.each<[string, string, string]>([
    ["30 February", "2026-02-30T10:00:00Z", "--timestamp 2026-02-30T10:00:00Z is not an RFC 3339 time"],
    ["hour 24", "2026-12-02T24:00:00Z", "--timestamp 2026-12-02T24:00:00Z is not an RFC 3339 time"],
    ["no zone", "2026-12-02T10:00:00", "--timestamp 2026-12-02T10:00:00 is not an RFC 3339 time"],
    ["in the future", "2026-12-03T12:00:01Z", "--timestamp 2026-12-03T12:00:01Z is in the future (it is now 2026-12-03T12:00:00Z)"],
    ["in the future by its offset", "2026-12-03T12:30:00-01:00", "--timestamp 2026-12-03T12:30:00-01:00 is in the future (it is now 2026-12-03T12:00:00Z)"],
    ["older than retention", "2026-11-30T11:59:59Z", "--timestamp 2026-11-30T11:59:59Z is older than the replica's retention (72h): nothing before about 2026-11-30T12:00:00Z is kept"],
  ])("%s: refused", (_name, value, message) => {
    expect(() => check(value)).toThrow(OpsError);
    expect(() => check(value)).toThrow(message);
  });

  test.each(["2026-12-02T10:00:00Z", "2026-12-03T11:59:59Z", "2026-12-03T12:30:00+01:00", "2026-11-30T12:00:00Z", "2026-12-01T09:15:00.250Z"].map((v) => [v]))("%s: accepted", (value) => {
    expect(check(value)).toBe(value);
  });

  test("the script refuses a future time before it connects, naming the fix", async () => {
    const { code, stderr } = await run("restore.ts", ["example-prod", "--timestamp", "2999-01-01T00:00:00Z", "--dry-run", "--host", "198.51.100.1"]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^error: --timestamp 2999-01-01T00:00:00Z is in the future \(it is now \d{4}-/m);
    expect(stderr).toContain("fix:   for the newest state use --latest; see what exists with --list");
  });
});

test("a broken client file reaches the scripts as its listed problems, not as a stack trace of a bug", async () => {
  const clients = mkdtempSync(join(dir, "clients-"));
  const { code, stderr } = await run("deploy.ts", ["example-prod", "--clients-dir", clients, "--dry-run"]);
  expect(code).toBe(1);
  expect(stderr).toContain(`error: 1 problem in the client configuration (no stack was written):\n  - ${clients}: (directory): holds no client file`);
  expect(stderr).toContain("fix:   correct the client files as listed");
  expect(stderr).not.toMatch(/\n\s+at /);
});
