/**
 * The deploy switch as it is built and as its file handling runs, in real bash. The kernel side (nft loading
 * the rules, conntrack keeping open connections where they are) runs only in the boot tests, where deploys
 * switch for real (test/e2e/ops.e2e.test.ts; `npm run bench:deploy` under load); here an `nft` on PATH answers
 * with the outcome under test, so the refusal paths, which a rendered ruleset never triggers there, are covered.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { serverFiles } from "../../cloud-init/server-files.ts";
import { concreteServerValues, shippedEnvironment } from "../../lab/environments.ts";
import * as steps from "../../scripts/lib/server-steps.ts";
import type { ServerPaths } from "../../scripts/lib/server-steps.ts";

const env = shippedEnvironment("example-prod");
const filesFor = (activePort: number) => serverFiles(env, concreteServerValues(env, { activePort }));
const rulesFor = (activePort: number) => filesFor(activePort).find((f) => f.path === LAYOUT.upstreamRules)!;
const caddyfileFor = (activePort: number) => filesFor(activePort).find((f) => f.path === LAYOUT.caddyfile)!.content;

let dir: string;
let paths: ServerPaths;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kit-switch-"));
  mkdirSync(join(dir, "bin"));
  paths = { kitEnvFile: join(dir, "kit.env"), libDir: join(dir, "lib"), caddyfile: join(dir, "Caddyfile"), deployLock: join(dir, "lock"), upstreamRules: join(dir, "upstream.nft") };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a step's bash with stand-ins on PATH (`name` → script body). */
function runStep(text: string, standIns: Record<string, string>) {
  for (const [name, body] of Object.entries(standIns)) {
    writeFileSync(join(dir, "bin", name), `#!/bin/sh\necho "${name} $*" >>"${dir}/calls"\n${body}\n`);
    chmodSync(join(dir, "bin", name), 0o755);
  }
  return spawnSync("bash", ["-c", text], { encoding: "utf8", env: { ...process.env, PATH: `${join(dir, "bin")}:${process.env.PATH}` } });
}
const calls = () => (existsSync(join(dir, "calls")) ? readFileSync(join(dir, "calls"), "utf8") : "");
const leftovers = () => readdirSync(dir).filter((f) => f.startsWith("upstream.nft."));

