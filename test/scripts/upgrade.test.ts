/**
 * scripts/upgrade.ts's planning: what changes from → to (a new version, another build of the same version,
 * nothing), what restarts and why, the dry run's lines and the fleet table; the server run's order and its
 * rollback, step by step, against a scripted runner that fails where told; the fleet's concurrency bound and
 * stop-at-first-failure; and the real script's flag refusals (before any server is contacted). The upgrade
 * itself runs against a booted server in test/e2e/upgrade.e2e.test.ts.
 */
import { execFile } from "node:child_process";
import { DENO, LITESTREAM } from "../../cloud-init/artifacts.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { REPO_ROOT } from "../../app/repo.ts";
import type { Step } from "../../scripts/lib/shell.ts";
import type { RunOptions, RunResult } from "../../scripts/lib/ssh.ts";
import { StepFailed } from "../../scripts/lib/ssh.ts";
import { loadEnvironment, resolveTarget } from "../../scripts/lib/target.ts";
import { artifactChange, binaryVersion, describePlan, formatUpgradeTable, fromTo, planUpgrade, type ServerFacts, shippedArtifacts } from "../../scripts/lib/upgrade-plan.ts";
import { parseFacts, UpgradeFailed, upgradeFleet, upgradeServer, type UpgradeResult } from "../../scripts/lib/upgrade-run.ts";
import { planFiles } from "../../scripts/lib/deploy-run.ts";
import { parseState } from "../../scripts/lib/state.ts";
import { switchUpstream } from "../../scripts/lib/server-steps.ts";

const OLD_DENO = { version: "2.9.5", sha256: "a6a758a7776cc9b405c267902dae9cef8426239dd656bb767611c24c7ab75222" };
const CURRENT_LS = { version: LITESTREAM.version, sha256: LITESTREAM.sha256 };
const facts = (over: Partial<ServerFacts> = {}): ServerFacts => ({
  installed: { deno: OLD_DENO, litestream: CURRENT_LS },
  changedFiles: [LAYOUT.kitEnvFile],
  securityUpdates: 0,
  ...over,
});

