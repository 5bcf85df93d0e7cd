/**
 * scripts/upgrade.ts against a booted lab server (issue 13 point 1). The server boots with an older Deno pin
 * (2.9.5, from a mirror that serves that record beside the kit's pins) and the kit's Litestream; the script runs
 * as an operator runs it (tsx, --host/--identity/--outputs/--render-overrides/--clients-dir) under steady writes
 * through Caddy:
 *   - --dry-run: deno 2.9.5 → the kit's pin, Litestream unchanged, kit.env among the files that differ; nothing
 *     changes;
 *   - the mirror serves the new Deno tampered: the upgrade fails its sha256 check and goes back; the old Deno
 *     still runs, kit.env still pins it, the app serves, no request failed;
 *   - a failure after the swap, the push and the app's move (the watcher cannot prove replication): the previous
 *     Deno, the saved files and the old slot come back, under load, with no failed request;
 *   - the genuine tarball: upgraded under load — `deno --version` is the pin, the previous binary is kept as
 *     deno.kit-previous, the app runs on its other slot, 0 failed requests, 0 lost rows (every acked row in the
 *     database and in a restore of the replica). The figures are printed.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Artifact, DENO, LITESTREAM } from "../../cloud-init/artifacts.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { bootKitServer, createKitLab, type KitLab, type KitServer, labEnvironment, labRenderOverrides, printTimings, waitForBootstrap, writeLabClientsDir } from "../../lab/kit-lab.ts";
import { type ArtifactMirror, log, REPO_ROOT, run, startArtifactMirror, trustLabCa } from "../../lab/harness/index.ts";
import { restoredIds, steadyWrites } from "./boot-checks.ts";

const STACK = "example-staging";
/** The pin before the kit's: `npm pack @deno/linux-x64-glibc@2.9.5; sha256sum *.tgz`. */
const OLD_DENO: Artifact = {
  ...DENO,
  version: "2.9.5",
  url: "https://registry.npmjs.org/@deno/linux-x64-glibc/-/linux-x64-glibc-2.9.5.tgz",
  sha256: "a6a758a7776cc9b405c267902dae9cef8426239dd656bb767611c24c7ab75222",
};

let lab: KitLab;
let server: KitServer;
let mirror: ArtifactMirror;
let dir: string;
let clientsDir: string;

const root = async (command: string) => (await server.machine.exec(command)).stdout.trim();
const denoVersion = () => root(`${DENO.installPath} -V`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs scripts/upgrade.ts as an operator would, pointed at the booted server (flags as in ops.e2e). */
async function upgrade(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string; seconds: number }> {
  const flags = {
    host: server.machine.address,
    identity: lab.sshKey.privateKeyPath,
    "known-hosts": lab.knownHostsFile,
    outputs: join(dir, "outputs.json"),
    "s3-endpoint": lab.s3.endpoint,
    "clients-dir": clientsDir,
    "render-overrides": join(dir, "overrides.json"),
  };
  const argv = [join(REPO_ROOT, "node_modules", ".bin", "tsx"), join("scripts", "upgrade.ts"), STACK, ...args, ...Object.entries(flags).flatMap(([flag, value]) => [`--${flag}`, value])];
  const started = Date.now();
  const result = await run(argv, { cwd: REPO_ROOT, env: { ...process.env, TF_VAR_secret_SESSION_SECRET: "e2e-session_secret", ...trustLabCa(lab.s3.caFile) }, timeoutMs: 5 * 60_000, allowFailure: true });
  log(`$ tsx scripts/upgrade.ts ${STACK} ${args.join(" ")} -> exit ${result.code}\n${result.stderr}${result.stdout}`);
  return { code: result.code, stdout: result.stdout, stderr: result.stderr, seconds: (Date.now() - started) / 1000 };
}

beforeAll(async () => {
  lab = await createKitLab();
  // A mirror of its own: the kit's pins plus the older Deno record.
  mirror = await startArtifactMirror(lab.teardown, { host: lab.network.hostAddress, extra: [OLD_DENO] });
  dir = mkdtempSync(join(lab.teardown.workDir, "upgrade-"));
  const env = labEnvironment(lab, STACK);
  clientsDir = writeLabClientsDir(lab, join(dir, "clients"));
  server = await bootKitServer(lab, {
    name: "upgrade",
    env,
    overrides: { artifacts: { deno: { url: mirror.urlFor(OLD_DENO), sha256: OLD_DENO.sha256, version: OLD_DENO.version }, litestream: { url: mirror.urlFor(LITESTREAM) } } },
  });
  writeFileSync(
    join(dir, "outputs.json"),
    JSON.stringify({ [STACK]: { ipv4: server.machine.address, bucket: env.names.bucket, region: lab.s3.region, access_key_id: lab.s3.accessKeyId, secret_access_key: lab.s3.secretAccessKey } }),
  );
  // What the kit ships now, from the same mirror.
  writeFileSync(join(dir, "overrides.json"), JSON.stringify({ ...labRenderOverrides(lab), artifacts: mirror.artifactOverrides() }));
  const boot = await waitForBootstrap(server);
  expect(boot.status).toBe("done");
  lab.timings.push(`boot (Deno ${OLD_DENO.version}) -> cloud-init done: ${(boot.bootMs / 1000).toFixed(1)} s`);
});
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "upgrade");
});

