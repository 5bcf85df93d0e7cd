/**
 * The operations scripts run the way the README shows them, on the Node running this test (CI: 22, 24, 26):
 * `npx zx scripts/<name>.ts` (Node strips the types: erasable TypeScript, `.ts` imports, ES modules) and
 * directly as `scripts/<name>.ts` (shebang and executable mode). Each prints its help, refuses an unknown flag
 * with error/fix and no stack trace, and prints no warning.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { REPO_ROOT } from "../../app/repo.ts";

const SCRIPTS = readdirSync(join(REPO_ROOT, "scripts")).filter((name) => name.endsWith(".ts")).sort();
// npx, zx and the shebang's `env node` all find the Node that runs this test first.
const env = { ...process.env, PATH: [dirname(process.execPath), process.env.PATH].join(delimiter), NO_COLOR: "1" };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
function run(command: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: REPO_ROOT, env, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

test("the operations scripts are all found (a new one is checked here too)", () => {
  expect(SCRIPTS).toEqual(expect.arrayContaining(["deploy.ts", "doctor.ts", "drill.ts", "lab.ts", "restore.ts", "rotate-keys.ts"]));
});

describe.each(SCRIPTS)("scripts/%s", (script) => {
  const path = join("scripts", script);

  test("npx zx: --help prints the usage and nothing on stderr; an unknown flag is refused with its fix", async () => {
    const [help, bogus] = await Promise.all([run("npx", ["zx", path, "--help"]), run("npx", ["zx", path, "--bogus"])]);
    expect(help).toEqual({ code: 0, stdout: expect.stringMatching(/^Usage: /), stderr: "" });
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toBe("\nerror: unknown option --bogus\nfix:   see --help\n");
  });

  test("directly: a node shebang, executable", async () => {
    expect(readFileSync(join(REPO_ROOT, path), "utf8").split("\n")[0]).toBe("#!/usr/bin/env node");
    expect(statSync(join(REPO_ROOT, path)).mode & 0o111).toBe(0o111);
    const help = await run(join(REPO_ROOT, path), ["--help"]);
    expect(help).toEqual({ code: 0, stdout: expect.stringMatching(/^Usage: /), stderr: "" });
  });
});

test("under zx the script's own path is not taken for an argument (zx keeps its CLI in argv[1])", async () => {
  const two = await run("npx", ["zx", "scripts/deploy.ts", "example-prod", "example-staging", "--dry-run"]);
  expect(two.code).toBe(1);
  expect(two.stderr).toContain("error: one stack at a time (got example-prod, example-staging)\n");
});