describe("from → to", () => {
  test("versions as the binaries print them", () => {
    expect(binaryVersion("deno 2.9.6\n")).toBe("2.9.6");
    expect(binaryVersion("v0.3.13")).toBe("0.3.13");
    expect(binaryVersion("")).toBe("");
    expect(binaryVersion("bash: /usr/local/bin/deno: No such file or directory")).toBe("");
  });

  test("another version, another build of the same version (sha256), nothing", () => {
    expect(artifactChange(DENO, OLD_DENO).kind).toBe("version");
    expect(artifactChange(LITESTREAM, { version: LITESTREAM.version, sha256: "f".repeat(64) }).kind).toBe("rebuild");
    expect(artifactChange(LITESTREAM, CURRENT_LS).kind).toBe("unchanged");
    expect(artifactChange(DENO, { version: "", sha256: "" }).kind).toBe("version");
  });

  test("an older Deno: Deno swapped, the app restarted blue/green, Litestream left running; the dry run says so", () => {
    const env = loadEnvironment("example-staging");
    const files = serverFilesOf(env);
    const plan = planUpgrade("example-staging", facts(), shippedArtifacts(), files, true);
    expect(plan.artifacts.map((a) => [a.to.name, a.kind])).toEqual([["deno", "version"], ["litestream", "unchanged"]]);
    expect(plan.restartLitestream).toBe(false);
    expect(plan.appRestart).toEqual(["deno changes"]);
    expect(fromTo(plan)).toBe(`deno 2.9.5 → ${DENO.version}, litestream ${LITESTREAM.version}, 1 file`);
    const lines = describePlan(plan);
    console.log(`dry-run lines:\n${lines.join("\n")}`);
    expect(lines).toEqual([
      "example-staging: what the upgrade would change",
      `  deno 2.9.5 → ${DENO.version}`,
      `  litestream ${LITESTREAM.version} (unchanged)`,
      "  1 server file differs from the kit's:",
      `    ${LAYOUT.kitEnvFile}`,
      "  Litestream: not restarted (its binary does not change)",
      "  app: restarted blue/green on the other slot (deno changes)",
      "  OS updates: unattended-upgrade runs (0 security updates pending in the package lists as they are now; apt-get update may find more)",
    ]);
  });

  test("another Litestream build: Litestream restarted; an app.env change alone restarts the app; nothing differs: nothing restarts", () => {
    const files = serverFilesOf(loadEnvironment("example-staging"));
    const rebuild = planUpgrade("s", facts({ installed: { deno: { version: DENO.version, sha256: DENO.sha256 }, litestream: { ...CURRENT_LS, sha256: "0".repeat(64) } }, changedFiles: [] }), shippedArtifacts(), files, false);
    expect(rebuild.restartLitestream).toBe(true);
    expect(rebuild.appRestart).toEqual([]);
    expect(describePlan(rebuild)).toContain(`  litestream ${LITESTREAM.version} → ${LITESTREAM.version} (another build: sha256 000000000000… → ${LITESTREAM.sha256.slice(0, 12)}…)`);
    expect(describePlan(rebuild)).toContain("  OS updates: skipped (--skip-os-updates)");
    const envChange = planUpgrade("s", facts({ installed: { deno: { version: DENO.version, sha256: DENO.sha256 }, litestream: CURRENT_LS }, changedFiles: [LAYOUT.appEnvFile, `${LAYOUT.unitDir}/${LAYOUT.units.app}`] }), shippedArtifacts(), files, true);
    expect(envChange.appRestart).toEqual([`${LAYOUT.appEnvFile} changes`, `${LAYOUT.unitDir}/${LAYOUT.units.app} changes`]);
    const none = planUpgrade("s", facts({ installed: { deno: { version: DENO.version, sha256: DENO.sha256 }, litestream: CURRENT_LS }, changedFiles: [], securityUpdates: null }), shippedArtifacts(), files, true);
    expect([none.restartLitestream, none.appRestart, fromTo(none)]).toEqual([false, [], `deno ${DENO.version}, litestream ${LITESTREAM.version}`]);
    expect(describePlan(none)).toContain("  server files: all as the kit renders them");
  });

  test("the render overrides' mirror URL (and a test's version/hash) are what is shipped", () => {
    const [deno] = shippedArtifacts({ artifacts: { deno: { url: "http://10.0.0.1:1/deno.tgz" } } });
    expect([deno.url, deno.version, deno.sha256]).toEqual(["http://10.0.0.1:1/deno.tgz", DENO.version, DENO.sha256]);
  });

  test("the fleet table", () => {
    const table = formatUpgradeTable([
      { stack: "example-prod", fromTo: "deno 2.9.5 → 2.9.6, litestream 0.3.13, 2 files", result: "upgraded", seconds: 31.24 },
      { stack: "example-staging", fromTo: "deno 2.9.6, litestream 0.3.13", result: "FAILED, rolled back", seconds: 4 },
      { stack: "acme-prod", fromTo: "", result: "not started (an earlier server failed)", seconds: null },
    ]);
    console.log(table);
    expect(table.split("\n")).toEqual([
      "server           from → to                                       result                                  duration",
      "---------------  ----------------------------------------------  --------------------------------------  --------",
      "example-prod     deno 2.9.5 → 2.9.6, litestream 0.3.13, 2 files  upgraded                                31.2 s",
      "example-staging  deno 2.9.6, litestream 0.3.13                   FAILED, rolled back                     4.0 s",
      "acme-prod        -                                               not started (an earlier server failed)  -",
    ]);
  });

  test("the read step's output", () => {
    const parsed = parseFacts(`version_deno=deno 2.9.5\nsha256_deno=${OLD_DENO.sha256}\nversion_litestream=v0.3.13\nsha256_litestream=${LITESTREAM.sha256}\nchanged=/etc/kit/kit.env\nchanged=/usr/local/lib/kit/watch.sh\nsecurity_updates=3\n`, ["deno", "litestream"]);
    expect(parsed).toEqual({ installed: { deno: OLD_DENO, litestream: CURRENT_LS }, changedFiles: ["/etc/kit/kit.env", "/usr/local/lib/kit/watch.sh"], securityUpdates: 3 });
    expect(parseFacts("security_updates=\n", ["deno"]).securityUpdates).toBeNull();
  });
});

