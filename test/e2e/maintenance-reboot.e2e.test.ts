/**
 * The maintenance window (issue 13 point 4) on a booted lab server: kit-maintenance-reboot.timer is scheduled at
 * maintenance.window; with no update needing a reboot its service does nothing; with one (Debian's
 * /run/reboot-required, as unattended-upgrades' kernel hook leaves it) it waits while a deploy holds the lock,
 * then takes the lock and reboots the server — for real: the container's systemd reboots and the harness boots
 * the same disk again, as a droplet's hypervisor does. Under steady writes through Caddy throughout: afterwards
 * the app, Litestream and Caddy run again, db-restore.service found the database and restored nothing, no
 * acknowledged row is missing from the database nor from the replica in the lab S3. The downtime is printed.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { bootKitServer, createKitLab, type KitLab, type KitServer, labEnvironment, printTimings, waitForBootstrap } from "../../lab/kit-lab.ts";
import { log, restoreReplica, run } from "../../lab/harness/index.ts";
import { steadyWrites } from "./boot-checks.ts";

const STACK = "example-staging";
let lab: KitLab;
let server: KitServer;

const root = async (command: string) => (await server.machine.exec(command)).stdout.trim();
const bootId = () => root("cat /proc/sys/kernel/random/boot_id");
const journal = (unit: string, extra = "") => root(`journalctl -u ${unit} ${extra} --no-pager -o cat`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  lab = await createKitLab();
  server = await bootKitServer(lab, { name: "reboot", env: labEnvironment(lab, STACK) });
  const boot = await waitForBootstrap(server);
  expect(boot.status).toBe("done");
});
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "maintenance-reboot");
});

test("the window's timer is enabled at the client file's window; with no update needing a reboot, the service leaves the server running", async () => {
  expect(await root(`systemctl is-enabled ${LAYOUT.units.maintenanceRebootTimer}`)).toBe("enabled");
  expect(await root(`systemctl is-active ${LAYOUT.units.maintenanceRebootTimer}`)).toBe("active");
  expect(await root(`systemctl show -p TimersCalendar --value ${LAYOUT.units.maintenanceRebootTimer}`)).toContain("OnCalendar=Sun *-*-* 04:00:00");
  const before = await bootId();
  await root(`systemctl start ${LAYOUT.units.maintenanceReboot}`);
  expect(await journal(LAYOUT.units.maintenanceReboot)).toContain("kit: maintenance window: no update needs a reboot");
  expect(await bootId()).toBe(before);
});

test("an update requiring a reboot, under steady writes: it waits for the deploy lock, reboots, and everything comes back; no acked row lost, no restore", async () => {
  const firstBoot = await bootId();
  const port = server.env.app.port;
  await root(`printf 'linux-image-6.1.0-99-amd64\\n' >${LAYOUT.rebootRequiredFile}.pkgs && touch ${LAYOUT.rebootRequiredFile}`);
  await root(`mkdir -p ${LAYOUT.deployLock} && echo 'e2e: a deploy in progress' >${LAYOUT.deployLock}/owner`);
  const load = steadyWrites(server);
  await sleep(2000);

  await root(`systemctl start --no-block ${LAYOUT.units.maintenanceReboot}`);
  // While the lock is held it waits, and says for what.
  await server.machine.waitFor(async () => (await journal(LAYOUT.units.maintenanceReboot, "-b")).includes("waiting for a deploy (/run/kit/deploy.lock: e2e: a deploy in progress)"), {
    timeoutMs: 30_000,
    what: "the maintenance reboot to wait for the deploy lock",
  });
  await sleep(12_000);
  expect(await bootId()).toBe(firstBoot);
  expect(load.acked.length).toBeGreaterThan(20);

  // The deploy ends: within one poll (10 s) it takes the lock and reboots.
  const released = Date.now();
  await root(`rm -r ${LAYOUT.deployLock}`);
  let said = "";
  while (server.machine.running) {
    const seen = await server.machine.exec(["journalctl", "-b", "-u", LAYOUT.units.maintenanceReboot, "--no-pager", "-o", "cat"], { allowFailure: true, timeoutMs: 5000 }).catch(() => undefined);
    if (seen?.stdout.includes("rebooting for")) said = seen.stdout;
    if (Date.now() - released > 180_000) throw new Error("the server did not reboot within 180 s of the deploy lock's release");
    await sleep(200);
  }
  const down = Date.now();
  expect(said).toContain("kit: maintenance window: rebooting for: linux-image-6.1.0-99-amd64");
  // The container's systemd rebooted: the harness boots the same disk again, as the hypervisor would.
  await server.machine.start();
  await server.machine.waitFor(async () => (await server.http(server.env.app.healthPath).catch(() => undefined))?.status === 200, {
    timeoutMs: 5 * 60_000,
    what: "the app to answer through Caddy after the reboot",
    intervalMs: 250,
  });
  await sleep(3000);
  const { acked, failures } = await load.stop();

  // A new boot, with the volume, Litestream, the app and Caddy running; Debian's mark and the lock are gone (tmpfs).
  expect(await bootId()).not.toBe(firstBoot);
  for (const unit of [LAYOUT.units.caddy, LAYOUT.units.litestream, `app@${port}.service`, LAYOUT.units.restore]) {
    expect({ unit, state: await root(`systemctl is-active ${unit}`) }).toEqual({ unit, state: "active" });
  }
  expect(await root(`test -e ${LAYOUT.rebootRequiredFile} && echo present || echo gone`)).toBe("gone");
  expect(await root(`test -e ${LAYOUT.deployLock} && echo held || echo free`)).toBe("free");
  // restore-on-boot.sh found the database on the volume and restored nothing.
  const restore = await journal(LAYOUT.units.restore, "-b");
  expect(restore).toContain(`kit: database present at ${LAYOUT.dbFile}; nothing to restore`);
  expect(restore).not.toMatch(/restored|restore attempt/);

  // Every acknowledged row is in the database.
  const ids = new Set((await root(`sqlite3 -readonly ${LAYOUT.dbFile} 'SELECT id FROM rows'`)).split("\n").map(Number));
  const lost = acked.filter(({ id }) => !ids.has(id));
  expect(lost).toEqual([]);

  // ... and in the replica: Litestream carried on after the reboot. A sentinel written now, once in a restore,
  // means the bucket holds everything committed before it (Litestream ships the WAL in order).
  const sentinel = await server.http("/rows", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ value: "after-reboot" }) });
  expect(sentinel.status).toBe(201);
  const out = join(lab.teardown.workDir, "replica-after-reboot.sqlite3");
  let replicaIds = new Set<number>();
  for (let attempt = 1; ; attempt++) {
    for (const suffix of ["", "-wal", "-shm", ".tmp-wal", ".tmp-shm"]) rmSync(`${out}${suffix}`, { force: true });
    await restoreReplica(lab.teardown, out, { s3: lab.s3.forStack(STACK), replicaPath: `${server.env.names.bucketPrefix}/${LAYOUT.bucket.litestream}` });
    const held = (await run(["sqlite3", "-readonly", out, "SELECT count(*) FROM rows WHERE value = 'after-reboot'"])).stdout.trim();
    if (held === "1") {
      replicaIds = new Set((await run(["sqlite3", "-readonly", out, "SELECT id FROM rows"])).stdout.trim().split("\n").map(Number));
      break;
    }
    if (attempt >= 20) throw new Error(`the replica never held the sentinel written after the reboot (${attempt} restores)`);
    await sleep(1000);
  }
  expect(acked.filter(({ id }) => !replicaIds.has(id))).toEqual([]);

  // Downtime as the writers saw it: last acknowledged write before the reboot to the first one after it.
  const lastBefore = Math.max(...acked.filter((a) => a.at <= down).map((a) => a.at));
  const firstAfter = Math.min(...acked.filter((a) => a.at > down).map((a) => a.at));
  const failed = failures.filter((f) => f.at > lastBefore && f.at < firstAfter).length;
  const figure =
    `maintenance reboot under load: downtime ${((firstAfter - lastBefore) / 1000).toFixed(1)} s (last acked write before → first after), ` +
    `lock released → power off ${((down - released) / 1000).toFixed(1)} s, power off → app answering ${((firstAfter - down) / 1000).toFixed(1)} s; ` +
    `${acked.length} writes acked, 0 lost (database and replica); ${failures.length} failed, all while it was down (${failed})`;
  log(figure);
  lab.timings.push(figure);
  // Requests fail only while the server is down, never around it.
  expect(failures.length).toBe(failed);
});
