/**
 * Plans are the steps: what `--dry-run` lists is what a real run executes, and a dry run changes nothing on
 * the server. The scripts' own functions run over the real SSH runner (loopback sshd) against a LocalKit
 * server (real sqlite3, Litestream 0.3.13, the lab S3 with the environment's own key): the dry runs of deploy, --config-only, --rollback,
 * restore and drill leave the kit's tree byte-identical; a real restore executes exactly the listed steps.
 *
 * Deploy and drill need the server's systemd (app slots, Caddy, restore-drill.service), which this machine
 * does not run: their real runs are compared with their dry runs in test/e2e/ops.e2e.test.ts, against a
 * booted server.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { executedTitles, plannedTitles } from "../../scripts/lib/cli.ts";
import { deploy, pushConfiguration, rollbackOne } from "../../scripts/lib/deploy-run.ts";
import { drillRemote } from "../../scripts/lib/drill-run.ts";
import { restoreRemote } from "../../scripts/lib/restore-run.ts";
import type { ServerPaths } from "../../scripts/lib/server-steps.ts";
import { SshRunner } from "../../scripts/lib/ssh.ts";
import type { Target } from "../../scripts/lib/target.ts";
import { labAccess, LocalKit, localEnvironment } from "../../lab/local/local-kit.ts";
import { freePort, startSshd, type TestSshd } from "../../lab/local/sshd.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";

const plansEnv = localEnvironment("plans");
/** The sshd session's PATH is not this shell's: name python by its full path. */
const PYTHON = execFileSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).trim();
let lab: LabS3Process;
let sshd: TestSshd;
let kit: LocalKit;
let ssh: SshRunner;
let paths: ServerPaths;
let target: Target;
/** Outside the kit's tree: the SSH client's state and the stand-in service manager. */
let outside: string;
let appPort: number;

/** Every entry under `dir`: type, mode, and the sha256 of a file's bytes (a link's target). */
function tree(dir: string, prefix = ""): Record<string, string> {
  const entries: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const rel = `${prefix}${name}`;
    const stat = lstatSync(path);
    const mode = (stat.mode & 0o7777).toString(8);
    if (stat.isSymbolicLink()) entries[rel] = `link ${readlinkSync(path)}`;
    else if (stat.isDirectory()) Object.assign(entries, { [`${rel}/`]: `dir ${mode}` }, tree(path, `${rel}/`));
    else entries[rel] = `file ${mode} ${createHash("sha256").update(readFileSync(path)).digest("hex")}`;
  }
  return entries;
}

/** Runs `body` with stderr (the scripts' progress lines) captured instead of printed. */
async function captured<T>(body: () => Promise<T>): Promise<{ value: T; stderr: string }> {
  let stderr = "";
  const spy = jest.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    return { value: await body(), stderr };
  } finally {
    spy.mockRestore();
  }
}

/**
 * This machine runs no systemd, so the kit's PATH gets a systemctl that runs the two services a restore
 * stops and starts as processes: Litestream (`litestream replicate`, the real one, with its unit's
 * EnvironmentFile) and an app slot (a static server answering the health path, which is all
 * wait-healthy.sh asks of it). Anything else is refused.
 */
function serviceManager(bin: string, run: string, www: string): void {
  mkdirSync(bin, { recursive: true });
  mkdirSync(run, { recursive: true });
  writeFileSync(join(www, "healthz"), "ok\n");
  writeFileSync(
    join(bin, "systemctl"),
    `#!/bin/bash
set -euo pipefail
cmd=$1; shift
for unit in "$@"; do
  pidfile=${run}/$unit.pid
  case $cmd in
    stop)
      if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        rm -f "$pidfile"
      fi ;;
    start)
      case $unit in
        # As the unit does: its EnvironmentFile (the key pair), then the replicator.
        litestream.service) (set -a; . ${kit.path("s3CredentialsFile")}; set +a; exec setsid litestream replicate -config ${kit.path("litestreamConfig")}) >/dev/null 2>&1 </dev/null & ;;
        app@*.service) port=\${unit#app@}; setsid ${PYTHON} -m http.server "\${port%.service}" --bind 127.0.0.1 --directory ${www} >/dev/null 2>&1 </dev/null & ;;
        *) echo "systemctl (local kit): no unit $unit" >&2; exit 5 ;;
      esac
      echo $! >"$pidfile" ;;
    *) echo "systemctl (local kit): $cmd is not supported here" >&2; exit 1 ;;
  esac
done
`,
  );
  chmodSync(join(bin, "systemctl"), 0o755);
}
const systemctl = (...args: string[]) => kit.bash(`. ${kit.kitEnvFile}\nsystemctl ${args.join(" ")}`);