function serverFilesOf(env: ReturnType<typeof loadEnvironment>) {
  const target = resolveTarget(env, { host: "192.0.2.1", outputs: "/nonexistent.json" }, {});
  return planFiles(target, parseState(INSPECT), {}).files;
}

/** The deploy switch's step title (its wording is the switch's, not the upgrade's). */
const switchTitle = (port: number) => switchUpstream({ path: "/x", content: "", mode: "0644", secret: false, early: false, onChange: [], atFirstBoot: [] }, port).title;

const INSPECT = `active_port=8000\napp_port=8000\nbootstrap_done=r1\ndb_exists=yes\nslot_8000=/srv/app/releases/r1\nunit_8000=active\nslot_8001=\nunit_8001=inactive\nrelease=/srv/app/releases/r1\nlock=\nvolume_device=/dev/disk/by-id/scsi-0DO_Volume_x\ns3_endpoint=\ndrill_unit=yes\n`;

/** A runner that answers each step by its title and fails the one whose title matches `failAt`. */
class ScriptedRunner {
  readonly destination = "deploy@192.0.2.1";
  readonly ran: string[] = [];
  failAt?: RegExp;
  readFacts = `version_deno=deno 2.9.5\nsha256_deno=${OLD_DENO.sha256}\nversion_litestream=v0.3.13\nsha256_litestream=${"0".repeat(64)}\nchanged=${LAYOUT.kitEnvFile}\nsecurity_updates=0\n`;
  async run(step: Step, _options?: RunOptions): Promise<RunResult> {
    this.ran.push(step.title);
    const out = (stdout: string): RunResult => ({ stdout, stderr: "", exitCode: 0 });
    if (this.failAt?.test(step.title)) throw new StepFailed(step.title, { stdout: "", stderr: "kit: sha256 mismatch", exitCode: 1 }, "see above");
    if (step.title === "inspect the server") return out(INSPECT);
    if (step.title.startsWith("read installed versions")) return out(this.readFacts);
    if (step.title.startsWith("keep a copy")) return out("saved=/var/lib/kit/upgrade/20261204T020000Z-1\n");
    if (step.title.startsWith("push configuration")) return out(`${LAYOUT.kitEnvFile}\n`);
    if (step.title.startsWith("prove replication")) return out("replication=0 s behind\n");
    if (step.title.startsWith("OS security updates")) return out("os_upgraded=0\n");
    return out("");
  }
}

async function serverRun(runner: ScriptedRunner) {
  const target = resolveTarget(loadEnvironment("example-staging"), { host: "192.0.2.1", outputs: "/nonexistent.json" }, {});
  const write = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return await upgradeServer({ target, runner, processEnv: {} }).then((r) => r, (e: unknown) => e);
  } finally {
    process.stderr.write = write;
  }
}

