import type { ResolvedEnvironment } from "../app/config/types.ts";
import { durationSeconds } from "../app/config/validate.ts";
import { type Artifact, DENO, LITESTREAM } from "./artifacts.ts";
import { type Activation, appStart, daemonReload, DIRECTORIES, directoryCommands, type Effect, effectCommand, none, reload, restart, tryRestart } from "./effects.ts";
import { APP_TABLES_QUERY, LAYOUT } from "./layout.ts";
import { envQuote, flattenValues, renderTemplate, type TemplateValue } from "./template.ts";
import { WATCH_CHECKS } from "./watch-verdict.ts";

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
  /** The watcher's alert URLs, for those `alerts` says are configured (secrets: Terraform variables in a stack). */
  readonly alertUrls?: { readonly deadMan?: string; readonly webhook?: string };
  /**
   * Port of the active slot, where the deploy switch (LAYOUT.upstreamRules) sends Caddy's connections
   * (scripts/deploy.ts switches it between `app.port` and `port + 1`). @default app.port
   */
  readonly activePort?: number;
  /**
   * Which of the environment's `servers` this is, 1-based (the stack passes it per droplet; deploy.ts re-renders
   * it from the server's place in server_ipv4s). A server after the first never holds SQLite data: at its first
   * boot it restores nothing and waits for /etc/kit/database.env (restore-on-boot.sh). @default 1
   */
  readonly serverIndex?: number;
}

/** Knobs for tests and mirrors; production uses the defaults. */
export interface RenderOverrides {
  /** Download URLs (and, for fault and upgrade tests only, hashes and versions) of the pinned artifacts, e.g. a local mirror. */
  readonly artifacts?: {
    readonly deno?: Partial<Pick<Artifact, "url" | "sha256" | "version">>;
    readonly litestream?: Partial<Pick<Artifact, "url" | "sha256" | "version">>;
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
  /**
   * Lab only: the watcher's timer period (kit-watch.timer), so that the e2e faults fit in minutes. Servers keep
   * the default: the 2-minute alert guarantee is one period plus the replication wait. @default 60
   */
  readonly watchIntervalSeconds?: number;
}

/** One file the kit puts on a server, declared once with everything about it (SERVER_FILES). */
export interface FileDeclaration {
  readonly path: string;
  /** Its content: a template under cloud-init/templates, or one built from the client file. */
  readonly source: { readonly template: string; readonly quote?: "env" } | { readonly built: BuiltContent };
  readonly mode: "0644" | "0600" | "0755";
  /** Holds credentials: written 0600 root, never printed, never in a diff. */
  readonly secret: boolean;
  /**
   * Must be in place before sshd first starts (cloud-init's init stage): written as its own entry of the
   * user data. Every other file travels in the first-boot bundle, unpacked just before the bootstrap.
   */
  readonly early: boolean;
  /** What a changed copy needs on a running server (at least one; `none(why)` where nothing is right). */
  readonly onChange: readonly Effect[];
  /** What the bootstrap's last step does with it, beyond writing it (a package's service rereading it). */
  readonly atFirstBoot: readonly Effect[];
  /** For a systemd unit: how it comes to run. */
  readonly activation?: Activation;
  /** Only on servers whose environment has it (the git deploy key of a private repo). */
  readonly when?: (env: ResolvedEnvironment, server: ServerValues) => boolean;
}

/** The content of a file built from the client file rather than from a template. */
type BuiltContent = "appEnv" | "s3Credentials" | "appSecrets" | "authorizedKeys" | "gitDeployKey" | "alerts";

/** A declared file with its content, as it lands on a server. */
export interface ServerFile extends Omit<FileDeclaration, "source" | "when"> {
  readonly content: string;
}

/**
 * Litestream's `monitor-interval`: how often it copies new WAL frames aside for the next upload. The most
 * a crash can lose is the writes of the last monitorInterval + syncInterval (plus the upload itself);
 * Litestream's default of 1 s would add a second to that for a negligible saving (a stat per check).
 */
export const LITESTREAM_MONITOR_INTERVAL_MS = 100;

/**
 * The maintenance window lasts an hour: a reboot an update requires waits that long at most for a deploy, the
 * fallback backup, the drill or an unattended-upgrades run to finish (maintenance-reboot.sh), then waits a week.
 */
export const MAINTENANCE_WAIT_SECONDS = 3600;

/**
 * On PostgreSQL the daily pg_dump is the fallback backup (the fallback's `onCalendar` and `keepDays` govern it);
 * the watcher alerts when the newest dump is older than a day and two hours (a late run, not yet a missed one).
 */
export const PG_DUMP_MAX_AGE_SECONDS = 26 * 3600;

/** Server-side scripts, installed into LAYOUT.libDir (0755). Read afresh by every run: a change needs nothing. */
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
  // On PostgreSQL (database.env present): the daily dump, its drill, and their client version check.
  "pg-lib.sh",
  "pg-dump-backup.sh",
  "pg-restore-drill.sh",
  "maintenance-reboot.sh",
] as const;

