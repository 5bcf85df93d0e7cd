/**
 * Growing a running server's data volume (issue 13, point 3): what `cdktf deploy` with a larger
 * volume.sizeGiB does to a cloud volume — the block device grows under the running server — done to a lab
 * server's loop-device volume (backing file grown, `losetup -c`), then `deploy.ts --config-only` as an
 * operator runs it. Its grow step (scripts/lib/volume-grow.ts) must grow the mounted ext4 online: the
 * filesystem is larger, the 300 MiB already on the volume is intact, and the app served every request of a
 * steady load meanwhile without restarting. A second push finds nothing to grow.
 *
 * Online growth needs CAP_SYS_RESOURCE (the kernel's ext4 resize ioctl); a droplet's root has it. A host
 * that lacks it itself (a VM that is a container, as this one on 2026-12-03) cannot give it to its machines:
 * there the same push must stop at the grow step naming the kernel's refusal, with the app still serving
 * and nothing lost — the outcome an operator meets on such a server. Which one is asserted is printed.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { bootKitServer, createKitLab, type KitLab, type KitServer, labEnvironment, labRenderOverrides, printTimings, waitForBootstrap, writeLabClientsDir } from "../../lab/kit-lab.ts";
import { log, REPO_ROOT, run } from "../../lab/harness/index.ts";
import { steadyWrites } from "./boot-checks.ts";

const STACK = "example-staging";
const MiB = 1024 * 1024;
/** Whether this host may resize a mounted ext4 at all (CAP_SYS_RESOURCE, bit 24, in its bounding set). */
const CAN_RESIZE_ONLINE = (BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))![1]}`) >> 24n) & 1n;
let lab: KitLab;
let server: KitServer;
let dir: string;

/** `deploy.ts --config-only` as an operator runs it, with the lab's facts as flags. */
function configOnly(): Promise<{ code: number; stderr: string }> {
  const argv = ["scripts/deploy.ts", STACK, "--config-only", "--host", server.machine.address, "--identity", lab.sshKey.privateKeyPath];
  argv.push("--known-hosts", lab.knownHostsFile, "--outputs", join(dir, "outputs.json"), "--s3-endpoint", lab.s3.endpoint);
  argv.push("--clients-dir", join(dir, "clients"), "--render-overrides", join(dir, "overrides.json"));
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO_ROOT, "node_modules", ".bin", "tsx"), argv, { cwd: REPO_ROOT, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      log(`$ tsx ${argv.slice(0, 3).join(" ")} -> exit ${code}\n${stderr}`);
      resolve({ code: code ?? 1, stderr });
    });
  });
}

const root = async (command: string) => (await server.machine.exec(command)).stdout.trim();
/** Bytes of the volume's device and of the filesystem mounted from it, as the server sees them. */
async function sizes(): Promise<{ device: number; filesystem: number }> {
  const device = Number(await root(`blockdev --getsize64 "$(findmnt -no SOURCE --mountpoint ${LAYOUT.volumeMount})"`));
  const filesystem = Number(await root(`df -B1 --output=size ${LAYOUT.volumeMount} | tail -n 1`));
  return { device, filesystem };
}
const appPid = () => root(`systemctl show -p MainPID --value app@${server.env.app.port}.service`);

beforeAll(async () => {
  lab = await createKitLab();
  dir = mkdtempSync(join(lab.teardown.workDir, "volume-grow-"));
  const env = labEnvironment(lab, STACK);
  writeLabClientsDir(lab, join(dir, "clients"));
  server = await bootKitServer(lab, { name: "grow", env });
  writeFileSync(join(dir, "outputs.json"), JSON.stringify({ [STACK]: { ipv4: server.machine.address, bucket: env.names.bucket, region: lab.s3.region } }));
  writeFileSync(join(dir, "overrides.json"), JSON.stringify(labRenderOverrides(lab)));
  const boot = await waitForBootstrap(server);
  expect(boot.status).toBe("done");
});
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "volume-grow");
});

test("a volume grown under the running server: the next deploy grows its filesystem online (or, without CAP_SYS_RESOURCE, stops naming the refusal), data intact, every request served", async () => {
  const volume = server.volume!;
  // Data already on the volume, beside the database: 300 MiB, hashed before and after.
  await root(`head -c 300M /dev/urandom >${LAYOUT.volumeMount}/ballast && sync`);
  const ballast = await root(`sha256sum ${LAYOUT.volumeMount}/ballast | cut -d' ' -f1`);
  const before = await sizes();
  const pid = await appPid();
  expect(before.device).toBe(1024 * MiB);

  const load = steadyWrites(server);
  // The cloud grows the attached volume (cdktf deploy with volume.sizeGiB raised): the device is larger,
  // its filesystem is not.
  await run(["truncate", "--size", "2048M", volume.image]);
  await run(["losetup", "--set-capacity", volume.device]);
  const grown = await sizes();
  expect(grown.device).toBe(2048 * MiB);
  expect(grown.filesystem).toBe(before.filesystem);

  const t = Date.now();
  const push = await configOnly();
  const pushSeconds = (Date.now() - t) / 1000;
  const { acked, failures } = await load.stop();
  // Online either way: the app never stopped, no request failed, every acknowledged row is there, the data intact.
  expect(await appPid()).toBe(pid);
  expect(failures).toEqual([]);
  expect(acked.length).toBeGreaterThan(20);
  const ids = new Set((await root(`sqlite3 -readonly ${LAYOUT.dbFile} 'SELECT id FROM rows'`)).split("\n").map(Number));
  expect(acked.filter(({ id }) => !ids.has(id))).toEqual([]);
  expect(await root(`sha256sum ${LAYOUT.volumeMount}/ballast | cut -d' ' -f1`)).toBe(ballast);
  expect(push.stderr).toMatch(/kit: the volume \S+ is 2048 MiB \(client file: \d+ GiB\), its filesystem 1024 MiB: growing it online \(resize2fs\)/);
  const after = await sizes();
  if (!CAN_RESIZE_ONLINE) {
    log("volume-grow: this host lacks CAP_SYS_RESOURCE: asserting the refusal an operator meets on such a server");
    expect(push.code).toBe(1);
    expect(push.stderr).toContain("resize2fs: Permission denied to resize filesystem");
    expect(push.stderr).toMatch(/error: step "grow the volume's filesystem if the volume grew \(online\)" failed/);
    expect(after.filesystem).toBe(before.filesystem);
    lab.timings.push(`volume grown 1024 → 2048 MiB: resize refused (no CAP_SYS_RESOURCE on this host) in ${pushSeconds.toFixed(1)} s; ${acked.length} writes during it, 0 failed`);
    return;
  }
  expect(push.code).toBe(0);
  expect(push.stderr).toMatch(/kit: \/mnt\/data grew from \d+ MiB to \d+ MiB/);
  // The filesystem fills the grown device, less ext4's own reservation (as it did before).
  expect(after.filesystem).toBeGreaterThan(before.filesystem + 1000 * MiB);
  expect(after.device - after.filesystem).toBeLessThanOrEqual(before.device - before.filesystem + 16 * MiB);
  lab.timings.push(
    `volume grown 1024 → 2048 MiB: filesystem ${Math.round(before.filesystem / MiB)} → ${Math.round(after.filesystem / MiB)} MiB ` +
      `by deploy --config-only in ${pushSeconds.toFixed(1)} s; ${acked.length} writes during it, 0 failed`,
  );

  // Nothing left to grow: the next push says so and changes nothing.
  const again = await configOnly();
  expect(again.code).toBe(0);
  expect(again.stderr).toMatch(/kit: the filesystem on \/mnt\/data fills its volume \(2048 MiB; client file: \d+ GiB\): nothing to grow/);
  expect((await sizes()).filesystem).toBe(after.filesystem);
});
