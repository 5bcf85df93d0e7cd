/**
 * `npm run lab -- <stack>` and `npm run lab -- down`, as a developer runs them: the lab boots example-prod's
 * real user data, prints the app's URL and SSH command and keeps running; both work; `down` stops it and
 * nothing it started is left (its process, its machine, its journal).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../app/repo.ts";
import { SCRATCH_ROOT } from "../../lab/harness/teardown.ts";

const TSX = join(REPO_ROOT, "node_modules", "tsx", "dist", "cli.mjs");
const lab = (args: string[]) => spawn(process.execPath, [TSX, join(REPO_ROOT, "scripts", "lab.ts"), ...args], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
/** The lab process's own teardown journals (named <pid>-…): what it started and has not released yet. */
const journalsOf = (pid: number) => (existsSync(join(SCRATCH_ROOT, "journal")) ? readdirSync(join(SCRATCH_ROOT, "journal")).filter((f) => f.startsWith(`${pid}-`)) : []);

test("lab <stack> prints a URL that serves the app and an SSH command that logs in; lab down releases everything", async () => {
  const up = lab(["example-prod"]);
  let out = "";
  let err = "";
  up.stdout.on("data", (d) => (out += d));
  up.stderr.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => up.once("close", resolve));
  try {
    // Ready once it printed the stop line (rootfs cached: a boot is 30–70 s here).
    const deadline = Date.now() + 15 * 60_000;
    while (!/ {2}stop: {2}Ctrl-C, or npm run lab -- down/.test(out)) {
      if (Date.now() > deadline || up.exitCode !== null) throw new Error(`lab did not come up:\n${out}\n${err}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(out).toMatch(/^example-prod is running in the lab \(booted in [\d.]+ s\):$/m);
    const url = /^ {2}app: {3}(http:\/\/\S+\/)$/m.exec(out)![1];
    const sshCommand = /^ {2}ssh: {3}(ssh .*deploy@\S+)$/m.exec(out)![1];

    // The script's own process (tsx runs it in a child) says who it is in lab.json; its journal lists what it started.
    const labPid = (JSON.parse(readFileSync(join(SCRATCH_ROOT, "lab.json"), "utf8")) as { pid: number }).pid;
    expect(journalsOf(labPid).length).toBeGreaterThan(0);
    const health = await fetch(`${url}healthz`, { signal: AbortSignal.timeout(10_000) });
    expect(health.status).toBe(200);
    const login = spawnSync("bash", ["-c", `${sshCommand} -- id -un`], { encoding: "utf8", timeout: 60_000 });
    expect(login.stdout.trim()).toBe("deploy");

    // A second lab refuses while this one runs, naming it.
    const second = spawnSync(process.execPath, [TSX, join(REPO_ROOT, "scripts", "lab.ts"), "example-staging"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 });
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(/error: a lab is already running: example-prod \(pid \d+\)/);

    const down = spawnSync(process.execPath, [TSX, join(REPO_ROOT, "scripts", "lab.ts"), "down"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 180_000 });
    expect(down.status).toBe(0);
    expect(down.stderr).toContain("lab: example-prod stopped; everything it started is released");
    expect(await exited).toBe(0);
    expect(err).toContain("lab: stopped");
    expect(journalsOf(labPid)).toEqual([]);
    expect(existsSync(join(SCRATCH_ROOT, "lab.json"))).toBe(false);
    // (No request to the old address now: with the lab network gone it would leave this machine.)
  } finally {
    if (up.exitCode === null) up.kill("SIGTERM");
    await exited;
  }
});

test("lab without a stack, or with one that does not exist, says what to type", () => {
  const none = spawnSync(process.execPath, [TSX, join(REPO_ROOT, "scripts", "lab.ts")], { cwd: REPO_ROOT, encoding: "utf8" });
  expect(none.status).toBe(1);
  expect(none.stderr).toContain("fix:   npm run lab -- <stack>   (or: npm run lab -- down; see --help)");
  const unknown = spawnSync(process.execPath, [TSX, join(REPO_ROOT, "scripts", "lab.ts"), "nope-prod"], { cwd: REPO_ROOT, encoding: "utf8" });
  expect(unknown.status).toBe(1);
  expect(unknown.stderr).toContain('error: no client environment named "nope-prod"');
  expect(unknown.stderr).not.toMatch(/^\s+at /m);
});