/** systemd units, installed into LAYOUT.unitDir, each with how it comes to run. */
export const UNITS: Readonly<Record<string, Activation>> = {
  [LAYOUT.units.bootstrap]: { by: "cloud-init" },
  [LAYOUT.units.app]: { by: "bootstrap-step" },
  [LAYOUT.units.litestream]: { by: "bootstrap-step" },
  [LAYOUT.units.restore]: { by: "bootstrap-step" },
  [LAYOUT.units.fallbackBackup]: { by: "timer", timer: LAYOUT.units.fallbackBackupTimer },
  [LAYOUT.units.fallbackBackupTimer]: { by: "enabled-now" },
  [LAYOUT.units.drill]: { by: "timer", timer: LAYOUT.units.drillTimer },
  [LAYOUT.units.drillTimer]: { by: "enabled-now" },
  // Enabled everywhere like the other timers; the service runs only where database.env exists (ConditionPathExists).
  [LAYOUT.units.pgDump]: { by: "timer", timer: LAYOUT.units.pgDumpTimer },
  [LAYOUT.units.pgDumpTimer]: { by: "enabled-now" },
  [LAYOUT.units.watch]: { by: "timer", timer: LAYOUT.units.watchTimer },
  [LAYOUT.units.watchTimer]: { by: "enabled-now" },
  [LAYOUT.units.maintenanceReboot]: { by: "timer", timer: LAYOUT.units.maintenanceRebootTimer },
  [LAYOUT.units.maintenanceRebootTimer]: { by: "enabled-now" },
  // A oneshot that stays active: enabled and started (it loads the deploy switch) like the timers.
  [LAYOUT.units.upstream]: { by: "enabled-now" },
};

/**
 * The watcher's templates live in cloud-init/watch/ (beside its contract, watch-verdict.ts), where its
 * integration tests and cost benchmark also render them; every other template is under cloud-init/templates.
 */
const WATCH_TEMPLATES: Readonly<Record<string, string>> = {
  "watch.sh": "../watch/watch.sh",
  [LAYOUT.units.watch]: `../watch/${LAYOUT.units.watch}`,
  [LAYOUT.units.watchTimer]: `../watch/${LAYOUT.units.watchTimer}`,
};
const unitTemplate = (unit: string) => WATCH_TEMPLATES[unit] ?? `systemd/${unit}`;

const declare = (path: string, source: FileDeclaration["source"], onChange: readonly Effect[], extra: Partial<FileDeclaration> = {}): FileDeclaration => ({
  path,
  source,
  mode: "0644",
  secret: false,
  early: false,
  onChange,
  atFirstBoot: [],
  ...extra,
});
const sshdReload = reload(LAYOUT.units.ssh, "sshd -t");
const litestreamRestart = tryRestart(LAYOUT.units.litestream);
/**
 * The deploy switch's rules load in one transaction (a bad file changes nothing); a server bootstrapped before
 * the switch existed gets Debian's nftables package first (the first boot installs it with the others).
 */
const upstreamLoad = restart(
  LAYOUT.units.upstream,
  `{ command -v nft >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 nftables >&2; } && nft -c -f ${LAYOUT.upstreamRules}`,
);