beforeAll(async () => {
  [lab, sshd, appPort] = await Promise.all([startKitLabS3Process([plansEnv]), startSshd(), freePort()]);
  kit = new LocalKit(labAccess(lab, plansEnv), plansEnv, { appPort });
  outside = mkdtempSync(join(tmpdir(), "kit-plans-"));
  serviceManager(join(outside, "bin"), join(outside, "run"), mkdtempSync(join(outside, "www-")));
  writeFileSync(kit.kitEnvFile, `${readFileSync(kit.kitEnvFile, "utf8")}PATH=${join(outside, "bin")}:$PATH\n`);
  paths = { kitEnvFile: kit.kitEnvFile, libDir: kit.path("libDir"), caddyfile: join(kit.root, "Caddyfile"), deployLock: join(kit.root, "run", "deploy.lock") };
  writeFileSync(paths.caddyfile, `:80 {\n\treverse_proxy 127.0.0.1:${appPort}\n}\n`);
  writeFileSync(kit.path("bootstrapDoneFile"), "/srv/app/releases/first\n");
  // Two releases, the newer one live: what --rollback needs to plan.
  for (const release of ["20260101T000000Z-aaa", "20260102T000000Z-bbb"]) mkdirSync(join(kit.path("releasesDir"), release));
  symlinkSync(join(kit.path("releasesDir"), "20260102T000000Z-bbb"), join(kit.path("slotsDir"), String(appPort)));
  kit.sql(kit.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO rows(body) VALUES ('a'),('b'),('c');");
  ssh = new SshRunner({ host: "127.0.0.1", port: sshd.port, user: sshd.user, identity: sshd.identity }, { knownHostsFile: join(outside, "known_hosts"), controlDir: join(outside, "ctl") });
  target = {
    env: { ...plansEnv, app: { ...plansEnv.app, port: appPort } },
    outputsFile: join(outside, "outputs.json"),
    ssh: ssh.target,
    sshSettings: ssh.settings,
    bucket: plansEnv.names.bucket,
    region: plansEnv.backups.region,
    replicaPath: kit.path("litestreamPrefix"),
    s3Endpoint: lab.endpoint,
    overrides: {},
  };
});
afterAll(async () => {
  if (kit) await systemctl("stop", "litestream.service", `app@${appPort}.service`, `app@${appPort + 1}.service`);
  await ssh?.close();
  await kit?.cleanup();
  await Promise.all([lab?.stop(), sshd?.stop()]);
  if (outside) rmSync(outside, { recursive: true, force: true });
});

describe("a dry run changes nothing on the server: no lock, no scratch restore, no file", () => {
  const untouched = async (run: () => Promise<unknown>) => {
    const before = tree(kit.root);
    const { stderr } = await captured(run);
    expect(tree(kit.root)).toEqual(before);
    expect(existsSync(paths.deployLock)).toBe(false);
    expect(readdirSync(kit.path("scratchDir"))).toEqual([]);
    return stderr;
  };

  test("deploy: the whole plan is listed, only the inspection ran", async () => {
    const stderr = await untouched(() => deploy({ target, runner: ssh, paths, ref: "v1.4.0", dryRun: true }));
    expect(plannedTitles(stderr)).toEqual([
      `inspect ${ssh.destination}`,
      "take the deploy lock",
      expect.stringMatching(/^push configuration \(\d+ files\)$/),
      "grow the volume's filesystem if the volume grew (online)",
      "fetch the app at v1.4.0",
      "snapshot the database before migrating",
      "read the schema version",
      "migrate (deno task migrate)",
      "read the schema version again (did the migration change it?)",
      `start app@${appPort + 1}.service and health-check it`,
      `switch 127.0.0.1:${LAYOUT.ports.upstream} to 127.0.0.1:${appPort + 1}`,
      `stop app@${appPort}.service`,
      "keep the newest 5 releases",
      "release the deploy lock",
    ]);
    expect(executedTitles(stderr)).toEqual([`inspect ${ssh.destination}`]);
    expect(stderr).toMatch(/if step 8–12 fails: back to \S+20260102T000000Z-bbb on \d+, and the database to the snapshot/);
  });

  test("deploy --config-only and --rollback", async () => {
    const config = await untouched(() => pushConfiguration({ target, runner: ssh, paths, dryRun: true }));
    expect(plannedTitles(config)).toEqual([`inspect ${ssh.destination}`, "take the deploy lock", expect.stringMatching(/^push configuration/), "grow the volume's filesystem if the volume grew (online)", "release the deploy lock"]);
    const rollback = await untouched(() => rollbackOne({ target, runner: ssh, paths, dryRun: true }));
    expect(plannedTitles(rollback)).toEqual([
      `inspect ${ssh.destination}`,
      "take the deploy lock",
      `start app@${appPort + 1}.service and health-check it`,
      `switch 127.0.0.1:${LAYOUT.ports.upstream} to 127.0.0.1:${appPort + 1}`,
      `stop app@${appPort}.service`,
      "release the deploy lock",
    ]);
  });

  test("restore: no scratch restore, the swap's input named by the step that makes it", async () => {
    const stderr = await untouched(() => restoreRemote({ target, runner: ssh, from: { kind: "replica" }, yes: true, paths, dryRun: true }));
    expect(plannedTitles(stderr)).toEqual([
      `inspect ${ssh.destination}`,
      "take the deploy lock",
      "restore the latest S3 replica into scratch, check it (PRAGMA integrity_check, row counts beside live)",
      "replace the live database (--yes: without asking)",
      "replace the live database with <the restored copy from step 3>",
      "remove the scratch copy",
      "release the deploy lock",
    ]);
  });

  test("drill: nothing runs, no report is written", async () => {
    const report = join(outside, "drill-report.json");
    const stderr = await untouched(() => drillRemote(ssh, "example-prod", { reportFile: report, dryRun: true }));
    expect(plannedTitles(stderr)).toEqual([expect.stringMatching(/^run restore-drill\.service on /), expect.stringMatching(/^keep the report in .*drill-report\.json/)]);
    expect(executedTitles(stderr)).toEqual([]);
    expect(existsSync(report)).toBe(false);
  });
});

describe("a real run executes the steps its dry run listed", () => {
  test("restore --latest --yes: the same titles, in the same order; the database is the replica's", async () => {
    await systemctl("start", "litestream.service", `app@${appPort}.service`);
    kit.sql(kit.dbFile, "INSERT INTO rows(body) VALUES ('d')");
    // Litestream's 1 s sync interval: wait until the replica restores the newest row.
    await new Promise((r) => setTimeout(r, 2500));
    const from = { kind: "replica" } as const;
    const dry = await captured(() => restoreRemote({ target, runner: ssh, from, yes: true, paths, dryRun: true }));
    const real = await captured(() => restoreRemote({ target, runner: ssh, from, yes: true, paths, healthSeconds: 20 }));
    expect(real.value.replaced).toBe(true);
    expect(executedTitles(real.stderr)).toEqual(plannedTitles(dry.stderr));
    expect(executedTitles(real.stderr)).toHaveLength(7);
    expect(kit.sql(kit.dbFile, "SELECT group_concat(body, '') FROM rows")).toBe("abcd");
    expect(existsSync(join(real.value.aside!, "app.sqlite3"))).toBe(true);
    expect(readdirSync(kit.path("scratchDir"))).toEqual([]);
    expect(existsSync(paths.deployLock)).toBe(false);
  });

  test("restore declined (no terminal, no --yes): the listed steps up to the question, then the cleanups", async () => {
    const from = { kind: "replica" } as const;
    const dry = await captured(() => restoreRemote({ target, runner: ssh, from, paths, dryRun: true }));
    const live = tree(join(kit.root, "data", "db"));
    const real = await captured(() => restoreRemote({ target, runner: ssh, from, paths }));
    expect(real.value.replaced).toBe(false);
    const planned = plannedTitles(dry.stderr);
    expect(planned[3]).toBe("ask before replacing the live database");
    expect(executedTitles(real.stderr)).toEqual([...planned.slice(0, 4), ...planned.slice(5)]);
    expect(real.stderr).toContain("nothing was changed.");
    expect(readdirSync(kit.path("scratchDir"))).toEqual([]);
    expect(Object.keys(tree(join(kit.root, "data", "db")))).toEqual(Object.keys(live));
  });
});
