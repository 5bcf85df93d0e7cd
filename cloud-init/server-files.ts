import type { ResolvedEnvironment } from "../app/config/types";
import { durationSeconds } from "../app/config/validate";
import { type Artifact, DENO, LITESTREAM } from "./artifacts";
import { LAYOUT } from "./layout";
import { envQuote, renderTemplate, type TemplateValue } from "./template";

/**
 * Values only the stack (or a test) knows. In a stack they are Terraform references such as the access
 * key's secret; in the boot tests they are concrete values.
 */
export interface ServerValues {
  /** Block device of the data volume, e.g. `/dev/disk/by-id/scsi-0DO_Volume_<name>`. */
  readonly volumeDevice: string;
  readonly bucket: string;
  readonly region: string;
  /** S3-compatible endpoint (path-style) instead of AWS. @default - AWS S3 */
  readonly s3Endpoint?: string;
  /** Key pair of the environment's backup IAM user. */
  readonly s3Credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** Value of each secret named in `app.secrets`. */
  readonly appSecrets: Readonly<Record<string, string>>;
  /** SSH private key for a private repo. */
  readonly gitDeployKey?: string;
  /** Port of the slot Caddy proxies to (scripts/deploy.ts switches it between `app.port` and `port + 1`). @default app.port */
  readonly activePort?: number;
}

/** Knobs for tests and mirrors; production uses the defaults. */
export interface RenderOverrides {
  /** Download URLs (and, for fault tests only, hashes) of the pinned artifacts, e.g. a local mirror. */
  readonly artifacts?: {
    readonly deno?: Partial<Pick<Artifact, "url" | "sha256">>;
    readonly litestream?: Partial<Pick<Artifact, "url" | "sha256">>;
  };
  /** Clone the app from here instead of `app.repo`. */
  readonly repoUrl?: string;
  /** How long the bootstrap waits for the volume's device. @default 300 */
  readonly volumeWaitSeconds?: number;
  /** Restore-on-boot tries before it refuses to start on an empty database. @default 6 */
  readonly restoreAttempts?: number;
  /** @default 10 */
  readonly restoreRetrySeconds?: number;
  /** How long one restore attempt may take before it counts as "S3 not answering". @default 180 */
  readonly restoreAttemptSeconds?: number;
}

/** One file the kit puts on a server. */
export interface ServerFile {
  readonly path: string;
  readonly mode: "0644" | "0600" | "0755";
  readonly content: string;
  /** Holds credentials: written 0600 root, base64-encoded in user data, never printed. */
  readonly secret: boolean;
  /** Written after packages are installed (the file belongs to a package's config directory). */
  readonly afterPackages: boolean;
}

/**
 * Litestream's `monitor-interval`: how often it copies new WAL frames aside for the next upload. The most
 * a crash can lose is the writes of the last monitorInterval + syncInterval (plus the upload itself);
 * Litestream's default of 1 s would add a second to that for a negligible saving (a stat per check).
 */
export const LITESTREAM_MONITOR_INTERVAL_MS = 100;

/** Server-side scripts, installed into LAYOUT.libDir. */
export const SCRIPTS = [
  "bootstrap.sh",
  "mount-volume.sh",
  "require-volume.sh",
  "install-artifact.sh",
  "fetch-release.sh",
  "run-task.sh",
  "wait-healthy.sh",
  "restore-on-boot.sh",
  "fallback-backup.sh",
  "s3-put.sh",
  "restore-drill.sh",
] as const;

/** systemd units, installed into /etc/systemd/system. */
export const UNITS = [
  "kit-bootstrap.service",
  "app@.service",
  "litestream.service",
  "db-restore.service",
  "fallback-backup.service",
  "fallback-backup.timer",
  "restore-drill.service",
  "restore-drill.timer",
] as const;

