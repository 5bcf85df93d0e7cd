/**
 * Droplets for the boot tests: systemd-nspawn containers that boot the cached Debian image with a NoCloud
 * seed holding the user data under test, on the harness's private network, with loop devices standing in
 * for block volumes at the path DigitalOcean gives them (/dev/disk/by-id/scsi-0DO_Volume_<name>).
 *
 *   const volume = await createVolume(teardown, { name: "acme-prod-data" });
 *   const machine = await bootMachine(teardown, { rootfs, network, name: "acme-prod", userData, volumes: [volume] });
 *   const cloudInit = await machine.waitForCloudInit({ timeoutMs: 10 * 60_000 });
 *   await machine.exec(["systemctl", "is-active", "caddy"]);
 *
 * The host runs no systemd here, so machines are not registered with machined (--register=no): commands
 * reach a machine by entering its namespaces (nsenter) through the pid of its init, not `machinectl`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { type LabNetwork, type MachineNic } from "./network.ts";
import { formatArgv, log, requireRoot, requireTools, run, type RunResult, seconds, settlesWithin, tail } from "./process.ts";
import { digitalOceanVolumeDevice } from "../../stacks/server/digitalocean.ts";
import { bootCopy, type Rootfs } from "./rootfs.ts";
import { processIdentity, release, removeTree, type Teardown } from "./teardown.ts";
import { GiveUp, waitFor, type WaitOptions } from "./wait.ts";


// ---------------------------------------------------------------------------------------------------------
// Volumes

export interface VolumeOptions {
  /** The volume's name (DigitalOcean rules: lowercase letters, digits and dashes, starts with a letter). */
  readonly name: string;
  /** @default 1024 */
  readonly sizeMiB?: number;
  /** "ext4" as DigitalOcean formats a volume created with initial_filesystem_type; "none" for a blank one. @default "ext4" */
  readonly filesystem?: "ext4" | "none";
  /**
   * Where the volume appears inside a machine, e.g. Hetzner's `/dev/disk/by-id/scsi-0HC_Volume_<id>`.
   * @default DigitalOcean's path for its name (`/dev/disk/by-id/scsi-0DO_Volume_<name>`)
   */
  readonly byIdPath?: string;
}

export interface Volume {
  readonly name: string;
  /** Backing file on the host (sparse). */
  readonly image: string;
  /** Loop device on the host. */
  readonly device: string;
  /** Where the volume appears inside a machine. */
  readonly byIdPath: string;
}

/** Machine currently holding each volume: one running machine at a time, as with a real volume. */
const attachedTo = new Map<string, string>();

export async function createVolume(teardown: Teardown, options: VolumeOptions): Promise<Volume> {
  requireRoot();
  requireTools({ losetup: "mount", "mkfs.ext4": "e2fsprogs", truncate: "coreutils" });
  if (!/^[a-z][a-z0-9-]{0,63}$/.test(options.name)) {
    throw new Error(`volume name "${options.name}": use lowercase letters, digits and dashes, starting with a letter (≤ 64)`);
  }
  const image = join(teardown.workDir, "volumes", `${options.name}.img`);
  mkdirSync(dirname(image), { recursive: true });
  await run(["truncate", "--size", `${options.sizeMiB ?? 1024}M`, image]);
  if ((options.filesystem ?? "ext4") === "ext4") await run(["mkfs.ext4", "-q", "-F", image]);
  const device = (await run(["losetup", "--find", "--show", image])).stdout.trim();
  teardown.track({ kind: "loop", device, backingFile: image });
  return { name: options.name, image, device, byIdPath: options.byIdPath ?? digitalOceanVolumeDevice(options.name) };
}

/**
 * Destroys a volume (a deleted cloud volume): detaches its loop device and deletes its backing file, so
 * that nothing of its content can reach a later machine.
 */
export async function destroyVolume(volume: Volume): Promise<void> {
  const holder = attachedTo.get(volume.device);
  if (holder) throw new Error(`volume ${volume.name} is attached to running machine ${holder}: stop that machine first`);
  await release({ kind: "loop", device: volume.device, backingFile: volume.image });
  rmSync(volume.image, { force: true });
}

// ---------------------------------------------------------------------------------------------------------
// Machines

export interface MachineOptions {
  readonly rootfs: Rootfs;
  readonly network: LabNetwork;
  /** Hostname (cloud-init's local-hostname): lowercase letters, digits, dashes. */
  readonly name: string;
  /** The user data under test (`#cloud-config ...`), written to the NoCloud seed. */
  readonly userData: string;
  /** cloud-init instance id. @default a new one per machine (a new droplet) */
  readonly instanceId?: string;
  /** Volumes attached at boot. @default none */
  readonly volumes?: readonly Volume[];
  /**
   * CA certificates (PEM files on the host) the machine trusts besides the public ones, e.g. the lab S3's
   * CA: installed into the image's trust store before boot, as an operator would, so that nothing in the
   * user data changes for the lab. @default none
   */
  readonly trustedCaFiles?: readonly string[];
}