test("the server runs the older pin; --dry-run shows deno from → to, Litestream unchanged, the files that differ, and changes nothing", async () => {
  expect(await denoVersion()).toBe(`deno ${OLD_DENO.version}`);
  const dry = await upgrade(["--dry-run"]);
  expect(dry.code).toBe(0);
  expect(dry.stderr).toContain(`  deno ${OLD_DENO.version} → ${DENO.version}`);
  expect(dry.stderr).toContain(`  litestream ${LITESTREAM.version} (unchanged)`);
  expect(dry.stderr).toContain(`    ${LAYOUT.kitEnvFile}`);
  expect(dry.stderr).toContain("app: restarted blue/green on the other slot (deno changes)");
  expect(dry.stdout).toMatch(new RegExp(`${STACK}\\s+deno ${OLD_DENO.version.replace(/\./g, "\\.")} → ${DENO.version.replace(/\./g, "\\.")}, litestream ${LITESTREAM.version.replace(/\./g, "\\.")}, \\d+ files?\\s+would upgrade \\(dry run\\)`));
  expect(await denoVersion()).toBe(`deno ${OLD_DENO.version}`);
  expect(await root(`grep ^DENO_VERSION= ${LAYOUT.kitEnvFile}`)).toBe(`DENO_VERSION=${OLD_DENO.version}`);
});

test("a tampered new Deno: the sha256 check fails, the upgrade goes back; the old Deno runs, the app serves, no request failed", async () => {
  mirror.setTampered("deno", true);
  const load = steadyWrites(server);
  await sleep(1000);
  const result = await upgrade([]);
  await sleep(1000);
  const { acked, failures } = await load.stop();
  mirror.setTampered("deno", false);
  log(`tampered upgrade: exit ${result.code} after ${result.seconds.toFixed(1)} s; ${acked.length} writes acked, ${failures.length} failed`);
  lab.timings.push(`tampered Deno: failed and rolled back in ${result.seconds.toFixed(1)} s; ${acked.length + failures.length} requests, ${failures.length} failed`);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(`kit: sha256 mismatch for deno ${DENO.version}`);
  expect(result.stderr).toMatch(/upgrade of example-staging failed and was rolled back/);
  expect(result.stdout).toMatch(/FAILED, rolled back/);
  expect(await denoVersion()).toBe(`deno ${OLD_DENO.version}`);
  expect(await root(`grep ^DENO_VERSION= ${LAYOUT.kitEnvFile}`)).toBe(`DENO_VERSION=${OLD_DENO.version}`);
  expect(await root(`ls -a ${LAYOUT.binDir} | grep -c kit-new || true`)).toBe("0");
  expect(await root(`test -e ${LAYOUT.deployLock} && echo held || echo free`)).toBe("free");
  expect((await server.http("/healthz")).status).toBe(200);
  expect(failures).toEqual([]);
  expect(acked.length).toBeGreaterThan(10);
});

