/**
 * `npm run setup` (.ci/install) on machines unlike CI's, without installing anything: the script runs for
 * real with a PATH that holds only what such a machine has. npm, apt-get and dpkg-query are stand-ins
 * that record how they were called (the real ones would install globally); node is the real one, or a
 * wrapper that reports an older version.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../app/repo.ts";
import { onPath } from "../scripts/lib/doctor.ts";

const work = mkdtempSync(join(tmpdir(), "kit-setup-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const calls = join(work, "calls.log");

/** A PATH of one directory: the basic tools bash scripts use, node, and the given stand-ins. */
function machine(name: string, standIns: Record<string, string>): string {
  const dir = join(work, name);
  mkdirSync(dir);
  for (const tool of ["dirname", "id", "uname", "grep"]) {
    const real = onPath(tool, process.env);
    if (!real) throw new Error(`${tool} is not on PATH`);
    symlinkSync(real, join(dir, tool));
  }
  if (!standIns.node) symlinkSync(process.execPath, join(dir, "node"));
  for (const [tool, body] of Object.entries(standIns)) {
    writeFileSync(join(dir, tool), `#!/bin/bash\n${body}\n`);
    chmodSync(join(dir, tool), 0o755);
  }
  return dir;
}
const recorder = (tool: string) => `echo "${tool} $*" >> ${calls}`;

function setup(path: string) {
  rmSync(calls, { force: true });
  const r = spawnSync("/bin/bash", [join(REPO_ROOT, ".ci", "install")], { cwd: work, env: { PATH: path, HOME: work }, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, out: r.stdout + r.stderr, calls: existsSync(calls) ? readFileSync(calls, "utf8").trim().split("\n") : [] };
}

test("without apt (macOS, Fedora, Arch, …): no Debian packages, says so; installs the npm dependencies from the lockfile", () => {
  const r = setup(machine("no-apt", { npm: recorder("npm") }));
  expect(r.status).toBe(0);
  expect(r.out).toContain(`setup: node ${process.version}`);
  expect(r.out).toMatch(/setup: no apt here \(Linux\): skipping the Debian packages the tests run \(cloud-init shellcheck sqlite3 .*\);\n {7}the main job does not need them/);
  expect(r.calls).toEqual(["npm install --no-save --no-audit --no-fund --loglevel=error"]);
  expect(r.out).toContain("setup: done. Next: npx cdktf synth");
});

test("with apt (Debian, Ubuntu): the missing test packages are installed through apt-get, then npm", () => {
  const path = machine("apt", {
    npm: recorder("npm"),
    "apt-get": recorder("apt-get"),
    "dpkg-query": 'case "$*" in *sqlite3*|*caddy*) echo "install ok installed";; *) exit 1;; esac',
  });
  const r = setup(path);
  expect(r.status).toBe(0);
  expect(r.calls[0]).toBe("apt-get update -qq");
  const install = r.calls[1].split(" ");
  expect(install.slice(0, 5)).toEqual(["apt-get", "install", "-y", "-qq", "--no-install-recommends"]);
  expect(install).toEqual(expect.arrayContaining(["cloud-init", "shellcheck", "openssh-server", "debootstrap"]));
  expect(install).not.toContain("sqlite3"); // already installed
  expect(r.calls[2]).toBe("npm install --no-save --no-audit --no-fund --loglevel=error");
});

test("a Node older than engines, without apt: refuses with the version and the fix, installs nothing", () => {
  const { engines } = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8"));
  const old = machine("old-node", {
    node: `[ "$1" = --version ] && { echo v20.20.2; exit 0; }\nexec ${process.execPath} "$@"`,
    npm: recorder("npm"),
  });
  const r = setup(old);
  expect(r.status).toBe(1);
  expect(r.out).toContain(`setup: node v20.20.2 is older than the kit needs (${engines.node}); install Node 22, 24 or 26`);
  expect(r.calls).toEqual([]);
});
