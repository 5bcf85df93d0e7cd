/**
 * Proves the boot harness itself, with a trivial #cloud-config instead of the kit's user data: the image
 * builds and caches, a machine boots and runs cloud-init, apt reaches Debian through the test network,
 * the harness's services are reachable, the volume shows up at DigitalOcean's path and keeps its data,
 * machines can be killed and rebooted, and teardown (or the next run, after a crash) leaves nothing behind.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { bootMachine, createVolume, Machine, type Volume } from "../../lab/harness/container.ts";
import { startArtifactMirror, type ArtifactMirror } from "../../lab/harness/mirror.ts";
import { createLabNetwork, type LabNetwork } from "../../lab/harness/network.ts";
import { log, run, runSyncQuiet, seconds } from "../../lab/harness/process.ts";
import { ensureRootfs, type Rootfs } from "../../lab/harness/rootfs.ts";
import { release, sweepLeftovers, Teardown } from "../../lab/harness/teardown.ts";
import { DENO } from "../../cloud-init/artifacts.ts";
import { REPO_ROOT } from "../../lab/harness/paths.ts";
import { createSshKey, ssh, type SshKey } from "../../lab/harness/ssh.ts";

const VOLUME = "harness-smoke-data";

/** Adds an SSH user, writes a file, installs a small package from Debian, mounts the volume and writes to it. */
const userData = (sshPublicKey: string) => `#cloud-config
users:
  - name: smoke
    groups: [sudo]
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    shell: /bin/bash
    lock_passwd: true
    ssh_authorized_keys: [ "${sshPublicKey}" ]
ssh_pwauth: false
package_update: true
packages: [tree]
mounts:
  - [ /dev/disk/by-id/scsi-0DO_Volume_${VOLUME}, /mnt/data, ext4, "defaults,nofail,discard,noatime", "0", "2" ]
write_files:
  - path: /etc/kit-smoke/hello.txt
    content: hello from cloud-init
runcmd:
  - [ sh, -c, "echo first-boot > /mnt/data/first-boot.txt && sync" ]
  - [ sh, -c, "tree --version > /run/tree-version" ]
`;

const timings: string[] = [];

