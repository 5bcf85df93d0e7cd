/**
 * Boot faults (issue 3, point 6): a server booted from the kit's user data when something is wrong around
 * it must stop before it can do harm, say so where an operator looks (`systemctl --failed`, cloud-init's
 * log) and name the fix. (S3 unreachable at boot is in disaster-recovery.e2e.test.ts, where the data to
 * recover exists.)
 */
import { DENO, LITESTREAM } from "../../cloud-init/artifacts.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { digitalOceanVolumeDevice } from "../../stacks/server/digitalocean.ts";
import { bootKitServer, createKitLab, type KitLab, type KitServer, labEnvironment, printTimings, waitForBootstrap } from "../../lab/kit-lab.ts";

let lab: KitLab;

beforeAll(async () => {
  lab = await createKitLab();
}, 15 * 60_000);
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "boot faults");
});

async function root(server: KitServer, command: string | readonly string[]): Promise<string> {
  return (await server.machine.exec(command)).stdout.trim();
}

async function failedUnits(server: KitServer): Promise<string[]> {
  return (await root(server, "systemctl --failed --no-legend --plain | cut -d' ' -f1")).split("\n").filter(Boolean);
}

async function unitState(server: KitServer, unit: string): Promise<string> {
  return root(server, ["systemctl", "show", "-p", "ActiveState", "--value", unit]);
}

/** Boots, waits for cloud-init, expects it to report the failed bootstrap; returns cloud-init's output log. */
async function bootFailing(server: KitServer, label: string): Promise<string> {
  const result = await waitForBootstrap(server);
  lab.timings.push(`${label}: boot -> cloud-init error ${(result.bootMs / 1000).toFixed(1)} s`);
  expect(result.status).toBe("error");
  expect(result.long).toMatch(/scripts[-_]user/);
  expect(await failedUnits(server)).toContain("kit-bootstrap.service");
  return root(server, ["cat", "/var/log/cloud-init-output.log"]);
}

test("volume not attached: the app and Litestream stay stopped, the failure names the device, nothing lands on the root disk", async () => {
  const env = labEnvironment(lab);
  const server = await bootKitServer(lab, { name: "fault-novolume", env, volume: "none" });
  const log = await bootFailing(server, "no volume");

  const device = digitalOceanVolumeDevice(env.names.volume);
  expect(log).toContain(`kit: data volume device ${device} did not appear within 20s.`);
  expect(log).toContain("kit-bootstrap: FAILED at [1/8] mounting the data volume");
  expect(log).toContain("sudo systemctl restart kit-bootstrap.service");

  for (const unit of [`app@${env.app.port}.service`, "litestream.service", "db-restore.service"]) {
    expect(await unitState(server, unit)).not.toBe("active");
  }
  expect(await root(server, ["systemctl", "is-enabled", "fallback-backup.timer"]).catch(() => "not enabled")).not.toBe("enabled");
  // Not mounted, and the mount point on the root disk holds nothing: no database, no backups, no directories.
  expect((await server.machine.exec(["mountpoint", "-q", LAYOUT.volumeMount], { allowFailure: true })).code).not.toBe(0);
  expect(await root(server, `find ${LAYOUT.volumeMount} -mindepth 1 2>/dev/null | head -n 5`)).toBe("");
  expect(await root(server, ["grep", "-c", "-F", ` ${LAYOUT.volumeMount} `, "/etc/fstab"]).catch(() => "0")).toBe("0");
  // The app's units refuse on their own too (a later boot, or a mistaken manual start).
  const manual = await server.machine.exec(["systemctl", "start", "litestream.service"], { allowFailure: true });
  expect(manual.code).not.toBe(0);
  expect(await unitState(server, "litestream.service")).not.toBe("active");
  await server.machine.discard();
}, 20 * 60_000);

test("tampered artifact: the install stops naming it, installs nothing, and the rerun the failure prints succeeds once the download is good", async () => {
  const env = labEnvironment(lab);
  lab.mirror.setTampered("deno", true);
  let server!: KitServer;
  try {
    server = await bootKitServer(lab, { name: "fault-tampered", env });
    const log = await bootFailing(server, "tampered deno");
    expect(log).toContain(`kit: sha256 mismatch for deno ${DENO.version} from `);
    expect(log).toContain(`kit:   expected ${DENO.sha256}`);
    expect(log).toContain("kit-bootstrap: FAILED at [3/8] installing deno");
    // Nothing installed, no download left behind, nothing started, no database created.
    for (const bin of [DENO.installPath, LITESTREAM.installPath]) {
      expect((await server.machine.exec(["test", "-e", bin], { allowFailure: true })).code).not.toBe(0);
    }
    expect(await root(server, "find /run/kit -name '*.tgz' 2>/dev/null")).toBe("");
    expect(await unitState(server, `app@${env.app.port}.service`)).not.toBe("active");
    expect((await server.machine.exec(["test", "-e", LAYOUT.dbFile], { allowFailure: true })).code).not.toBe(0);
  } finally {
    lab.mirror.setTampered("deno", false);
  }

  // The mirror serves the right bytes again: the one command the failure printed finishes the bootstrap.
  await server.machine.exec(["systemctl", "restart", "kit-bootstrap.service"], { timeoutMs: 10 * 60_000 });
  expect(await root(server, ["systemctl", "show", "-p", "Result", "--value", "kit-bootstrap.service"])).toBe("success");
  expect(await root(server, [DENO.installPath, "--version"])).toMatch(new RegExp(`^deno ${DENO.version.replace(/\./g, "\\.")} `));
  await server.machine.waitFor(async () => (await server.http("/healthz").catch(() => undefined))?.status === 200, {
    timeoutMs: 60_000,
    intervalMs: 500,
    what: "the server to be healthy after the rerun",
  });
  // Only cloud-init's own record of the first attempt remains (its runcmd did fail); no unit of the kit.
  expect(await failedUnits(server)).toEqual(["cloud-final.service"]);
  await server.machine.discard();
}, 20 * 60_000);