test("a failure after everything moved (the watcher cannot prove replication): binaries, files and the app go back, under load, no request failed", async () => {
  const port = server.env.app.port;
  // The watcher broken for this run only (a runtime drop-in: /run is not the kit's, the push leaves it).
  const dropIn = `/run/systemd/system/${LAYOUT.units.watch}.d`;
  await root(`mkdir -p ${dropIn} && printf '[Service]\\nExecStart=\\nExecStart=/bin/false\\n' >${dropIn}/e2e-broken.conf && systemctl daemon-reload`);
  const load = steadyWrites(server);
  await sleep(1000);
  const result = await upgrade(["--skip-os-updates"]);
  await sleep(1000);
  const { acked, failures } = await load.stop();
  await root(`rm -r ${dropIn} && systemctl daemon-reload`);
  const figure = `failure after the swap: rolled back in ${result.seconds.toFixed(1)} s (whole run); ${acked.length + failures.length} requests, ${failures.length} failed`;
  log(figure);
  lab.timings.push(figure);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain("kit: the watcher wrote no verdict since the upgrade's changes");
  for (const note of ["rolled back: deno is the previous binary again", `rolled back: app@${port} runs`, `rolled back: the switch leads to 127.0.0.1:${port} again`, `rolled back: stopped app@${port + 1}`]) expect(result.stderr).toContain(note);
  expect(result.stderr).toMatch(/rolled back: \d+ server files put back from \/var\/lib\/kit\/upgrade\//);
  expect(result.stdout).toMatch(/FAILED, rolled back/);
  expect(await denoVersion()).toBe(`deno ${OLD_DENO.version}`);
  expect(await root(`grep ^DENO_VERSION= ${LAYOUT.kitEnvFile}`)).toBe(`DENO_VERSION=${OLD_DENO.version}`);
  expect(await root(`systemctl is-active app@${port}.service`)).toBe("active");
  expect(await root(`systemctl is-active app@${port + 1}.service || true`)).toBe("inactive");
  expect((await server.http("/healthz")).status).toBe(200);
  const ids = new Set((await root(`sqlite3 -readonly ${LAYOUT.dbFile} 'SELECT id FROM rows'`)).split("\n").map(Number));
  expect(acked.filter(({ id }) => !ids.has(id))).toEqual([]);
  expect(failures).toEqual([]);
});

test("the genuine tarball, under steady writes: upgraded, the app on its other slot with the new Deno, 0 failed requests, 0 lost rows", async () => {
  const port = server.env.app.port;
  const activeBefore = Number(await root(`systemctl is-active --quiet app@${port}.service && echo ${port} || echo ${port + 1}`));
  const load = steadyWrites(server);
  await sleep(1000);
  // The kit's part alone (OS updates: the next test), so that its wall time is what is measured here.
  const result = await upgrade(["--skip-os-updates"]);
  await sleep(1000);
  const { acked, failures } = await load.stop();
  expect(result.code).toBe(0);
  expect(await denoVersion()).toBe(`deno ${DENO.version}`);
  expect(await root(`${DENO.installPath}.kit-previous -V`)).toBe(`deno ${OLD_DENO.version}`);
  expect(await root(`grep ^DENO_VERSION= ${LAYOUT.kitEnvFile}`)).toBe(`DENO_VERSION=${DENO.version}`);
  expect(await root(`${LITESTREAM.installPath} version`)).toBe(`v${LITESTREAM.version}`);
  // Blue/green: the other slot serves now, started on the new binary; the old one is stopped.
  const activeAfter = activeBefore === port ? port + 1 : port;
  expect(await root(`systemctl is-active app@${activeAfter}.service`)).toBe("active");
  expect(await root(`systemctl is-active app@${activeBefore}.service || true`)).toBe("inactive");
  const pid = await root(`systemctl show -p MainPID --value app@${activeAfter}.service`);
  expect(await root(`readlink /proc/${pid}/exe`)).toBe(DENO.installPath);
  expect(result.stderr).toMatch(/kit: replication current: \d+ s behind/);
  expect(result.stdout).toMatch(new RegExp(`${STACK}\\s+deno ${OLD_DENO.version.replace(/\./g, "\\.")} → .*upgraded`));
  // A second run finds nothing of the kit's to change.
  const again = await upgrade(["--dry-run", "--skip-os-updates"]);
  expect(again.stderr).toContain(`  deno ${DENO.version} (unchanged)`);
  expect(again.stderr).toContain("  server files: all as the kit renders them");

  // Every acknowledged row is in the database, and in a restore of the replica taken after a later write.
  const ids = new Set((await root(`sqlite3 -readonly ${LAYOUT.dbFile} 'SELECT id FROM rows'`)).split("\n").map(Number));
  const lostLive = acked.filter(({ id }) => !ids.has(id));
  const sentinel = (await (await server.http("/rows", { method: "POST" })).json()) as { id: number };
  let replica: number[] = [];
  for (let attempt = 0; attempt < 20 && !replica.includes(sentinel.id); attempt++) {
    if (attempt) await sleep(1000);
    replica = await restoredIds(lab, server, "after-upgrade");
  }
  const lostReplica = acked.filter(({ id }) => !replica.includes(id));
  const figure =
    `upgrade under load: deno ${OLD_DENO.version} → ${DENO.version}, wall time ${result.seconds.toFixed(1)} s; ` +
    `${acked.length + failures.length} requests, ${failures.length} failed; ${acked.length} rows acked, ${lostLive.length} lost in the database, ${lostReplica.length} lost in the replica`;
  log(figure);
  lab.timings.push(figure);
  expect(failures).toEqual([]);
  expect(lostLive).toEqual([]);
  expect(replica).toContain(sentinel.id);
  expect(lostReplica).toEqual([]);
});

test("OS security updates, under steady writes: unattended-upgrade runs for real and the run says what it installed (or that there was nothing to do); nothing of the kit's changes, no request fails", async () => {
  const load = steadyWrites(server);
  const result = await upgrade([]);
  const { acked, failures } = await load.stop();
  expect(result.code).toBe(0);
  const said = /kit: OS updates: (nothing to do|(\d+) packages upgraded)/.exec(result.stderr);
  expect(said).not.toBeNull();
  // What apt now has pending from the lists it refreshed: nothing unattended-upgrade would install.
  const pending = await root("apt-get -s -o Debug::NoLocking=1 upgrade | grep '^Inst ' | grep -ci security || true");
  const figure = `OS updates under load: ${said![1]} in ${result.seconds.toFixed(1)} s (whole run); ${acked.length + failures.length} requests, ${failures.length} failed; security updates pending after: ${pending}`;
  log(figure);
  lab.timings.push(figure);
  expect(result.stdout).toMatch(new RegExp(`${STACK}\\s+deno ${DENO.version.replace(/\./g, "\\.")}, litestream [^ ]+\\s+unchanged`));
  expect(failures).toEqual([]);
});
