/**
 * The kit's own user data on the boot harness: a "lab" (test network, artifact mirror, the strict lab S3
 * with every shipped environment's bucket and backup user, the fixture app's git server, an SSH key) and
 * servers booted from `renderFirstBoot` exactly as a droplet would be (its first-boot bundle put in the
 * environment's lab bucket, as the stack uploads it), with only the download URLs, the S3 endpoint and the
 * git URL pointed into the lab. Each server gets its environment's own backup key (what
 * the stack's IAM user gets) and trusts the lab CA from its image's trust store, not from its user data.
 */
import { join } from "node:path";
import { mkdirSync, writeFileSync } from "node:fs";
import type { ResolvedEnvironment, SshKey as ClientSshKey } from "../app/config/types.ts";
import { LAYOUT } from "../cloud-init/layout.ts";
import { type FirstBoot, renderFirstBoot, type RenderOverrides } from "../cloud-init/render.ts";
import { digitalOceanVolumeDevice } from "../stacks/server/digitalocean.ts";
import { shippedEnvironment, shippedEnvironments } from "./environments.ts";
import {
  type AppRepo,
  type ArtifactMirror,
  bootMachine,
  createAppRepo,
  createLabNetwork,
  createSshKey,
  createVolume,
  ensureRootfs,
  type GitServer,
  type HarnessS3,
  type LabNetwork,
  log,
  type Machine,
  REPO_ROOT,
  type Rootfs,
  type RunResult,
  seconds,
  serveGitRepo,
  ssh,
  type SshKey,
  startArtifactMirror,
  startS3,
  Teardown,
  type Volume,
} from "./harness/index.ts";
import type { DebianSuite } from "./harness/rootfs.ts";

export interface KitLab {
  readonly teardown: Teardown;
  readonly rootfs: Rootfs;
  readonly network: LabNetwork;
  readonly mirror: ArtifactMirror;
  /** Buckets and backup users of every shipped environment; `s3` itself is example-staging's (`forStack` for others). */
  readonly s3: HarnessS3;
  readonly repo: AppRepo;
  readonly git: GitServer;
  readonly sshKey: SshKey;
  readonly knownHostsFile: string;
  /** Timings collected by the suite, printed by `printTimings`. */
  readonly timings: string[];
}

/**
 * The example client's environment as the tests boot it: `example-staging` (no domain: Caddy serves plain
 * HTTP, since no ACME server is reachable from the test network) with the lab's SSH key.
 */
export function labEnvironment(lab: Pick<KitLab, "sshKey">, stackName = "example-staging"): ResolvedEnvironment {
  const env = shippedEnvironment(stackName);
  return { ...env, domain: undefined, sshKeys: labSshKeys(lab) };
}

const labSshKeys = (lab: Pick<KitLab, "sshKey">): ClientSshKey[] => [{ name: "e2e", publicKey: lab.sshKey.publicKey.trim() }];

/**
 * Writes `dir/example.ts`, a client file for the scripts' `--clients-dir`: the shipped example client as
 * `labEnvironment` describes it (no domain, the lab's SSH key), or with `sshKeys` instead. deploy.ts pushes
 * the keys it finds there, exactly as it pushes a real client file's. Returns `dir`.
 */
export function writeLabClientsDir(lab: Pick<KitLab, "sshKey">, dir: string, sshKeys: readonly ClientSshKey[] = labSshKeys(lab)): string {
  mkdirSync(dir, { recursive: true });
  const shipped = JSON.stringify(join(REPO_ROOT, "app", "clients", "example"));
  writeFileSync(
    join(dir, "example.ts"),
    `// Written by lab/kit-lab.ts: the shipped example client with the lab's SSH keys and no domain.
import type { ClientConfig } from ${JSON.stringify(join(REPO_ROOT, "app", "config", "types"))};
import shipped from ${shipped};

const sshKeys = ${JSON.stringify(sshKeys, null, 2)};
const lab: ClientConfig = {
  ...shipped,
  environments: Object.fromEntries(Object.entries(shipped.environments).map(([name, env]) => [name, { ...env, domain: undefined, sshKeys }])),
};
export default lab;
`,
  );
  return dir;
}

/**
 * Sets up everything a kit server needs around it; its servers boot the Debian `suite` image (@default
 * the harness's default, bookworm). Call `lab.teardown.run()` in afterAll.
 */
export async function createKitLab(options: { readonly suite?: DebianSuite } = {}): Promise<KitLab> {
  const teardown = await Teardown.begin();
  const timings: string[] = [];
  const rootfs = await ensureRootfs({ suite: options.suite });
  timings.push(rootfs.buildMs === undefined ? `rootfs ${rootfs.suite}: cached` : `rootfs ${rootfs.suite} build: ${seconds(rootfs.buildMs)}`);
  const network = await createLabNetwork(teardown);
  const host = network.hostAddress;
  const [mirror, s3, repo, sshKey] = await Promise.all([
    startArtifactMirror(teardown, { host }),
    // example-staging first: the default bucket and key of `lab.s3`.
    startS3(teardown, { host, environments: [shippedEnvironment("example-staging"), ...shippedEnvironments().filter((e) => e.stackName !== "example-staging")] }),
    createAppRepo(teardown),
    createSshKey(teardown),
  ]);
  const git = await serveGitRepo(teardown, repo, { host });
  const knownHostsFile = join(teardown.workDir, "known_hosts");
  writeFileSync(knownHostsFile, "");
  return { teardown, rootfs, network, mirror, s3, repo, git, sshKey, knownHostsFile, timings };
}