/**
 * Every file the kit puts on a server, each declared once: path, content, mode, secrecy and what it needs
 * when it changes. cloud-init writes them at first boot; scripts/deploy.ts pushes the same list later; the
 * bootstrap's and the push's commands are assembled from these declarations (effects.ts).
 */
export const SERVER_FILES: readonly FileDeclaration[] = [
  declare(LAYOUT.kitEnvFile, { template: "config/kit.env", quote: "env" }, [none("read afresh by every script and unit start")]),
  declare(LAYOUT.volumeEnvFile, { template: "config/volume.env", quote: "env" }, [none("read by the volume scripts when they run")]),
  declare(LAYOUT.appEnvFile, { built: "appEnv" }, [appStart]),
  declare(LAYOUT.s3CredentialsFile, { built: "s3Credentials" }, [litestreamRestart], { mode: "0600", secret: true }),
  declare(LAYOUT.appSecretsFile, { built: "appSecrets" }, [appStart], { mode: "0600", secret: true }),
  declare(LAYOUT.litestreamConfig, { template: "config/litestream.yml" }, [litestreamRestart]),
  // Before the Caddyfile: a push loads the switch before Caddy reloads onto its stable port (a server older than the switch).
  declare(LAYOUT.upstreamRules, { template: "config/upstream.nft" }, [upstreamLoad]),
  // Caddy's package starts Caddy on its default file before the bootstrap: the first boot restarts it on ours.
  declare(LAYOUT.caddyfile, { template: "config/Caddyfile" }, [reload(LAYOUT.units.caddy)], { atFirstBoot: [{ kind: "restart", unit: LAYOUT.units.caddy }] }),
  declare(`${LAYOUT.authorizedKeysDir}/${LAYOUT.users.deploy}`, { built: "authorizedKeys" }, [none("sshd reads it at every login")], { early: true }),
  declare(LAYOUT.sshdConfig, { template: "config/sshd-hardening.conf" }, [sshdReload], { early: true, atFirstBoot: [sshdReload] }),
  // The maintenance page and pgloader's command: read by scripts/migrate-to-postgres.ts when it moves the database.
  declare(LAYOUT.maintenanceCaddyfile, { template: "config/maintenance.Caddyfile" }, [none("loaded only by migrate-to-postgres.ts (caddy reload --config), which writes it first when it differs")]),
  declare(LAYOUT.pgloaderLoadFile, { template: "config/pgloader.load" }, [none("read by pgloader when migrate-to-postgres.ts runs it")]),
  declare(LAYOUT.aptAutoUpgrades, { template: "config/20auto-upgrades" }, [none("apt's timers read it at every run")]),
  ...Object.entries(UNITS).map(([unit, activation]) => declare(`${LAYOUT.unitDir}/${unit}`, { template: unitTemplate(unit) }, [daemonReload], { activation })),
  ...SCRIPTS.map((script) => declare(`${LAYOUT.libDir}/${script}`, { template: `scripts/${script}` }, [none("read afresh by every run")], { mode: "0755" })),
  declare(`${LAYOUT.libDir}/watch.sh`, { template: WATCH_TEMPLATES["watch.sh"] }, [none("read afresh by every run")], { mode: "0755" }),
  // Every kit write to the live database, with Deno's fixed SQLite (the WAL-reset bug: see the file). Deno, not bash.
  declare(`${LAYOUT.libDir}/kit-sql.js`, { template: "scripts/kit-sql.js" }, [none("read afresh by every run")], { mode: "0755" }),
  // A webhook URL grants posting to its channel: a secret.
  declare(LAYOUT.alertsFile, { built: "alerts" }, [none(`${LAYOUT.units.watch} reads it at every run (EnvironmentFile=)`)], { mode: "0600", secret: true }),
  declare(LAYOUT.gitDeployKeyFile, { built: "gitDeployKey" }, [none("read by every fetch of a release")], {
    mode: "0600",
    secret: true,
    when: (env, server) => env.app.privateRepo && server.gitDeployKey !== undefined,
  }),
];