describe("one server: order and rollback", () => {
  test("a new Deno and another Litestream build: staged, swapped, pushed, Litestream restarted, the app moved blue/green, replication proven, lock released", async () => {
    const runner = new ScriptedRunner();
    const result = (await serverRun(runner)) as UpgradeResult;
    expect(result.changed).toBe(true);
    expect(runner.ran).toEqual([
      "inspect the server",
      "read installed versions, changed files and pending updates",
      "take the deploy lock",
      `download deno ${DENO.version}, check its sha256, stage it`,
      `download litestream ${LITESTREAM.version}, check its sha256, stage it`,
      "OS security updates (apt-get update, unattended-upgrade)",
      expect.stringMatching(/^keep a copy of the \d+ server files/),
      `swap in deno ${DENO.version} and litestream ${LITESTREAM.version} (previous kept as *.kit-previous)`,
      expect.stringMatching(/^push configuration/),
      "grow the volume's filesystem if the volume grew (online)",
      `restart Litestream on litestream ${LITESTREAM.version} (it flushes its WAL on SIGTERM)`,
      "start app@8001.service and health-check it",
      switchTitle(8001),
      "stop app@8000.service",
      "prove replication is current (a watcher run: heartbeat row found in the bucket)",
      "release the deploy lock",
    ]);
  });

  test("a tampered download: nothing live was changed; the staged files go, the lock is released", async () => {
    const runner = new ScriptedRunner();
    runner.failAt = /^download deno/;
    const error = (await serverRun(runner)) as UpgradeFailed;
    expect(error).toBeInstanceOf(UpgradeFailed);
    expect(error.complete).toBe(true);
    expect(error.message).toContain("nothing of the kit's had been changed yet");
    expect(runner.ran.slice(3)).toEqual([`download deno ${DENO.version}, check its sha256, stage it`, "remove the staged binaries", "release the deploy lock"]);
  });

  test("replication not proven after everything moved: binaries, files, Litestream and the app go back, in that order", async () => {
    const runner = new ScriptedRunner();
    runner.failAt = /^prove replication/;
    const error = (await serverRun(runner)) as UpgradeFailed;
    expect(error.complete).toBe(true);
    const after = runner.ran.slice(runner.ran.indexOf("prove replication is current (a watcher run: heartbeat row found in the bucket)") + 1);
    expect(after).toEqual([
      "put back the previous deno and litestream",
      "put back the 1 server files the upgrade changed",
      `restart Litestream on litestream ${LITESTREAM.version} (it flushes its WAL on SIGTERM)`,
      "start app@8000.service and health-check it",
      switchTitle(8000),
      "stop app@8001.service",
      "release the deploy lock",
    ]);
    expect(error.message).toMatch(/rolled back: app@8000 runs \/srv\/app\/releases\/r1 again/);
  });

  test("the new slot fails its health check: its start is undone, nothing was switched; a failing rollback step makes it INCOMPLETE", async () => {
    const runner = new ScriptedRunner();
    runner.failAt = /^start app@8001/;
    const error = (await serverRun(runner)) as UpgradeFailed;
    const after = runner.ran.slice(runner.ran.indexOf("start app@8001.service and health-check it") + 1);
    expect(after).toEqual(["put back the previous deno and litestream", "put back the 1 server files the upgrade changed", `restart Litestream on litestream ${LITESTREAM.version} (it flushes its WAL on SIGTERM)`, "stop app@8001.service", "release the deploy lock"]);
    expect(error.complete).toBe(true);

    const worse = new ScriptedRunner();
    worse.failAt = /^(start app@8001|put back the previous)/;
    const incomplete = (await serverRun(worse)) as UpgradeFailed;
    expect(incomplete.complete).toBe(false);
    expect(incomplete.message).toContain("ROLLBACK STEP FAILED: deno and litestream are the previous binaries again");
  });

  test("a server already on the kit's pins: no staging, no copy, no swap, no restart; replication still proven", async () => {
    const runner = new ScriptedRunner();
    runner.readFacts = `version_deno=deno ${DENO.version}\nsha256_deno=${DENO.sha256}\nversion_litestream=v${LITESTREAM.version}\nsha256_litestream=${LITESTREAM.sha256}\nsecurity_updates=0\n`;
    const result = (await serverRun(runner)) as UpgradeResult;
    expect(result.changed).toBe(false);
    expect(runner.ran.slice(2)).toEqual(["take the deploy lock", "OS security updates (apt-get update, unattended-upgrade)", "grow the volume's filesystem if the volume grew (online)", "prove replication is current (a watcher run: heartbeat row found in the bucket)", "release the deploy lock"]);
  });
});