describe("what the switch installs", () => {
  test("Caddy proxies to the stable port, never to a slot, with a new upstream connection per request", () => {
    for (const port of [env.app.port, env.app.port + 1]) {
      const caddyfile = caddyfileFor(port);
      // The same Caddyfile whichever slot is active: a deploy never changes it, so never reloads Caddy.
      expect(caddyfile).toBe(caddyfileFor(env.app.port));
      expect(caddyfile).toMatch(new RegExp(`^\\treverse_proxy 127\\.0\\.0\\.1:${LAYOUT.ports.upstream} \\{$`, "m"));
      expect(caddyfile).toMatch(/transport http \{\n\t+keepalive off\n/);
      expect(caddyfile).not.toContain(`127.0.0.1:${port}`);
    }
  });

  test("the rules send the stable port to the active slot, in a table the file replaces whole (one nft transaction)", () => {
    const rules = rulesFor(env.app.port + 1).content;
    const statements = rules.split("\n").filter((line) => line.trim() && !line.trimStart().startsWith("#"));
    // Create-if-missing, delete, define: one file is one transaction, so the old rule holds until the new one does.
    expect(statements.slice(0, 3)).toEqual(["table ip kit_upstream", "delete table ip kit_upstream", "table ip kit_upstream {"]);
    expect(rules).toContain("type nat hook output priority -100; policy accept;");
    expect(statements.filter((line) => line.includes("dnat"))).toEqual([`\t\tip daddr 127.0.0.1 tcp dport ${LAYOUT.ports.upstream} dnat to 127.0.0.1:${env.app.port + 1}`]);
    expect(rulesFor(env.app.port).content).toContain(`dnat to 127.0.0.1:${env.app.port}\n`);
  });

  test("the stable port is refused as an app slot by the client file's validation", async () => {
    const { problemsOf } = await import("../support/problems.ts");
    const example = (await import("../../app/clients/example.ts")).default;
    const problems = problemsOf({ ...example, environments: { prod: { ...example.environments.prod, app: { ...example.environments.prod.app, port: LAYOUT.ports.upstream - 1 } } } });
    expect(problems).toEqual([expect.stringContaining(`app.port: "${LAYOUT.ports.upstream - 1}" is reserved: the server uses 2019, ${LAYOUT.ports.upstream}, 9090`)]);
  });
});

describe("switchUpstream's file handling", () => {
  const switchTo = (port: number, nftExit: number) => runStep(steps.switchUpstream(rulesFor(port), port, paths).script.text, { nft: `exit ${nftExit}` });

  test("nft takes the rules: the file is the new one, loaded once with nft -f, nothing left beside it, Caddy untouched", () => {
    writeFileSync(paths.upstreamRules!, rulesFor(8000).content);
    const ran = runStep(steps.switchUpstream(rulesFor(8001), 8001, paths).script.text, { nft: "exit 0", systemctl: "exit 1", caddy: "exit 1" });
    expect(ran.status).toBe(0);
    expect(readFileSync(paths.upstreamRules!, "utf8")).toBe(rulesFor(8001).content);
    expect(leftovers()).toEqual([]);
    expect(calls()).toBe(`nft -f ${paths.upstreamRules}\n`);
    expect(ran.stderr).toContain(`kit: 127.0.0.1:${LAYOUT.ports.upstream} now leads to 127.0.0.1:8001`);
  });

  test("nft refuses the rules: the previous file is put back (the kernel kept its rules: what is on disk is what runs), and the step fails saying so", () => {
    writeFileSync(paths.upstreamRules!, rulesFor(8000).content);
    const ran = switchTo(8001, 1);
    expect(ran.status).toBe(1);
    expect(readFileSync(paths.upstreamRules!, "utf8")).toBe(rulesFor(8000).content);
    expect(leftovers()).toEqual([]);
    expect(ran.stderr).toContain(`kit: nft refused the new rules: 127.0.0.1:${LAYOUT.ports.upstream} still leads to the slot it led to`);
  });

  test("with no rules file before (nothing recorded), a refused switch leaves none", () => {
    const ran = switchTo(8001, 1);
    expect(ran.status).toBe(1);
    expect(existsSync(paths.upstreamRules!)).toBe(false);
    expect(leftovers()).toEqual([]);
  });
});

describe("the active slot, as inspect reads it", () => {
  function activePort(files: { rules?: string; caddyfile?: string }): number {
    for (const d of ["slots", "releases"]) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(paths.kitEnvFile, `APP_PORT=8000\nBOOTSTRAP_DONE_FILE=${dir}/done\nDB_FILE=${dir}/db\nSLOTS_DIR=${dir}/slots\nRELEASES_DIR=${dir}/releases\nS3_ENDPOINT=\n`);
    if (files.rules !== undefined) writeFileSync(paths.upstreamRules!, files.rules);
    writeFileSync(paths.caddyfile, files.caddyfile ?? caddyfileFor(8000));
    const ran = runStep(steps.inspect([8000, 8001], paths).script.text, { systemctl: "echo inactive" });
    expect(ran.status).toBe(0);
    return Number(/^active_port=(\d+)$/m.exec(ran.stdout)?.[1]);
  }

  test("from the switch's dnat line", () => {
    expect(activePort({ rules: rulesFor(8001).content })).toBe(8001);
    expect(activePort({ rules: rulesFor(8000).content })).toBe(8000);
  });

  test("on a server bootstrapped before the switch, from its Caddyfile's upstream; never the stable port itself", () => {
    expect(activePort({ caddyfile: ":80 {\n\treverse_proxy 127.0.0.1:8001 {\n\t}\n}\n" })).toBe(8001);
    expect(activePort({ caddyfile: caddyfileFor(8001) })).toBe(8000);
  });
});