export interface ExecOptions {
  readonly input?: string | Buffer;
  /** Extra environment (the command otherwise gets a clean root environment). */
  readonly env?: Readonly<Record<string, string>>;
  /** @default 120 s */
  readonly timeoutMs?: number;
  /** Resolve with the result instead of throwing on a non-zero exit. @default false */
  readonly allowFailure?: boolean;
}

export interface CloudInitResult {
  /** cloud-init's own verdict: "done" when every module succeeded, "error" otherwise. */
  readonly status: string;
  /** `cloud-init status --long` output (names the failed module on error). */
  readonly long: string;
  /** Time from `start()` to cloud-init finishing. */
  readonly bootMs: number;
}

const SEED_DIR = "/var/lib/cloud/seed/nocloud";
const CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export class Machine {
  private nspawn?: ChildProcess;
  private leaderPid?: number;
  private exited?: Promise<void>;
  private startedAt = 0;
  private discarded = false;

  private readonly teardown: Teardown;
  private readonly options: MachineOptions;
  /** Host directory holding the machine's disk (overlay), console log and seed. */
  readonly dir: string;
  /** The machine's root filesystem as seen from the host (its own mounts, like the volume, are not visible). */
  readonly root: string;
  readonly nic: MachineNic;
  /** systemd-nspawn's machine name (unique per run; the hostname is set by cloud-init). */
  readonly machineName: string;
  private constructor(
    teardown: Teardown,
    options: MachineOptions,
    dir: string,
    root: string,
    nic: MachineNic,
    machineName: string,
  ) {
    this.teardown = teardown;
    this.options = options;
    this.dir = dir;
    this.root = root;
    this.nic = nic;
    this.machineName = machineName;
  }

  /** Prepares a machine's disk, seed and network, without booting it. */
  static async create(teardown: Teardown, options: MachineOptions): Promise<Machine> {
    requireRoot();
    requireTools({ "systemd-nspawn": "systemd-container", nsenter: "util-linux", losetup: "mount", ip: "iproute2" });
    if (!/^[a-z][a-z0-9-]{0,40}$/.test(options.name)) {
      throw new Error(`machine name "${options.name}": use lowercase letters, digits and dashes, starting with a letter`);
    }
    const suffix = randomBytes(3).toString("hex");
    const dir = join(teardown.workDir, "machines", `${options.name}-${suffix}`);
    mkdirSync(dir, { recursive: true });
    const root = await bootCopy(teardown, options.rootfs, dir);
    const nic = await options.network.attach();
    const machine = new Machine(teardown, options, dir, root, nic, `${options.name}-${suffix}`);
    machine.writeSeed(options.instanceId ?? `${options.name}-${suffix}`);
    machine.writeAptProxy();
    await machine.trustCas(options.trustedCaFiles ?? []);
    // Registered before any boot, so it runs after the per-boot entries (teardown runs in reverse).
    teardown.defer(`machine ${machine.machineName}`, () => machine.stopHard());
    return machine;
  }

  get name(): string {
    return this.options.name;
  }

  /** The machine's address on the lab network (its sshd, Caddy, ... from the host). */
  get address(): string {
    return this.nic.address;
  }

  get running(): boolean {
    return this.nspawn !== undefined;
  }

  /** A host path for `path` inside the machine's root filesystem (read files without entering it). */
  hostPath(path: string): string {
    return join(this.root, path);
  }

  /** Everything the machine printed on its console so far (systemd's boot messages, cloud-init's output). */
  console(): string {
    const file = join(this.dir, "console.log");
    return existsSync(file) ? readFileSync(file, "utf8") : "";
  }

  /** Boots the machine (again, after a stop: a reboot of the same disk) and waits for its systemd to answer. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`machine ${this.machineName} is already running`);
    if (this.discarded) throw new Error(`machine ${this.machineName} was discarded: its disk is gone`);
    for (const volume of this.options.volumes ?? []) {
      const holder = attachedTo.get(volume.device);
      if (holder) throw new Error(`volume ${volume.name} is attached to running machine ${holder}: stop that machine first`);
    }
    const argv = this.nspawnArgv();
    const consoleFd = openSync(join(this.dir, "console.log"), "a");
    this.startedAt = Date.now();
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", consoleFd, consoleFd] });
    closeSync(consoleFd);
    this.nspawn = child;
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    void this.exited.then(() => this.onExit(child));
    for (const volume of this.options.volumes ?? []) attachedTo.set(volume.device, this.machineName);
    this.trackProcess(child.pid!);

    try {
      this.leaderPid = await waitFor(() => this.findLeader(child), {
        timeoutMs: 30_000,
        what: `systemd-nspawn to start ${this.machineName}'s init`,
        intervalMs: 100,
        diagnostics: async () => `console:\n${tail(this.console(), 30)}\nnspawn: ${formatArgv(argv)}`,
      });
      this.trackProcess(this.leaderPid);
      this.teardown.defer(`stop ${this.machineName}`, () => this.stopHard());
      await this.waitFor(async () => {
        const state = await this.exec(["systemctl", "is-system-running"], { allowFailure: true, timeoutMs: 10_000 });
        return state.stdout.trim() !== "" && !state.stdout.includes("offline");
      }, { timeoutMs: 60_000, what: `${this.machineName}'s systemd to answer`, intervalMs: 200 });
    } catch (error) {
      await this.stopHard();
      throw error;
    }
  }

  /** Runs a command as root inside the machine: argv, or a string run by bash. Throws on non-zero exit. */
  async exec(command: string | readonly string[], options: ExecOptions = {}): Promise<RunResult> {
    const pid = this.requireLeader();
    const argv = typeof command === "string" ? ["bash", "-c", command] : [...command];
    const env = Object.entries({ PATH: CLEAN_PATH, HOME: "/root", LANG: "C.UTF-8", TERM: "dumb", ...options.env }).map(
      ([name, value]) => `${name}=${value}`,
    );
    try {
      return await run(["nsenter", `--target=${pid}`, "--all", "--", "env", "-i", ...env, ...argv], {
        input: options.input,
        timeoutMs: options.timeoutMs ?? 120_000,
        allowFailure: options.allowFailure,
      });
    } catch (error) {
      throw new Error(`in machine ${this.machineName}: ${(error as Error).message}`);
    }
  }

  /**
   * `waitFor` that gives up as soon as the machine stops, and whose failure message includes the machine's
   * state (failed units, cloud-init status and log, console).
   */
  waitFor<T>(check: () => Promise<T> | T, options: Omit<WaitOptions, "diagnostics">): Promise<NonNullable<T>> {
    const whileRunning = () => {
      if (!this.running) throw new GiveUp(`machine ${this.machineName} is not running (it stopped or crashed: see its console)`);
      return check();
    };
    return waitFor(whileRunning, { ...options, diagnostics: () => this.diagnostics() });
  }

  /** Waits for cloud-init to finish (done or error) and reports its verdict and the boot time. */
  async waitForCloudInit(options: { timeoutMs: number }): Promise<CloudInitResult> {
    const status = await this.waitFor(
      async () => {
        const result = await this.exec(["cloud-init", "status", "--long"], { allowFailure: true, timeoutMs: 30_000 });
        const verdict = /^status:\s*(\S+)/m.exec(result.stdout)?.[1];
        return verdict === "done" || verdict === "error" || verdict === "disabled" ? { verdict, long: result.stdout } : undefined;
      },
      { timeoutMs: options.timeoutMs, what: `cloud-init to finish on ${this.machineName}`, intervalMs: 1000 },
    );
    return { status: status.verdict, long: status.long.trim(), bootMs: Date.now() - this.startedAt };
  }

  /** Orderly shutdown (what `poweroff` does); falls back to a hard stop after `timeoutMs`. */
  async stop(options: { timeoutMs?: number } = {}): Promise<void> {
    const child = this.nspawn;
    if (!child) return;
    // systemd-nspawn --boot turns SIGTERM into an orderly poweroff of the container.
    child.kill("SIGTERM");
    const timeoutMs = options.timeoutMs ?? 90_000;
    const stopped = await settlesWithin(this.exited!, timeoutMs);
    if (!stopped) {
      log(`${this.machineName} did not power off within ${seconds(timeoutMs)}; killing it`);
      await this.stopHard();
    }
  }

  /**
   * Kills the machine at once, like pulling a droplet's power: SIGKILL to its init kills every process in
   * it, nothing is shut down cleanly. (Writes already handed to the kernel survive, since the host's page
   * cache is shared: this simulates a dead server, not lost disk caches.)
   */
  async stopHard(): Promise<void> {
    const child = this.nspawn;
    if (!child) return;
    if (this.leaderPid && processIdentity(this.leaderPid)) {
      try {
        process.kill(this.leaderPid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    const stopped = await settlesWithin(this.exited!, 15_000);
    if (!stopped) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }

  /** Kills the machine and deletes its disk (a destroyed droplet): it cannot be started again. */
  async discard(): Promise<void> {
    await this.stopHard();
    this.discarded = true;
    await removeTree(this.dir);
  }

  /** A report for failures: machine state, failed units, cloud-init status and logs, console tail. */
  async diagnostics(): Promise<string> {
    const parts = [`machine ${this.machineName} (${this.address}), ${this.running ? "running" : "not running"}`];
    if (this.running && this.leaderPid) {
      const probe = async (label: string, command: string) => {
        const result = await this.exec(command, { allowFailure: true, timeoutMs: 15_000 }).catch((error: Error) => ({
          stdout: "",
          stderr: error.message,
        }));
        parts.push(`--- ${label}\n${tail((result.stdout + result.stderr).trim() || "(nothing)", 40)}`);
      };
      await probe("systemctl --failed", "systemctl --failed --no-legend --no-pager");
      await probe("cloud-init status --long", "cloud-init status --long");
      await probe("/var/log/cloud-init-output.log (tail)", "tail -n 40 /var/log/cloud-init-output.log");
    }
    parts.push(`--- console (tail)\n${tail(this.console(), 20)}`);
    return parts.join("\n");
  }

  private nspawnArgv(): string[] {
    return [
      "systemd-nspawn",
      `--directory=${this.root}`,
      "--boot",
      `--machine=${this.machineName}`,
      // No systemd on the host: nothing to register with, no scope unit to create.
      "--register=no",
      "--keep-unit",
      `--network-namespace-path=${this.nic.netnsPath}`,
      // The image's own resolv.conf (empty: no DNS in the test network), timezone and journal.
      "--resolv-conf=off",
      "--timezone=off",
      "--link-journal=no",
      "--console=read-only",
      // A droplet's root may grow a mounted ext4 (resize2fs online needs it; nspawn drops it by default).
      "--capability=CAP_SYS_RESOURCE",
      // A droplet's root may load nftables rules (the deploy switch, /etc/kit/upstream.nft): nspawn drops
      // CAP_NET_ADMIN with --network-namespace-path; the namespace is the machine's own, so it changes only that.
      "--capability=CAP_NET_ADMIN",
      ...(this.options.volumes ?? []).map((volume) => `--bind=${volume.device}:${volume.byIdPath}`),
    ];
  }

  private writeSeed(instanceId: string): void {
    const seed = join(this.root, SEED_DIR);
    mkdirSync(seed, { recursive: true });
    writeFileSync(join(seed, "meta-data"), `instance-id: ${instanceId}\nlocal-hostname: ${this.options.name}\n`);
    writeFileSync(join(seed, "user-data"), this.options.userData);
  }

  /** apt's only way out of the test network (see network.ts). */
  private writeAptProxy(): void {
    writeFileSync(
      join(this.root, "etc/apt/apt.conf.d/95kit-e2e-proxy"),
      `// Written by the kit's e2e harness: the test network reaches the Debian mirror only through this proxy.\n` +
        `Acquire::http::Proxy "${this.options.network.aptProxyUrl}/";\n`,
    );
  }

  /**
   * Debian's own way of adding a CA: a .crt in /usr/local/share/ca-certificates, then update-ca-certificates
   * (which rebuilds /etc/ssl/certs/ca-certificates.crt, read by curl and Go; an apt upgrade of
   * ca-certificates at boot keeps it).
   */
  private async trustCas(caFiles: readonly string[]): Promise<void> {
    if (caFiles.length === 0) return;
    const dir = join(this.root, "usr/local/share/ca-certificates");
    mkdirSync(dir, { recursive: true });
    caFiles.forEach((file, i) => copyFileSync(file, join(dir, `kit-lab-${i + 1}.crt`)));
    await run(["chroot", this.root, "update-ca-certificates"]);
  }

  /** The container's init: the child of systemd-nspawn, once it has exec'd systemd. */
  private findLeader(child: ChildProcess): number | undefined {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new GiveUp(`systemd-nspawn exited (${child.exitCode ?? child.signalCode}) before the machine booted`);
    }
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === child.pid && readFileSync(`/proc/${entry}/comm`, "utf8").trim() === "systemd") return Number(entry);
      } catch {
        // the process ended while we looked
      }
    }
    return undefined;
  }

  private requireLeader(): number {
    if (!this.running || !this.leaderPid) throw new Error(`machine ${this.machineName} is not running: start() it first`);
    return this.leaderPid;
  }

  private trackProcess(pid: number): void {
    const identity = processIdentity(pid);
    if (identity) this.teardown.track({ kind: "process", ...identity });
  }

  private onExit(child: ChildProcess): void {
    if (this.nspawn !== child) return;
    this.nspawn = undefined;
    this.leaderPid = undefined;
    for (const [device, holder] of attachedTo) if (holder === this.machineName) attachedTo.delete(device);
  }
}

/** Creates a machine and boots it. */
export async function bootMachine(teardown: Teardown, options: MachineOptions): Promise<Machine> {
  const machine = await Machine.create(teardown, options);
  await machine.start();
  return machine;
}
