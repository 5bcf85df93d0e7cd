/**
 * The server's layout: every path, user, unit and port the kit puts on a server, in one place.
 *
 * The cloud-init renderer, the deploy/restore/drill scripts and the tests all read these values; nothing
 * else spells out a server path. docs/server-layout.md describes the same layout for humans (a test keeps
 * the two in step).
 */
export const LAYOUT = {
  users: {
    /** Login user for people and scripts (SSH keys only, passwordless sudo). Root login is off. */
    deploy: "deploy",
    /** Unprivileged system user that runs the app, Litestream and the backups; owns the data directory. */
    app: "app",
  },

  /** The persistent block volume is mounted here (never on the root disk). */
  volumeMount: "/mnt/data",
  /** SQLite database and its -wal/-shm files (the only path the app may write to). */
  dbDir: "/mnt/data/db",
  dbFile: "/mnt/data/db/app.sqlite3",
  /** Fallback backups kept on the volume (gzip'd `.backup` copies). */
  backupDir: "/mnt/data/backups",
  /** Databases moved aside by restore/rollback: never deleted, so every step can be undone. */
  asideDir: "/mnt/data/aside",
  /** Restores land here first (restore.ts, drills) and are checked before anything else sees them. */
  scratchDir: "/mnt/data/scratch",
  /** JSON reports of restore drills (`drill-<UTC stamp>.json`, `latest.json`): the evidence, kept. */
  drillDir: "/mnt/data/drills",

  /** App releases: each deploy clones into releases/<id>; slots/<port> points at the release a slot runs. */
  appRoot: "/srv/app",
  releasesDir: "/srv/app/releases",
  slotsDir: "/srv/app/slots",
  /** Deno's module cache (systemd CacheDirectory=app). */
  denoDir: "/var/cache/app/deno",

  /** Kit configuration read by the server-side scripts (non-secret). */
  kitEnvFile: "/etc/kit/kit.env",
  /**
   * The data volume's device, apart from kit.env: on Hetzner it holds the volume's id, which Terraform knows
   * only at apply time, so this one line travels uncompressed while kit.env joins the compressed bundle.
   */
  volumeEnvFile: "/etc/kit/volume.env",
  /** The app's non-secret environment. */
  appEnvFile: "/etc/app/app.env",
  /** The app's secrets (0600 root; read by systemd before it drops privileges). */
  appSecretsFile: "/etc/app/secrets.env",
  /** Private key used to clone a private git repo (0600 root), when configured. */
  gitDeployKeyFile: "/etc/app/git-deploy-key",
  /** S3 credentials for Litestream and the fallback upload (0600 root). */
  s3CredentialsFile: "/etc/kit/s3.env",
  /**
   * Present only on a server whose environment runs on PostgreSQL (0600 root, written by the migration and by
   * deploys, never in user data): DATABASE_URL (overrides kit.env's SQLite one), PGSSLROOTCERT and the drill's
   * DRILL_DATABASE_URL (the scratch database). Its presence switches the backups, the drill and the watcher.
   */
  databaseEnvFile: "/etc/kit/database.env",
  /** The managed cluster's CA certificate (PEM), pinned by PGSSLROOTCERT with sslmode=verify-full. */
  postgresCaFile: "/etc/kit/postgres-ca.crt",
  /** The alert URLs of the client file's `alerts` (0600 root: a webhook URL grants posting), read by the watcher's unit. */
  alertsFile: "/etc/kit/alerts.env",
  /** An operator creates this to let a server start on an empty database while its backups are unreachable. */
  allowEmptyDatabaseFile: "/etc/kit/allow-empty-database",
  /**
   * sshd reads logins' keys only from <dir>/<user> (root-owned, pushed by every deploy), not from
   * ~/.ssh/authorized_keys: removing a key from the client file and deploying revokes it.
   */
  authorizedKeysDir: "/etc/ssh/authorized_keys",
  litestreamConfig: "/etc/litestream.yml",
  caddyfile: "/etc/caddy/Caddyfile",
  /**
   * The deploy switch: an nftables ruleset (table `ip kit_upstream`) that sends Caddy's connections to the
   * stable 127.0.0.1:<ports.upstream> on to the active slot. scripts/deploy.ts rewrites it and loads it (one
   * atomic `nft -f`) after the new slot's health check passed; kit-upstream.service loads it at boot. Its
   * `dnat to 127.0.0.1:<port>` line is the record of which slot is active.
   */
  upstreamRules: "/etc/kit/upstream.nft",
  /** The maintenance page (503 + Retry-After on every path), loaded by scripts/migrate-to-postgres.ts through Caddy's admin API. */
  maintenanceCaddyfile: "/etc/caddy/maintenance.Caddyfile",
  /** sshd hardening (keys only, no root); sorts before cloud-init's 50-cloud-init.conf, and sshd keeps the first value. */
  sshdConfig: "/etc/ssh/sshd_config.d/10-kit.conf",
  /** Unattended security upgrades. */
  aptAutoUpgrades: "/etc/apt/apt.conf.d/20auto-upgrades",
  /** Debian's mark of an installed update that needs a reboot (its packages in `<file>.pkgs`). */
  rebootRequiredFile: "/run/reboot-required",
  /** Where the kit's systemd units are installed. */
  unitDir: "/etc/systemd/system",

  /** Server-side scripts written by the bootstrap. */
  libDir: "/usr/local/lib/kit",
  /** pgloader's command for the SQLite → PostgreSQL move (its source and target from the environment). */
  pgloaderLoadFile: "/usr/local/lib/kit/migrate-to-postgres.load",
  /** The pinned Deno and Litestream binaries (installed only after their sha256 matched). */
  binDir: "/usr/local/bin",
  /**
   * The first-boot bundle: a script that writes every server file, downloaded from the backup bucket by the
   * fetcher (its sha256 checked first); cloud-init's runcmd runs it just before the bootstrap.
   */
  firstBootBundle: "/run/kit/server-files.sh",
  /** Where downloads land during the bootstrap (tmpfs: never fills the root disk). */
  runDir: "/run/kit",
  /** The user data's fetcher of the first-boot bundle (first boot only, run by cloud-init's runcmd). */
  firstBootFetcher: "/run/kit/fetch-server-files.sh",
  /** scripts/deploy.ts holds this lock (an atomic mkdir) while it changes the server; a reboot clears it. */
  deployLock: "/run/kit/deploy.lock",
  /**
   * Behind a load balancer (`servers` > 1): while this file exists Caddy answers 503 on the app's health path
   * only, so the LB's health check takes the server out of rotation while requests in flight still finish.
   * deploy.ts creates it before it deploys the server and removes it after; in /run (world-readable, so
   * Caddy's user can see it) a reboot clears it.
   */
  lbDrainFile: "/run/kit-drain",
  /** The kit's state on the root disk. */
  stateDir: "/var/lib/kit",
  /** Written when the bootstrap finished; its content is the release that was started. */
  bootstrapDoneFile: "/var/lib/kit/bootstrap-done",
  /** Written by scripts/migrate-to-postgres.ts at the switch: its time and each table's max id and row count then (--rollback reads it). */
  postgresSwitchMarker: "/var/lib/kit/postgres-switch.json",
  /** The watcher's state (kit-watch.service's StateDirectory, owned by the app user). */
  watchDir: "/var/lib/kit/watch",
  /** The last run's verdict (cloud-init/watch-verdict.ts: WatchVerdict), read by scripts/status.ts. */
  watchVerdictFile: "/var/lib/kit/watch/verdict.json",
  /** One compact JSON line per run (WatchHistoryLine), pruned to the last 24 h. */
  watchHistoryFile: "/var/lib/kit/watch/history.jsonl",

  units: {
    /** The first-boot bootstrap (bootstrap.sh), started once by cloud-init's runcmd. */
    bootstrap: "kit-bootstrap.service",
    /** Template unit: app@<port>.service runs the release in slots/<port> on 127.0.0.1:<port>. */
    app: "app@.service",
    litestream: "litestream.service",
    /** Oneshot before the app's first start: restores the database from S3 when the volume is empty. */
    restore: "db-restore.service",
    fallbackBackup: "fallback-backup.service",
    fallbackBackupTimer: "fallback-backup.timer",
    /** Restore drill: restores the replica into scratch and checks it (monthly timer; scripts/drill.ts). */
    drill: "restore-drill.service",
    drillTimer: "restore-drill.timer",
    /** The daily pg_dump into the bucket (pg-dump-backup.sh); runs only where database.env exists. */
    pgDump: "kit-pg-dump.service",
    pgDumpTimer: "kit-pg-dump.timer",
    /** The watcher (watch.sh): checks replication, the app, disks, backups; writes the verdict; alerts. */
    watch: "kit-watch.service",
    /** Runs the watcher every minute. */
    watchTimer: "kit-watch.timer",
    /** Reboots when an update requires it (maintenance-reboot.sh), holding the deploy lock. */
    maintenanceReboot: "kit-maintenance-reboot.service",
    /** Starts it at the maintenance window (maintenance.window). */
    maintenanceRebootTimer: "kit-maintenance-reboot.timer",
    /** Debian's unattended-upgrades run (apt-daily-upgrade.timer): never rebooted under. */
    aptUpgrade: "apt-daily-upgrade.service",
    /** Debian's services that read the kit's files. */
    caddy: "caddy.service",
    /** Loads the deploy switch (upstreamRules) at boot, before Caddy; a oneshot that stays active. */
    upstream: "kit-upstream.service",
    ssh: "ssh.service",
  },

  ports: {
    /** Litestream's Prometheus metrics (loopback only). */
    litestreamMetrics: 9090,
    /**
     * Caddy proxies here, always (its configuration never changes on a deploy, so it is never reloaded for
     * one): the kernel forwards each new connection to the active slot (upstreamRules). Loopback only.
     */
    upstream: 7999,
    http: 80,
    https: 443,
  },

  /** Key prefixes inside the backup bucket, below the environment's prefix (`<env>/`). */
  bucket: {
    litestream: "litestream",
    fallback: "fallback",
    /** The daily pg_dump of a PostgreSQL environment: `<UTC stamp>.dump` and its manifest `<UTC stamp>.json`. */
    pgDump: "pg-dump",
    /** The first-boot bundles, `<sha256>.sh.gz` (uploaded by the stack; only read by a server's first boot). */
    firstBoot: "kit/first-boot",
  },
} as const;

/**
 * The app's tables whose rows the kit counts (deploy snapshots, restores, drills): SQLite's, Litestream's and
 * the kit's own (`_kit_drill`, `_kit_watch`: rows written by the drill and the watcher, not the app's) left
 * out, names limited to [A-Za-z0-9_] so that each can be spliced into `SELECT count(*)`.
 */
export const APP_TABLES_QUERY =
  "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT GLOB 'sqlite_*' AND name NOT GLOB '_litestream_*' AND name NOT GLOB '_kit_*' AND name NOT GLOB '*[^A-Za-z0-9_]*' ORDER BY 1";

/** Path of the systemd unit instance that runs the app on `port`. */
export function appUnit(port: number): string {
  return `app@${port}.service`;
}