/** The values every template may use: the layout plus this environment's settings. */
export function templateValues(env: ResolvedEnvironment, server: ServerValues, overrides: RenderOverrides = {}): Record<string, TemplateValue> {
  const deno = { ...DENO, ...overrides.artifacts?.deno };
  const litestream = { ...LITESTREAM, ...overrides.artifacts?.litestream };
  const ls = env.backups.litestream;
  const prefix = env.names.bucketPrefix;
  return {
    client: env.client,
    environment: env.environment,
    stackName: env.stackName,
    deployUser: LAYOUT.users.deploy,
    authorizedKeysDir: LAYOUT.authorizedKeysDir,
    appUser: LAYOUT.users.app,
    volumeDevice: server.volumeDevice,
    volumeMount: LAYOUT.volumeMount,
    volumeWaitSeconds: overrides.volumeWaitSeconds ?? 300,
    restoreAttempts: overrides.restoreAttempts ?? 6,
    restoreRetrySeconds: overrides.restoreRetrySeconds ?? 10,
    // 6 × (180 s + 10 s) stays inside the units' 30 min start timeout, so the script always gets to say why.
    restoreAttemptSeconds: overrides.restoreAttemptSeconds ?? 180,
    allowEmptyDatabaseFile: LAYOUT.allowEmptyDatabaseFile,
    dbDir: LAYOUT.dbDir,
    dbFile: LAYOUT.dbFile,
    backupDir: LAYOUT.backupDir,
    asideDir: LAYOUT.asideDir,
    scratchDir: LAYOUT.scratchDir,
    drillDir: LAYOUT.drillDir,
    bucket: server.bucket,
    region: server.region,
    s3Endpoint: server.s3Endpoint ?? "",
    bucketPrefix: prefix,
    litestreamPrefix: `${prefix}/${LAYOUT.bucket.litestream}`,
    fallbackPrefix: `${prefix}/${LAYOUT.bucket.fallback}`,
    fallbackKeepDays: env.backups.fallback.keepDays,
    fallbackOnCalendar: env.backups.fallback.onCalendar,
    litestreamConfig: LAYOUT.litestreamConfig,
    s3CredentialsFile: LAYOUT.s3CredentialsFile,
    metricsPort: LAYOUT.ports.litestreamMetrics,
    syncInterval: ls.syncInterval,
    monitorInterval: `${LITESTREAM_MONITOR_INTERVAL_MS}ms`,
    snapshotInterval: ls.snapshotInterval,
    retention: ls.retention,
    endpointLines: server.s3Endpoint
      ? `        endpoint: ${server.s3Endpoint}\n        force-path-style: true\n`
      : "",
    appRepo: overrides.repoUrl ?? env.app.repo,
    appRef: env.app.ref,
    appPort: env.app.port,
    healthPath: env.app.healthPath,
    migrateTask: env.app.tasks.migrate,
    startTask: env.app.tasks.start,
    appEnvFile: LAYOUT.appEnvFile,
    appSecretsFile: LAYOUT.appSecretsFile,
    gitDeployKeyFile: LAYOUT.gitDeployKeyFile,
    releasesDir: LAYOUT.releasesDir,
    slotsDir: LAYOUT.slotsDir,
    denoDir: LAYOUT.denoDir,
    bootstrapDoneFile: LAYOUT.bootstrapDoneFile,
    kitEnvFile: LAYOUT.kitEnvFile,
    libDir: LAYOUT.libDir,
    siteAddress: env.domain?.name ?? ":80",
    denoUrl: deno.url,
    denoSha256: deno.sha256,
    denoVersion: deno.version,
    denoPathInTarball: deno.pathInTarball,
    litestreamUrl: litestream.url,
    litestreamSha256: litestream.sha256,
    litestreamVersion: litestream.version,
    litestreamPathInTarball: litestream.pathInTarball,
    drillPingUrl: env.drill.pingUrl ?? "",
    drillOnCalendar: env.drill.onCalendar,
    // How long a drill waits for its sentinel to reach the replica before it fails.
    drillWaitSeconds: Math.max(30, 3 * (durationSeconds(ls.syncInterval) ?? 1) + 10),
  };
}

/** `KEY=value` lines for an environment file (bash- and systemd-readable). */
export function envFileLines(entries: Readonly<Record<string, string>>): string {
  return Object.entries(entries)
    .map(([key, value]) => `${key}=${envQuote(value, key)}\n`)
    .join("");
}

/**
 * Every file the kit puts on a server, rendered from the templates. cloud-init writes them at first boot;
 * scripts/deploy.ts pushes the same list later. This is the only place that maps templates to paths.
 */
export function serverFiles(env: ResolvedEnvironment, server: ServerValues, overrides: RenderOverrides = {}): ServerFile[] {
  const values = templateValues(env, server, overrides);
  const file = (path: string, content: string, mode: ServerFile["mode"] = "0644", extra: Partial<ServerFile> = {}): ServerFile => ({
    path,
    content,
    mode,
    secret: false,
    afterPackages: false,
    ...extra,
  });
  const secret = (path: string, content: string): ServerFile => file(path, content, "0600", { secret: true });

  const files: ServerFile[] = [
    file(LAYOUT.kitEnvFile, renderTemplate("config/kit.env", values, envQuote)),
    file(LAYOUT.appEnvFile, `# ${LAYOUT.appEnvFile}: the app's non-secret environment (app.env in the client file).\n${envFileLines(env.app.env)}`),
    secret(LAYOUT.s3CredentialsFile, envFileLines({
      AWS_ACCESS_KEY_ID: server.s3Credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.s3Credentials.secretAccessKey,
    })),
    secret(LAYOUT.appSecretsFile, envFileLines(Object.fromEntries(env.app.secrets.map((name) => [name, server.appSecrets[name] ?? ""])))),
    file(LAYOUT.litestreamConfig, renderTemplate("config/litestream.yml", values)),
    file(LAYOUT.caddyfile, renderTemplate("config/Caddyfile", { ...values, appPort: server.activePort ?? env.app.port }), "0644", { afterPackages: true }),
    file(
      `${LAYOUT.authorizedKeysDir}/${LAYOUT.users.deploy}`,
      `# ${LAYOUT.authorizedKeysDir}/${LAYOUT.users.deploy}: who may log in (sshKeys in the client file; rewritten by scripts/deploy.ts).\n` +
        env.sshKeys.map((key) => `${key.publicKey.trim()}\n`).join(""),
    ),
    file("/etc/ssh/sshd_config.d/10-kit.conf", renderTemplate("config/sshd-hardening.conf", values)),
    file("/etc/apt/apt.conf.d/20auto-upgrades", renderTemplate("config/20auto-upgrades", values)),
    ...UNITS.map((unit) => file(`/etc/systemd/system/${unit}`, renderTemplate(`systemd/${unit}`, values))),
    ...SCRIPTS.map((script) => file(`${LAYOUT.libDir}/${script}`, renderTemplate(`scripts/${script}`, values), "0755")),
  ];
  if (env.app.privateRepo && server.gitDeployKey !== undefined) {
    files.push(secret(LAYOUT.gitDeployKeyFile, `${server.gitDeployKey.trimEnd()}\n`));
  }
  return files;
}
