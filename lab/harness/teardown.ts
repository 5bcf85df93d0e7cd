/**
 * One teardown list per test suite. Everything the harness creates on the host (processes, mounts, loop
 * devices, network namespaces, links, directories) is registered here the moment it exists, and released
 * in reverse order by `run()`, even when a test failed half-way.
 *
 * Host resources are also written to a journal file (/var/tmp/kit-e2e/journal) so that a run that was
 * killed before its teardown (Ctrl-C, OOM, CI timeout) is cleaned up by the next run: `Teardown.begin()`
 * releases the resources of every journal whose owner process is gone.
 */
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { log, run, runSyncQuiet, sleep } from "./process.ts";

/** Root of every scratch file the harness writes (outside the checkout; cleaned per run). */
export const SCRATCH_ROOT = "/var/tmp/kit-e2e";
const JOURNAL_DIR = join(SCRATCH_ROOT, "journal");

/** A host resource, described as data so that a later run can release it after a crash. */
export type Resource =
  /** A process we started; killed only if that pid still is the same process (start time and boot). */
  | { readonly kind: "process"; readonly pid: number; readonly startTime: string; readonly bootId: string }
  | { readonly kind: "mount"; readonly path: string }
  /** Detached only while it is still backed by `backingFile` (loop numbers are reused). */
  | { readonly kind: "loop"; readonly device: string; readonly backingFile: string }
  | { readonly kind: "netns"; readonly name: string }
  | { readonly kind: "link"; readonly name: string }
  /** A directory tree: everything mounted below it is unmounted first, then it is removed. */
  | { readonly kind: "tree"; readonly path: string };

interface Entry {
  readonly label: string;
  readonly release: () => Promise<void>;
}

interface Owner {
  readonly pid: number;
  readonly startTime: string;
  readonly bootId: string;
}

export class Teardown {
  private readonly entries: Entry[] = [];
  private done = false;

  /** A fresh directory for this run's scratch files (removed by `run()`). */
  readonly workDir: string;
  private readonly journal: string;
  private constructor(
    workDir: string,
    journal: string,
  ) {
    this.workDir = workDir;
    this.journal = journal;
  }

  /**
   * Starts a run: releases what crashed runs left behind, then opens this run's journal and work dir.
   */
  static async begin(): Promise<Teardown> {
    mkdirSync(JOURNAL_DIR, { recursive: true });
    await sweepLeftovers();
    const self = currentProcess();
    // One journal per Teardown (a process may hold several); the owner line says whose it is.
    const journal = join(JOURNAL_DIR, `${self.pid}-${self.startTime}-${randomBytes(4).toString("hex")}.jsonl`);
    appendFileSync(journal, JSON.stringify({ owner: self }) + "\n");
    const workDir = await mkdtemp(join(SCRATCH_ROOT, "run-"));
    const teardown = new Teardown(workDir, journal);
    teardown.track({ kind: "tree", path: workDir });
    return teardown;
  }

  /** Registers a host resource: journaled now, released by `run()` (or by the next run after a crash). */
  track(resource: Resource): void {
    this.assertOpen();
    appendFileSync(this.journal, JSON.stringify({ resource }) + "\n");
    this.entries.push({ label: describeResource(resource), release: () => release(resource) });
  }

  /** Registers an in-process cleanup (closing a server): it dies with the process anyway, so no journal. */
  defer(label: string, fn: () => Promise<void> | void): void {
    this.assertOpen();
    this.entries.push({ label, release: async () => fn() });
  }

  /** Releases everything in reverse order; keeps going past failures and reports them all at the end. */
  async run(): Promise<void> {
    if (this.done) return;
    this.done = true;
    const failures: string[] = [];
    for (const entry of this.entries.reverse()) {
      try {
        await entry.release();
      } catch (error) {
        failures.push(`${entry.label}: ${(error as Error).message}`);
      }
    }
    if (failures.length > 0) {
      throw new Error(
        `teardown could not release ${failures.length} resource(s); the next run retries them ` +
          `(journal ${this.journal}):\n${failures.join("\n")}`,
      );
    }
    rmSync(this.journal, { force: true });
  }

  private assertOpen(): void {
    if (this.done) throw new Error("this Teardown already ran: start a new one with Teardown.begin()");
  }
}

