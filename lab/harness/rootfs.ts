/**
 * The droplet's disk image: a Debian 12 (bookworm) or Debian 13 (trixie) root filesystem that boots under
 * systemd-nspawn and runs cloud-init, standing in for the provider's "debian-12-x64" / "debian-13-x64"
 * cloud image.
 *
 * Each suite is built once with debootstrap and cached outside the checkout, keyed by a hash of the recipe
 * below (suite, package lists, commands, files written, host apt sources). The build runs in a temporary directory that
 * is renamed into place only when complete, so an interrupted build never leaves a broken cache. Each boot
 * gets its own copy-on-write view of the cache (an overlay mount), so tests never change the cache.
 *
 * Nothing the kit's user data installs (caddy, git, unattended-upgrades, ...) is pre-installed: those come
 * from the Debian mirror at boot, as on a real server. The image carries the host's apt sources so that the
 * container uses the same mirror the host does (with the image's suite in place of the host's).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { log, requireRoot, requireTools, run, runSyncQuiet, seconds } from "./process.ts";
import { processIdentity, removeTree, type Teardown } from "./teardown.ts";

/** Where built images are kept between runs. Override with KIT_E2E_CACHE. */
export const ROOTFS_CACHE_DIR = process.env.KIT_E2E_CACHE ?? "/var/cache/kit-e2e";

/** Bump to force a rebuild when something outside the recipe data changes how the image is built. */
const RECIPE_VERSION = 1;

/** The Debian releases the harness builds, by suite, with the release number the providers' images name. */
export const DEBIAN_SUITES = { bookworm: 12, trixie: 13 } as const;
export type DebianSuite = keyof typeof DEBIAN_SUITES;
/** The image the harness boots unless a test asks for another. */
export const DEFAULT_SUITE: DebianSuite = "bookworm";

/** What the provider's cloud image has that the kit relies on (the bootstrap installs the rest). */
export const IMAGE_PACKAGES = [
  "systemd",
  "systemd-sysv",
  "dbus",
  "openssh-server",
  "sqlite3",
  "curl",
  "ca-certificates",
  "sudo",
  "iproute2",
] as const;

/**
 * Installed with apt inside the image: debootstrap's --include cannot resolve cloud-init's virtual deps.
 * pgloader and postgresql-client: scripts/migrate-to-postgres.ts runs them on the server (a real server gets
 * them from apt at the move, the step a dry run announces); baked in here so the e2e move stays under 3 min.
 */
export const IMAGE_APT_PACKAGES = ["cloud-init", "pgloader", "postgresql-client"] as const;

/** cloud-init settings of the image: the harness plays the cloud provider. */
const CLOUD_CFG = `# Written by the kit's e2e harness (lab/harness/rootfs.ts).
# The NoCloud seed in /var/lib/cloud/seed/nocloud is this "cloud's" metadata service: skip probing others.
datasource_list: [ NoCloud, None ]
# The harness configures eth0 from the host before boot (as a provider's network does), so cloud-init must
# not write a DHCP config for it.
network: {config: disabled}
`;

/**
 * systemd-fstab-generator ignores /etc/fstab entries for devices inside a container (no udev there), so
 * after a reboot nothing would mount the volume, although a real server mounts it from fstab at boot.
 * This generator does what fstab-generator does on a real server, minus the device unit (which a container
 * never gets): one mount unit per /dev/... entry, pulled in by local-fs.target.
 */
const FSTAB_DEVICES_GENERATOR = `#!/bin/sh
# Written by the kit's e2e harness (lab/harness/rootfs.ts): mounts /etc/fstab's device entries at
# boot, as systemd-fstab-generator does on a real server (it skips them in containers).
set -eu
out=\${1:?usage: generator NORMAL_DIR ...}
[ -r /etc/fstab ] || exit 0
while read -r what where type options _rest; do
  case "$what" in /dev/*) ;; *) continue ;; esac
  unit=$(systemd-escape --path --suffix=mount "$where")
  [ -e "/etc/systemd/system/$unit" ] && continue
  case ",$options," in
    *,nofail,*) wants=local-fs.target.wants; before="" ;;
    *) wants=local-fs.target.requires; before="Before=local-fs.target" ;;
  esac
  printf '%s\\n' "[Unit]" "SourcePath=/etc/fstab" "Documentation=man:fstab(5)" "$before" \\
    "[Mount]" "What=$what" "Where=$where" "Type=$type" "Options=$options" >"$out/$unit"
  mkdir -p "$out/$wants"
  ln -sf "../$unit" "$out/$wants/$unit"
done </etc/fstab
`;