/** Shell commands of the first boot's effects (bootstrap.sh's last step), once each, in declaration order. */
export function firstBootCommands(): string {
  return [...new Set(SERVER_FILES.flatMap((f) => f.atFirstBoot.map(effectCommand)).filter(Boolean))].join("\n");
}

/** Units enabled and started at the end of the first boot and by every push (the timers). */
export function enabledNowUnits(): string[] {
  return Object.entries(UNITS).filter(([, a]) => a.by === "enabled-now").map(([unit]) => unit);
}

/** The values every template may use: the layout plus this environment's settings. */
export function templateValues(env: ResolvedEnvironment, server: ServerValues, overrides: RenderOverrides = {}): Record<string, TemplateValue> {
  const deno = { ...DENO, ...overrides.artifacts?.deno };
  const litestream = { ...LITESTREAM, ...overrides.artifacts?.litestream };
  const ls = env.backups.litestream;
  const prefix = env.names.bucketPrefix;
  // How long after a commit the replica must hold it: three sync intervals and 10 s for the upload.
  const replicaReachSeconds = 3 * (durationSeconds(ls.syncInterval) ?? 1) + 10;
  return {
    ...flattenValues("config", env),
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
    pgDumpPrefix: `${prefix}/${LAYOUT.bucket.pgDump}`,
    databaseEnvFile: LAYOUT.databaseEnvFile,
    postgresCaFile: LAYOUT.postgresCaFile,
    pgDumpUnit: LAYOUT.units.pgDump,
    pgDumpTimerUnit: LAYOUT.units.pgDumpTimer,
    pgDumpMaxAgeSeconds: PG_DUMP_MAX_AGE_SECONDS,
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
    /** The active slot, where the deploy switch sends Caddy's connections to upstreamPort. */
    activePort: server.activePort ?? env.app.port,
    serverIndex: server.serverIndex ?? 1,
    upstreamPort: LAYOUT.ports.upstream,
    upstreamRules: LAYOUT.upstreamRules,
    upstreamUnit: LAYOUT.units.upstream,
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
    appTablesQuery: APP_TABLES_QUERY,
    volumeEnvFile: LAYOUT.volumeEnvFile,
    libDir: LAYOUT.libDir,
    // Behind a load balancer (servers > 1) the LB terminates TLS and health-checks each server with its address
    // as Host: Caddy serves plain HTTP on :80 for any Host, no certificate, no redirect to HTTPS.
    siteAddress: env.servers > 1 ? ":80" : (env.domain?.name ?? ":80"),
    denoUrl: deno.url,
    denoSha256: deno.sha256,
    denoVersion: deno.version,
    denoPathInTarball: deno.pathInTarball,
    litestreamUrl: litestream.url,
    litestreamSha256: litestream.sha256,
    litestreamVersion: litestream.version,
    litestreamPathInTarball: litestream.pathInTarball,
    stateDir: LAYOUT.stateDir,
    runDir: LAYOUT.runDir,
    unitDir: LAYOUT.unitDir,
    caddyfile: LAYOUT.caddyfile,
    maintenanceCaddyfile: LAYOUT.maintenanceCaddyfile,
    pgloaderLoadFile: LAYOUT.pgloaderLoadFile,
    sshdConfig: LAYOUT.sshdConfig,
    aptAutoUpgrades: LAYOUT.aptAutoUpgrades,
    binDir: LAYOUT.binDir,
    restoreUnit: LAYOUT.units.restore,
    litestreamUnit: LAYOUT.units.litestream,
    bootstrapUnit: LAYOUT.units.bootstrap,
    drillUnit: LAYOUT.units.drill,
    fallbackBackupUnit: LAYOUT.units.fallbackBackup,
    caddyUnit: LAYOUT.units.caddy,
    sshUnit: LAYOUT.units.ssh,
    // The bootstrap's derived steps (from SERVER_FILES, UNITS and DIRECTORIES): directories, the timers, the
    // first boot's effects of package configs.
    createDirectories: directoryCommands(DIRECTORIES).join("\n"),
    enabledNowUnits: enabledNowUnits().join(" "),
    firstBootCommands: firstBootCommands(),
    drillPingUrl: env.drill.pingUrl ?? "",
    drillOnCalendar: env.drill.onCalendar,
    // How long a drill waits for its sentinel to reach the replica before it fails.
    drillWaitSeconds: Math.max(30, replicaReachSeconds),
    watchUnit: LAYOUT.units.watch,
    watchTimerUnit: LAYOUT.units.watchTimer,
    watchDir: LAYOUT.watchDir,
    // systemd's StateDirectory= is relative to /var/lib.
    watchStateDirectory: LAYOUT.watchDir.replace(/^\/var\/lib\//, ""),
    watchVerdictFile: LAYOUT.watchVerdictFile,
    watchHistoryFile: LAYOUT.watchHistoryFile,
    watchChecks: WATCH_CHECKS.join(" "),
    watchReplicaWaitSeconds: replicaReachSeconds,
    watchIntervalSeconds: overrides.watchIntervalSeconds ?? 60,
    alertsFile: LAYOUT.alertsFile,
    fallbackBackupTimerUnit: LAYOUT.units.fallbackBackupTimer,
    maintenanceRebootUnit: LAYOUT.units.maintenanceReboot,
    aptUpgradeUnit: LAYOUT.units.aptUpgrade,
    rebootRequiredFile: LAYOUT.rebootRequiredFile,
    deployLock: LAYOUT.deployLock,
    lbDrainFile: LAYOUT.lbDrainFile,
    // The maintenance window's length: how long a required reboot waits for a deploy, a backup or apt to finish.
    maintenanceWaitSeconds: MAINTENANCE_WAIT_SECONDS,
    maintenanceTimeoutSeconds: MAINTENANCE_WAIT_SECONDS + 600,
    drillTimerUnit: LAYOUT.units.drillTimer,
    domainName: env.domain?.name ?? "",
    httpPort: LAYOUT.ports.http,
    httpsPort: LAYOUT.ports.https,
  };
}

/** `KEY=value` lines for an environment file (bash- and systemd-readable). */
export function envFileLines(entries: Readonly<Record<string, string>>): string {
  return Object.entries(entries)
    .map(([key, value]) => `${key}=${envQuote(value, key)}\n`)
    .join("");
}

/** Every file the kit puts on this server (SERVER_FILES), rendered: what cloud-init writes and deploy.ts pushes. */
export function serverFiles(env: ResolvedEnvironment, server: ServerValues, overrides: RenderOverrides = {}): ServerFile[] {
  const values = templateValues(env, server, overrides);
  const built: Record<BuiltContent, () => string> = {
    appEnv: () => `# ${LAYOUT.appEnvFile}: the app's non-secret environment (app.env in the client file).\n${envFileLines(env.app.env)}`,
    s3Credentials: () =>
      envFileLines({ AWS_ACCESS_KEY_ID: server.s3Credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: server.s3Credentials.secretAccessKey }),
    appSecrets: () => envFileLines(Object.fromEntries(env.app.secrets.map((name) => [name, server.appSecrets[name] ?? ""]))),
    authorizedKeys: () =>
      `# ${LAYOUT.authorizedKeysDir}/${LAYOUT.users.deploy}: who may log in (sshKeys in the client file; rewritten by scripts/deploy.ts).\n` +
      env.sshKeys.map((key) => `${key.publicKey.trim()}\n`).join(""),
    gitDeployKey: () => `${(server.gitDeployKey ?? "").trimEnd()}\n`,
    // Empty values when an alert is not configured: the watcher then skips it.
    alerts: () =>
      envFileLines({
        ALERT_DEAD_MAN_URL: env.alerts.deadMan ? (server.alertUrls?.deadMan ?? "") : "",
        ALERT_WEBHOOK_URL: env.alerts.webhook ? (server.alertUrls?.webhook ?? "") : "",
      }),
  };
  return SERVER_FILES.filter((file) => file.when?.(env, server) ?? true).map(({ source, when: _when, ...file }) => ({
    ...file,
    content:
      "built" in source
        ? built[source.built]()
        : renderTemplate(source.template, values, source.quote === "env" ? envQuote : undefined),
  }));
}
