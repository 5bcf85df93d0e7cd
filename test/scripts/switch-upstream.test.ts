/**
 * The switch step's file handling, run by real bash. systemd and Caddy only run in the boot tests
 * (test/e2e/ops.e2e.test.ts switches for real); here a `systemctl` on PATH answers the reload with the
 * outcome under test, so the refusal path, which a rendered Caddyfile never triggers there, is covered too.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import * as steps from "../../scripts/lib/server-steps.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kit-switch-"));
  mkdirSync(join(dir, "bin"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function switchWithReload(reloadExit: number) {
  writeFileSync(join(dir, "bin", "systemctl"), `#!/bin/sh\necho "systemctl $*" >>"${dir}/calls"\nexit ${reloadExit}\n`);
  chmodSync(join(dir, "bin", "systemctl"), 0o755);
  const caddyfile = join(dir, "Caddyfile");
  writeFileSync(caddyfile, "old config -> 127.0.0.1:8000\n");
  const step = steps.switchUpstream({ path: LAYOUT.caddyfile, content: "new config -> 127.0.0.1:8001\n", mode: "0644", secret: false, early: false, onChange: [], atFirstBoot: [] }, 8001, {
    kitEnvFile: join(dir, "kit.env"),
    libDir: join(dir, "lib"),
    caddyfile,
    deployLock: join(dir, "lock"),
  });
  const ran = spawnSync("bash", ["-c", step.script.text], { encoding: "utf8", env: { ...process.env, PATH: `${join(dir, "bin")}:${process.env.PATH}` } });
  return { ran, caddyfile: readFileSync(caddyfile, "utf8"), leftovers: readdirSync(dir).filter((f) => f.startsWith("Caddyfile.")) };
}

test("Caddy takes the new file: it stays, and nothing is left beside it", () => {
  const { ran, caddyfile, leftovers } = switchWithReload(0);
  expect(ran.status).toBe(0);
  expect(caddyfile).toBe("new config -> 127.0.0.1:8001\n");
  expect(leftovers).toEqual([]);
  expect(readFileSync(join(dir, "calls"), "utf8")).toBe("systemctl reload caddy.service\n");
  expect(ran.stderr).toContain("kit: Caddy now proxies to 127.0.0.1:8001");
});

test("Caddy refuses the reload: the previous file is put back (what is on disk is what runs), and the step fails saying so", () => {
  const { ran, caddyfile, leftovers } = switchWithReload(1);
  expect(ran.status).toBe(1);
  expect(caddyfile).toBe("old config -> 127.0.0.1:8000\n");
  expect(leftovers).toEqual([]);
  expect(ran.stderr).toContain("kit: Caddy refused the new configuration and keeps the previous one");
  expect(existsSync(join(dir, "Caddyfile.kit-previous"))).toBe(false);
});