export interface KitServerOptions {
  /** Machine hostname. */
  readonly name: string;
  readonly env: ResolvedEnvironment;
  /** The data volume: a new empty ext4 one by default; `"none"` boots without a volume attached. */
  readonly volume?: Volume | "none";
  /** Where the server finds its backups (a relay in front of the lab S3). @default the lab S3 */
  readonly s3Endpoint?: string;
  /** Extra renderer overrides (the lab's mirror and git URL are always set). */
  readonly overrides?: RenderOverrides;
  /** The volume's device path inside the server (a new volume is bound there). @default DigitalOcean's by-id path for its name */
  readonly volumeDevice?: string;
  /**
   * The watcher's alert URLs, as the stack passes its TF_VAR_alert_* variables: used for the flags the
   * environment's `alerts` sets (e.g. `{ ...env, alerts: { ...env.alerts, deadMan: true } }`). @default none
   */
  readonly alertUrls?: { readonly deadMan?: string; readonly webhook?: string };
  /** Which of the environment's servers this is (ServerValues.serverIndex, as the stack passes it). @default 1 */
  readonly serverIndex?: number;
}

export interface KitServer {
  readonly machine: Machine;
  readonly env: ResolvedEnvironment;
  readonly volume?: Volume;
  readonly userData: string;
  /** HTTP to the server's port 80 (Caddy), from the host. */
  http(path: string, init?: RequestInit): Promise<Response>;
  /** A command over SSH as the deploy user. */
  sshDeploy(argv: readonly string[], options?: { allowFailure?: boolean; input?: string }): Promise<RunResult>;
}

/**
 * What the lab changes in the rendered server files, and nothing else: downloads from the lab's mirror, the
 * app from its git server, and shorter waits (no real cloud to wait for). Servers boot with these; the
 * scripts get the same as `--render-overrides` (JSON), so a deploy renders what the boot rendered.
 */
export function labRenderOverrides(lab: Pick<KitLab, "mirror" | "git">): RenderOverrides {
  return { artifacts: lab.mirror.artifactOverrides(), repoUrl: lab.git.url, volumeWaitSeconds: 20, restoreAttempts: 3, restoreRetrySeconds: 2 };
}

/** Renders the kit's first boot for the lab: the user data, and the bundle object `bootKitServer` uploads. */
export function renderLabFirstBoot(lab: KitLab, options: KitServerOptions, volumeDevice: string): FirstBoot {
  // The environment's bucket, region and backup key, as the stack passes them.
  const backups = lab.s3.forStack(options.env.stackName);
  return renderFirstBoot(
    options.env,
    {
      volumeDevice,
      bucket: backups.bucket,
      region: backups.region,
      s3Endpoint: options.s3Endpoint ?? backups.endpoint,
      s3Credentials: { accessKeyId: backups.accessKeyId, secretAccessKey: backups.secretAccessKey },
      appSecrets: Object.fromEntries(options.env.app.secrets.map((name) => [name, `e2e-${name.toLowerCase()}`])),
      alertUrls: options.alertUrls,
      serverIndex: options.serverIndex,
    },
    {
      base64: (content) => Buffer.from(content, "utf8").toString("base64"),
      overrides: { ...labRenderOverrides(lab), ...options.overrides },
    },
  );
}

/** Boots a server from the kit's user data (does not wait for cloud-init: see `waitForBootstrap`). */
export async function bootKitServer(lab: KitLab, options: KitServerOptions): Promise<KitServer> {
  const device = options.volumeDevice ?? digitalOceanVolumeDevice(options.env.names.volume);
  const volume =
    options.volume === "none"
      ? undefined
      : (options.volume ?? (await createVolume(lab.teardown, { name: options.env.names.volume, byIdPath: device })));
  const { userData, bundle } = renderLabFirstBoot(lab, options, device);
  // Where the stack's aws_s3_object puts it (the lab uploads with the environment's own key: its prefix).
  await lab.s3.forStack(options.env.stackName).putObject(bundle.key, bundle.gzip);
  const machine = await bootMachine(lab.teardown, {
    rootfs: lab.rootfs,
    network: lab.network,
    name: options.name,
    userData,
    volumes: volume ? [volume] : [],
    trustedCaFiles: [lab.s3.caFile],
  });
  return {
    machine,
    env: options.env,
    volume,
    userData,
    http: (path, init) => fetch(`http://${machine.address}${path}`, { ...init, signal: AbortSignal.timeout(10_000) }),
    sshDeploy: (argv, o = {}) =>
      ssh({ key: lab.sshKey, user: LAYOUT.users.deploy, host: machine.address, knownHostsFile: lab.knownHostsFile, ...o }, argv),
  };
}

/** Waits for cloud-init and returns its verdict with the boot time; logs the bootstrap's output on error. */
export async function waitForBootstrap(server: KitServer, timeoutMs = 10 * 60_000) {
  const result = await server.machine.waitForCloudInit({ timeoutMs });
  if (result.status !== "done") {
    const journal = await server.machine.exec(["journalctl", "-u", "kit-bootstrap.service", "--no-pager", "-o", "cat"], { allowFailure: true });
    log(`cloud-init ${result.status}:\n${result.long}\nkit-bootstrap:\n${journal.stdout}`);
  }
  return result;
}

export function printTimings(lab: KitLab | undefined, title: string): void {
  if (lab?.timings.length) log(`${title} timings:\n  ${lab.timings.join("\n  ")}`);
}