describe("the fleet", () => {
  const stacks = ["a-prod", "b-prod", "c-prod", "d-prod", "e-prod"];
  const fleet = (failing: readonly string[], keepGoing: boolean, concurrency: number) => {
    let running = 0;
    let most = 0;
    const started: string[] = [];
    const items = stacks.map((stack) => ({ stack, target: { env: { stackName: stack } } as never }));
    const write = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    const rows = upgradeFleet(items, {
      concurrency,
      keepGoing,
      dryRun: false,
      upgrade: async (target) => {
        const stack = (target as { env: { stackName: string } }).env.stackName;
        started.push(stack);
        most = Math.max(most, ++running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        const plan = planUpgrade(stack, facts(), shippedArtifacts(), [], true);
        if (failing.includes(stack)) throw new UpgradeFailed("boom", "fix", plan, true);
        return { plan, changed: true, seconds: 1 };
      },
    }).finally(() => (process.stderr.write = write));
    return rows.then((r) => ({ rows: r, started, most }));
  };

  test("at most --concurrency at a time; the first failure starts no further server", async () => {
    const { rows, started, most } = await fleet(["b-prod"], false, 2);
    expect(most).toBe(2);
    expect(started).toEqual(["a-prod", "b-prod", "c-prod"]);
    expect(rows.map((r) => r.result)).toEqual(["upgraded", "FAILED, rolled back", "upgraded", "not started (an earlier server failed)", "not started (an earlier server failed)"]);
  });

  test("--keep-going: every server runs; one at a time with --concurrency 1", async () => {
    const { rows, started, most } = await fleet(["b-prod", "d-prod"], true, 1);
    expect(most).toBe(1);
    expect(started).toEqual(stacks);
    expect(rows.map((r) => r.result)).toEqual(["upgraded", "FAILED, rolled back", "upgraded", "FAILED, rolled back", "upgraded"]);
  });
});

describe("flags, refused before any server is contacted", () => {
  const run = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
    new Promise((resolve) => {
      execFile(process.execPath, ["scripts/upgrade.ts", ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 }, (error, _stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stderr }),
      );
    });
  test.each<[string[], string, string | RegExp]>([
    [[], "which environments?", "npx zx scripts/upgrade.ts <stack>… | --all (see --help)"],
    [["--all", "example-prod"], "--all and a stack (example-prod) together: --all already upgrades every environment", "drop --all, or the stacks"],
    [["example-prod", "--concurrency", "0"], '--concurrency "0" is not a whole number from 1 to 16', "pass e.g. --concurrency 5"],
    [["example-prod", "--concurrency", "two"], '--concurrency "two" is not a whole number from 1 to 16', "pass e.g. --concurrency 5"],
    [["example-prod", "--health-seconds", "0"], '--health-seconds "0" is not a whole number from 1 to 3600', "pass e.g. --health-seconds 5"],
    [["example-prod", "--keep-going"], "--keep-going is used with several stacks or --all; here it would be ignored", "drop --keep-going, or add what it goes with (see --help)"],
    [["--all", "--host", "192.0.2.1"], "--host names one server, and this upgrades all environments", "drop --host, or upgrade one stack: npx zx scripts/upgrade.ts <stack> --host …"],
    [["example-prod", "--yes"], "--yes: upgrade.ts asks nothing (it rolls back by itself)", "drop --yes"],
    [["example-prod", "--outputs-dir", "/nonexistent-dir"], '--outputs-dir "/nonexistent-dir" is not a directory', "pass the directory that holds the <stack>.json outputs files"],
    [["example-prod", "--concurency", "2"], "unknown option --concurency", "see --help"],
    [["nosuch-prod"], 'no client environment named "nosuch-prod"', /^use one of: .*\bexample-prod, example-staging \(stacks come from app\/clients\/\*\.ts\)$/],
  ])("%j", async (args, error, fix) => {
    const { code, stderr } = await run(args);
    expect({ code, error: /^error: (.*)$/m.exec(stderr)?.[1], fix: /^fix: {3}(.*)$/m.exec(stderr)?.[1] }).toEqual({ code: 1, error, fix: typeof fix === "string" ? fix : expect.stringMatching(fix) });
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});