export interface Rootfs {
  /** The cached root directory. Read-only by convention: boot a `bootCopy()` of it, never this. */
  readonly path: string;
  /** Recipe hash naming the cache entry. */
  readonly key: string;
  readonly suite: DebianSuite;
  /** How long building took; undefined when the cache was used. */
  readonly buildMs?: number;
}

interface Recipe {
  readonly version: number;
  readonly suite: string;
  readonly mirror: string;
  readonly packages: readonly string[];
  readonly aptPackages: readonly string[];
  /** Files written into the image after debootstrap, by absolute path inside the image. */
  readonly files: Readonly<Record<string, string>>;
  /** Commands run inside the image (via systemd-nspawn, which sets up /proc, /sys and /dev, then cleans up). */
  readonly commands: readonly (readonly string[])[];
}

/** Returns the cached image of `suite` for the current recipe, building it first if needed. */
export async function ensureRootfs(options: { readonly suite?: DebianSuite } = {}): Promise<Rootfs> {
  const suite = options.suite ?? DEFAULT_SUITE;
  if (!Object.hasOwn(DEBIAN_SUITES, suite)) {
    throw new Error(`ensureRootfs: unknown Debian suite ${JSON.stringify(suite)}; use one of ${Object.keys(DEBIAN_SUITES).join(", ")}`);
  }
  requireRoot();
  requireTools({ debootstrap: "debootstrap", "systemd-nspawn": "systemd-container" });
  const recipe = buildRecipe(suite);
  const key = recipeKey(recipe);
  const entry = join(ROOTFS_CACHE_DIR, `rootfs-${key}`);
  const root = join(entry, "root");
  if (existsSync(root)) {
    log(`rootfs ${key} is cached at ${root}`);
    markUsed(entry);
    await pruneUnusedImages();
    return { path: root, key, suite };
  }
  mkdirSync(ROOTFS_CACHE_DIR, { recursive: true });
  await removeAbandonedBuilds();
  await pruneUnusedImages();
  const started = Date.now();
  log(`building rootfs ${key} (debootstrap ${suite} from ${recipe.mirror}; takes a few minutes, once)`);
  const self = processIdentity(process.pid)!;
  const staging = join(ROOTFS_CACHE_DIR, `.build-${key}-${self.pid}-${self.startTime}`);
  try {
    await buildInto(join(staging, "root"), recipe);
    writeFileSync(join(staging, "recipe.json"), JSON.stringify({ key, builtAt: new Date(), recipe }, null, 2));
    publish(staging, entry);
    markUsed(entry);
  } finally {
    await removeTree(staging);
  }
  const buildMs = Date.now() - started;
  log(`rootfs ${key} built in ${seconds(buildMs)} at ${root}`);
  return { path: root, key, suite, buildMs };
}

/**
 * A private, writable copy-on-write view of the image for one machine (an overlay mount whose changes land
 * in `dir`). It stays mounted until teardown, so a machine can be booted again after a stop (a reboot).
 */