describe("e2e harness", () => {
  let teardown: Teardown;
  let rootfs: Rootfs;
  let network: LabNetwork;
  let mirror: ArtifactMirror;
  let volume: Volume;
  let machine: Machine;
  let sshKey: SshKey;

  beforeAll(async () => {
    teardown = await Teardown.begin();
    rootfs = await ensureRootfs();
    timings.push(rootfs.buildMs === undefined ? "rootfs: cached (no build this run)" : `rootfs cold build: ${seconds(rootfs.buildMs)}`);
    const cachedStart = Date.now();
    await ensureRootfs();
    timings.push(`rootfs cached lookup: ${seconds(Date.now() - cachedStart)}`);
    network = await createLabNetwork(teardown);
    mirror = await startArtifactMirror(teardown, { host: network.hostAddress });
    volume = await createVolume(teardown, { name: VOLUME });
    sshKey = await createSshKey(teardown);
  });

  afterAll(async () => {
    await teardown?.run();
    log(`timings:\n  ${timings.join("\n  ")}`);
  });

  test("boots the image and cloud-init finishes without errors", async () => {
    const booted = Date.now();
    machine = await bootMachine(teardown, { rootfs, network, name: "smoke", userData: userData(sshKey.publicKey), volumes: [volume] });
    timings.push(`boot -> systemd answering: ${seconds(Date.now() - booted)}`);
    const cloudInit = await machine.waitForCloudInit({ timeoutMs: 10 * 60_000 });
    timings.push(`boot -> cloud-init done (incl. apt-get update + install from Debian): ${seconds(cloudInit.bootMs)}`);

    expect(cloudInit).toMatchObject({ status: "done" });
    expect((await machine.exec(["hostname"])).stdout.trim()).toBe("smoke");
    expect((await machine.exec(["cat", "/etc/kit-smoke/hello.txt"])).stdout).toBe("hello from cloud-init");
  });

  test("apt installed the package from the host's Debian mirror, through the test network's proxy", async () => {
    expect((await machine.exec(["cat", "/run/tree-version"])).stdout).toMatch(/^tree v/);
    expect(network.aptRequests.some((line) => /^200 GET http:\/\/.*\/pool\/main\/t\/tree\//.test(line))).toBe(true);
  });

  test("the volume is at DigitalOcean's by-id path and cloud-init mounted it", async () => {
    expect((await machine.exec(["test", "-b", volume.byIdPath])).code).toBe(0);
    const mount = await machine.exec(["findmnt", "--noheadings", "--output", "SOURCE,FSTYPE", "/mnt/data"]);
    expect(mount.stdout.trim()).toBe(`${volume.byIdPath} ext4`);
  });

  test("the machine reaches the harness's services, and nothing outside the test network", async () => {
    const url = mirror.urlFor(DENO);
    const head = await machine.exec(["curl", "--silent", "--fail", "--head", "--output", "/dev/null", "--write-out", "%{http_code}", url]);
    expect(head.stdout).toBe("200");
    // No route out: fails at once instead of hanging (the proxy is for apt only).
    const out = await machine.exec(["curl", "--silent", "--max-time", "5", "http://203.0.113.80/"], { allowFailure: true });
    expect(out.code).toBe(7); // CURLE_COULDNT_CONNECT
  });

  test("the host reaches the machine's sshd on its address, with the key from the user data", async () => {
    const knownHostsFile = join(teardown.workDir, "known_hosts");
    const result = await ssh({ key: sshKey, user: "smoke", host: machine.address, knownHostsFile }, ["sudo", "-n", "cat", "/etc/kit-smoke/hello.txt"]);
    expect(result.stdout).toBe("hello from cloud-init");
  });

  test("a hard stop kills the machine at once, and a reboot of the same disk keeps the volume's data", async () => {
    const killed = Date.now();
    await machine.stopHard();
    timings.push(`stopHard: ${seconds(Date.now() - killed)}`);
    expect(machine.running).toBe(false);
    await expect(machine.exec(["true"])).rejects.toThrow(/not running/);

    const rebooted = Date.now();
    await machine.start();
    // Same instance id: cloud-init runs only its per-boot modules; fstab (written at first boot) mounts the volume.
    const cloudInit = await machine.waitForCloudInit({ timeoutMs: 5 * 60_000 });
    timings.push(`reboot -> cloud-init done: ${seconds(Date.now() - rebooted)}`);
    expect(cloudInit.status).toBe("done");
    await machine.waitFor(async () => (await machine.exec(["mountpoint", "-q", "/mnt/data"], { allowFailure: true })).code === 0, {
      timeoutMs: 30_000,
      what: "the volume to be mounted after the reboot",
    });
    expect((await machine.exec(["cat", "/mnt/data/first-boot.txt"])).stdout).toBe("first-boot\n");
  });

  test("an orderly stop powers off; the data is on the volume's image, seen from the host", async () => {
    const stopping = Date.now();
    await machine.stop();
    timings.push(`orderly stop: ${seconds(Date.now() - stopping)}`);
    expect(machine.running).toBe(false);

    const mountPoint = join(teardown.workDir, "inspect");
    mkdirSync(mountPoint);
    await run(["mount", "-o", "ro,noload", volume.device, mountPoint]);
    teardown.track({ kind: "mount", path: mountPoint });
    expect(readFileSync(join(mountPoint, "first-boot.txt"), "utf8")).toBe("first-boot\n");
    await release({ kind: "mount", path: mountPoint });
  });
});

describe("teardown", () => {
  test("releases loop devices, network namespaces, mounts and scratch dirs", async () => {
    const teardown = await Teardown.begin();
    try {
      const rootfs = await ensureRootfs();
      const network = await createLabNetwork(teardown);
      const volume = await createVolume(teardown, { name: "teardown-check" });
      const machine = await Machine.create(teardown, { rootfs, network, name: "teardown", userData: "#cloud-config\n", volumes: [volume] });
      await machine.start();

      await teardown.run();

      expect(machine.running).toBe(false);
      expect(loopBackingFile(volume.device)).not.toBe(volume.image);
      expect(existsSync(machine.nic.netnsPath)).toBe(false);
      expect(existsSync(`/sys/class/net/${network.bridge}`)).toBe(false);
      expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(teardown.workDir);
      expect(existsSync(teardown.workDir)).toBe(false);
    } finally {
      await teardown.run(); // no-op when it already ran; releases everything if the test failed early
    }
  });

  test("the next run releases what a killed run left behind, running machine included", async () => {
    // A child process boots a machine with a volume, then dies without its teardown.
    const harness = (module: string) => JSON.stringify(join(REPO_ROOT, "lab/harness", module));
    const script = `
      import { Teardown } from ${harness("teardown")};
      import { bootMachine, createVolume } from ${harness("container")};
      import { createLabNetwork } from ${harness("network")};
      import { ensureRootfs } from ${harness("rootfs")};
      (async () => {
        const teardown = await Teardown.begin();
        const volume = await createVolume(teardown, { name: "crashed-run" });
        const network = await createLabNetwork(teardown);
        const machine = await bootMachine(teardown, { rootfs: await ensureRootfs(), network, name: "crashed", userData: "#cloud-config\\n", volumes: [volume] });
        console.log(JSON.stringify({ volume, workDir: teardown.workDir, netns: machine.nic.netnsPath, bridge: network.bridge }));
        process.kill(process.pid, "SIGKILL");
      })();
    `;
    const child = await run([join(REPO_ROOT, "node_modules/.bin/tsx"), "--eval", script], { allowFailure: true, cwd: REPO_ROOT });
    const left = JSON.parse(child.stdout.trim().split("\n").pop()!) as { volume: Volume; workDir: string; netns: string; bridge: string };
    expect(loopBackingFile(left.volume.device)).toBe(left.volume.image);
    expect(existsSync(left.netns)).toBe(true);
    expect(processesMentioning(left.workDir)).not.toEqual([]);

    await sweepLeftovers();

    expect(processesMentioning(left.workDir)).toEqual([]);
    expect(loopBackingFile(left.volume.device)).not.toBe(left.volume.image);
    expect(existsSync(left.netns)).toBe(false);
    expect(existsSync(`/sys/class/net/${left.bridge}`)).toBe(false);
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(left.workDir);
    expect(existsSync(left.workDir)).toBe(false);
  });
});

/** Pids of processes whose command line mentions `text` (the nspawn of a machine names its directory). */
function processesMentioning(text: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function loopBackingFile(device: string): string {
  return runSyncQuiet(["losetup", "--noheadings", "--output", "BACK-FILE", device]).stdout.trim();
}