/** Releases the resources of every journal whose owner process no longer exists. */
export async function sweepLeftovers(): Promise<void> {
  if (!existsSync(JOURNAL_DIR)) return;
  for (const name of readdirSync(JOURNAL_DIR).filter((file) => file.endsWith(".jsonl"))) {
    const path = join(JOURNAL_DIR, name);
    const lines = readFileSync(path, "utf8").split("\n").filter(Boolean);
    const records = lines.map((line) => JSON.parse(line) as { owner?: Owner; resource?: Resource });
    const owner = records[0]?.owner;
    if (owner && isAlive(owner)) continue;
    const resources = records.flatMap((record) => (record.resource ? [record.resource] : []));
    log(`releasing ${resources.length} resource(s) left by a crashed run (journal ${name})`);
    for (const resource of resources.reverse()) {
      await release(resource).catch((error: Error) =>
        log(`could not release ${describeResource(resource)}: ${error.message}`),
      );
    }
    rmSync(path, { force: true });
  }
}

/** Releases one resource; idempotent (a resource that is already gone is fine). */
export async function release(resource: Resource): Promise<void> {
  switch (resource.kind) {
    case "process":
      if (isAlive(resource)) {
        process.kill(resource.pid, "SIGKILL");
        await waitForExit(resource);
      }
      return;
    case "mount":
      if (isMountPoint(resource.path)) await run(["umount", "--lazy", resource.path]);
      return;
    case "loop": {
      const backing = runSyncQuiet(["losetup", "--noheadings", "--output", "BACK-FILE", resource.device]);
      if (backing.code === 0 && backing.stdout.trim() === resource.backingFile) {
        await run(["losetup", "--detach", resource.device]);
      }
      return;
    }
    case "netns":
      if (existsSync(`/run/netns/${resource.name}`)) await run(["ip", "netns", "delete", resource.name]);
      return;
    case "link":
      if (existsSync(`/sys/class/net/${resource.name}`)) await run(["ip", "link", "delete", resource.name]);
      return;
    case "tree":
      await removeTree(resource.path);
      return;
  }
}

/**
 * Removes a directory tree that may still have mounts below it (an interrupted debootstrap leaves /proc
 * and /sys mounted inside its target; deleting through them would damage the host). Unmounts deepest
 * first, then deletes without crossing into any other filesystem.
 */
export async function removeTree(path: string): Promise<void> {
  if (!existsSync(path)) return;
  for (const mount of mountsBelow(path)) {
    await run(["umount", "--lazy", mount]);
  }
  await run(["rm", "-rf", "--one-file-system", "--", path]);
}

/** Mount points at or below `path`, deepest first. */
export function mountsBelow(path: string): string[] {
  const prefix = path.replace(/\/+$/, "");
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((mount): mount is string => !!mount)
    .map(unescapeMountPath)
    .filter((mount) => mount === prefix || mount.startsWith(prefix + "/"))
    .sort((a, b) => b.length - a.length);
}

export function isMountPoint(path: string): boolean {
  return mountsBelow(path).includes(path.replace(/\/+$/, ""));
}

/** Identity of a running process (pid + start time + boot), robust against pid reuse. */
export function processIdentity(pid: number): Owner | undefined {
  try {
    // Field 22 of /proc/PID/stat is the start time; the command name (field 2) may contain spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const startTime = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    return { pid, startTime, bootId: bootId() };
  } catch {
    return undefined;
  }
}

/** Waits (bounded) for a killed process to be gone, so that its files and mounts can be released next. */
async function waitForExit(owner: Owner): Promise<void> {
  for (let i = 0; i < 100 && isAlive(owner); i++) await sleep(100);
}

function currentProcess(): Owner {
  const self = processIdentity(process.pid);
  if (!self) throw new Error("cannot read /proc/self/stat: the harness needs /proc");
  return self;
}

function isAlive(owner: Owner): boolean {
  const now = processIdentity(owner.pid);
  return !!now && now.startTime === owner.startTime && now.bootId === owner.bootId;
}

function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function describeResource(resource: Resource): string {
  switch (resource.kind) {
    case "process":
      return `process ${resource.pid}`;
    case "mount":
      return `mount ${resource.path}`;
    case "loop":
      return `loop device ${resource.device} (${resource.backingFile})`;
    case "netns":
      return `network namespace ${resource.name}`;
    case "link":
      return `network link ${resource.name}`;
    case "tree":
      return `directory ${resource.path}`;
  }
}