export async function bootCopy(teardown: Teardown, rootfs: Rootfs, dir: string): Promise<string> {
  const upper = join(dir, "upper");
  const work = join(dir, "work");
  const merged = join(dir, "root");
  await Promise.all([upper, work, merged].map((path) => mkdir(path, { recursive: true })));
  await run(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${rootfs.path},upperdir=${upper},workdir=${work}`, merged]);
  teardown.track({ kind: "mount", path: merged });
  return merged;
}

/** The recipe as data: everything that decides the image's content, so its hash is the cache key. */
function buildRecipe(suite: DebianSuite): Recipe {
  const apt = hostAptConfig(suite);
  return {
    version: RECIPE_VERSION,
    suite,
    mirror: apt.mirror,
    packages: IMAGE_PACKAGES,
    aptPackages: IMAGE_APT_PACKAGES,
    files: {
      ...apt.files,
      // debootstrap's one-line sources.list would duplicate the host's sources copied above.
      "/etc/apt/sources.list": "",
      "/etc/cloud/cloud.cfg.d/90-kit-e2e.cfg": CLOUD_CFG,
      "/etc/systemd/system-generators/kit-e2e-fstab-devices": FSTAB_DEVICES_GENERATOR,
      // Cloud images ship these empty or absent: each instance gets its own identity at first boot.
      "/etc/machine-id": "",
      "/etc/hostname": "localhost\n",
      // No DNS inside the test network (only the harness's services are reachable); apt goes through the
      // harness's proxy, which resolves names on the host.
      "/etc/resolv.conf": "",
    },
    commands: [
      ["apt-get", "update"],
      ["apt-get", "install", "--yes", "--no-install-recommends", ...IMAGE_APT_PACKAGES],
      // cloud-init's locale module sets LANG=en_US.UTF-8 and fails unless that locale exists, as it does on
      // the providers' images (minbase has the locales package but generates nothing).
      ["sh", "-c", "echo 'en_US.UTF-8 UTF-8' >/etc/locale.gen && locale-gen"],
      ["apt-get", "clean"],
      // A fresh image has no package lists; cloud-init's package_update fetches them at boot, for real.
      ["sh", "-c", "rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*"],
      ["chmod", "0755", "/etc/systemd/system-generators/kit-e2e-fstab-devices"],
    ],
  };
}

async function buildInto(root: string, recipe: Recipe): Promise<void> {
  await mkdir(dirname(root), { recursive: true });
  await run(
    ["debootstrap", "--variant=minbase", `--include=${recipe.packages.join(",")}`, recipe.suite, root, recipe.mirror],
    { timeoutMs: 30 * 60_000 },
  ).catch((error: Error) => {
    throw new Error(`debootstrap failed (see ${root}/debootstrap/debootstrap.log if it is still there): ${error.message}`);
  });
  for (const [path, content] of Object.entries(recipe.files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  for (const command of recipe.commands) {
    await inImage(root, command);
  }
}

/** Runs a command inside the image being built (not booted; host network for apt). */
function inImage(root: string, command: readonly string[]) {
  return run(
    [
      "systemd-nspawn",
      "--quiet",
      "--register=no",
      "--keep-unit",
      "--resolv-conf=bind-host",
      `--directory=${root}`,
      "--setenv=DEBIAN_FRONTEND=noninteractive",
      ...command,
    ],
    { timeoutMs: 30 * 60_000 },
  );
}

/** Moves a finished build into the cache; loses gracefully to a concurrent run that finished first. */
function publish(staging: string, entry: string): void {
  try {
    renameSync(staging, entry);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (!(code === "ENOTEMPTY" || code === "EEXIST") || !existsSync(join(entry, "root"))) throw error;
  }
}

/** Removes staging directories of builds whose process is gone (interrupted builds). */
async function removeAbandonedBuilds(): Promise<void> {
  for (const name of readdirSync(ROOTFS_CACHE_DIR).filter((file) => file.startsWith(".build-"))) {
    const [, , pid, startTime] = name.split("-");
    const owner = processIdentity(Number(pid));
    if (owner?.startTime === startTime) continue; // still building in another run
    log(`removing interrupted rootfs build ${basename(name)}`);
    await removeTree(join(ROOTFS_CACHE_DIR, name));
  }
}

/** Images of older recipes are removed once unused for this long (other checkouts may still use them). */
const PRUNE_AFTER_DAYS = 7;

function markUsed(entry: string): void {
  writeFileSync(join(entry, "last-used"), new Date().toISOString());
}

/** Removes images no run has used for PRUNE_AFTER_DAYS and that no machine has mounted right now. */
async function pruneUnusedImages(): Promise<void> {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8");
  for (const name of readdirSync(ROOTFS_CACHE_DIR).filter((file) => file.startsWith("rootfs-"))) {
    const entry = join(ROOTFS_CACHE_DIR, name);
    const stamp = join(entry, "last-used");
    const idleDays = existsSync(stamp) ? (Date.now() - statSync(stamp).mtimeMs) / 86_400_000 : Infinity;
    if (idleDays < PRUNE_AFTER_DAYS || mounts.includes(entry)) continue;
    log(`removing rootfs ${name}, unused for ${PRUNE_AFTER_DAYS}+ days`);
    await removeTree(entry);
  }
}

function recipeKey(recipe: Recipe): string {
  return createHash("sha256").update(JSON.stringify(recipe)).digest("hex").slice(0, 16);
}

interface HostApt {
  /** The Debian mirror the host uses for its own suite (debootstrap downloads the image's suite from it). */
  readonly mirror: string;
  /** Host apt files to copy into the image, by path. */
  readonly files: Record<string, string>;
}

/** The suites a host's Debian sources may name (the harness runs on Debian 12 or 13). */
const HOST_SUITES = Object.keys(DEBIAN_SUITES) as DebianSuite[];

/**
 * The host's apt sources (so the container reaches the same mirror) and the host's settings for checking
 * Release file dates (a dated snapshot mirror needs Check-Valid-Until off, or apt rejects it). The sources
 * name the image's `suite` where they named the host's (bookworm-security becomes trixie-security, …):
 * Debian's mirrors serve every release from the same URIs.
 */
function hostAptConfig(suite: DebianSuite = DEFAULT_SUITE): HostApt {
  const files: Record<string, string> = {};
  const sourcesDir = "/etc/apt/sources.list.d";
  const sourceFiles = [
    ...(existsSync("/etc/apt/sources.list") ? ["/etc/apt/sources.list"] : []),
    ...readdirSync(sourcesDir)
      .filter((file) => file.endsWith(".sources") || file.endsWith(".list"))
      .map((file) => join(sourcesDir, file)),
  ];
  let mirror: string | undefined;
  for (const path of sourceFiles) {
    const content = readFileSync(path, "utf8");
    const found = debianMirror(content);
    if (!found) continue; // only Debian's own sources (a host's third-party repos stay on the host)
    mirror ??= found.uri;
    const forImage = content.replace(new RegExp(`\\b${found.suite}(?=[-\\s]|$)`, "gm"), suite);
    files[path === "/etc/apt/sources.list" ? join(sourcesDir, "host.list") : path] = forImage;
  }
  if (!mirror) {
    throw new Error(
      `no apt source for Debian ${HOST_SUITES.join(" or ")} found in /etc/apt/sources.list{,.d}: the ${suite} image needs a Debian mirror (add one serving main)`,
    );
  }
  files["/etc/apt/apt.conf.d/90kit-e2e-host"] = hostAcquireSettings();
  return { mirror, files };
}

/** Host names of the Debian mirrors in the host's apt sources (the only hosts apt may reach from a machine). */
export function debianMirrorHosts(): string[] {
  const hosts = new Set<string>();
  for (const [path, content] of Object.entries(hostAptConfig().files)) {
    if (!path.startsWith("/etc/apt/sources.list")) continue;
    const active = content.replace(/^\s*#.*$/gm, "");
    for (const match of active.matchAll(/\bhttps?:\/\/([^/\s:]+)/g)) hosts.add(match[1]);
  }
  return [...hosts];
}

/** The host's Acquire::Check-Valid-Until / Check-Date settings, as an apt.conf snippet. */
function hostAcquireSettings(): string {
  const dump = runSyncQuiet(["apt-config", "dump", "Acquire"]).stdout;
  const wanted = /^Acquire::(Check-Valid-Until|Check-Date) /;
  const lines = dump.split("\n").filter((line) => wanted.test(line));
  return `// Copied from the host's apt configuration by the kit's e2e harness.\n${lines.join("\n")}\n`;
}

/** The first URI serving a Debian release (HOST_SUITES) from `main`, and that suite, in one-line or deb822 format. */
function debianMirror(content: string): { uri: string; suite: DebianSuite } | undefined {
  const known = (name: string | undefined) => HOST_SUITES.find((suite) => suite === name);
  for (const line of content.split("\n")) {
    const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+.*\bmain\b/.exec(line.trim());
    const suite = known(match?.[2]);
    if (match && suite) return { uri: match[1], suite };
  }
  for (const stanza of content.split(/\n\s*\n/)) {
    const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, "mi").exec(stanza)?.[1].trim().split(/\s+/) ?? [];
    if (/^Enabled:\s*no/im.test(stanza)) continue;
    const suite = field("Suites").map(known).find(Boolean);
    if (field("Types").includes("deb") && suite && field("Components").includes("main")) {
      return { uri: field("URIs")[0], suite };
    }
  }
  return undefined;
}
